"""Chapter 1: toy data, MLPs, dead units, zero initialization, logic gates and XOR."""

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn

import dlbook.init_activations as ia
from dlbook.train import TrainConfig, fit

CPU = torch.device("cpu")
SEEDS = list(range(10))


def test_moons_is_balanced_seeded_and_two_classes():
    x, y = ia.moons(200, seed=0)
    assert x.shape == (200, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert int(y.sum()) == 100
    x2, y2 = ia.moons(200, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(ia.moons(200, seed=1)[0], x)
    # without noise every point lies on its half circle (radius 1 around its centre)
    x0, y0 = ia.moons(100, seed=3, noise=0.0)
    centre = torch.where(y0[:, None] == 1, torch.tensor([0.5, 0.25]), torch.tensor([-0.5, -0.25]))
    assert torch.allclose((x0 - centre).norm(dim=1), torch.ones(100), atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n"):
        ia.moons(0, seed=0)
    with pytest.raises(ValueError, match="activation"):
        ia.mlp(activation="tanh", seed=0)
    with pytest.raises(ValueError, match="init"):
        ia.mlp(init="ones", seed=0)
    with pytest.raises(TypeError, match="widths"):
        ia.mlp(widths=[2, 3], seed=0)
    with pytest.raises(ValueError, match="table"):
        ia.one_unit_weights((0, 1, 2))


def test_mlp_init_matches_torch_default_and_zero():
    m = ia.mlp(widths=(2, 5, 3), seed=7)
    torch.manual_seed(7)
    ref = [nn.Linear(2, 5), nn.Linear(5, 3)]
    for got, want in zip(m.layers, ref):
        assert torch.equal(got.weight, want.weight) and torch.equal(got.bias, want.bias)
    z = ia.mlp(init="zero", seed=7)
    assert all(torch.all(p == 0) for p in z.parameters())


def test_stacked_forward_equals_each_model():
    from torch.func import stack_module_state

    for act in ia.ACTIVATIONS:
        models = [ia.mlp(widths=(2, 6, 4, 2), activation=act, seed=s) for s in range(3)]
        params, _ = stack_module_state(models)
        x = torch.randn(3, 9, 2, generator=torch.Generator().manual_seed(0))
        out = models[0].stacked_forward(params, x)
        for k, m in enumerate(models):
            assert torch.allclose(out[k], m(x[k]), atol=1e-6)


def test_dead_units_against_a_plain_loop():
    x, _ = ia.moons(50, seed=0)
    m = ia.mlp(widths=(2, 8, 6, 2), seed=1)
    with torch.no_grad():
        m.layers[0].bias[:3] -= 5.0  # kill three first-layer units
    masks = ia.dead_units(m, x)
    xs = x.double().numpy()
    w, b = m.layers[0].weight.double().detach().numpy(), m.layers[0].bias.double().detach().numpy()
    ref = [all(float(xi @ w[j] + b[j]) <= 0 for xi in xs) for j in range(8)]
    assert masks[0].tolist() == ref and all(ref[:3])
    h = np.maximum(xs @ w.T + b, 0)
    w2, b2 = m.layers[1].weight.double().detach().numpy(), m.layers[1].bias.double().detach().numpy()
    assert masks[1].tolist() == list(((h @ w2.T + b2) <= 1e-6).all(0))


def test_unit_gradients_closed_form():
    x, y = ia.moons(40, seed=2)
    m = ia.mlp(widths=(2, 7, 2), seed=3).double()
    with torch.no_grad():
        m.layers[0].bias[0] = -10.0  # dead
    g = ia.unit_gradients(m, x.double(), y)[0]
    # closed form of the cross-entropy gradient of a one-hidden-layer ReLU net
    X, W, b = x.double().numpy(), m.layers[0].weight.detach().numpy(), m.layers[0].bias.detach().numpy()
    V, c = m.layers[1].weight.detach().numpy(), m.layers[1].bias.detach().numpy()
    z = X @ W.T + b
    h = np.maximum(z, 0)
    f = h @ V.T + c
    p = np.exp(f - f.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_f = (p - np.eye(2)[y.numpy()]) / len(y)
    d_z = (d_f @ V) * (z > 0)
    ref = np.sqrt((d_z.T @ X) ** 2 @ np.ones(2) + d_z.sum(0) ** 2 + ((d_f.T @ h) ** 2).sum(0))
    assert np.allclose(g.numpy(), ref, rtol=1e-10)
    assert g[0].item() == 0.0 and (g[1:] > 0).all()


def test_zero_init_relu_never_learns_and_sigmoid_stays_symmetric():
    x, y = ia.moons(100, seed=0)
    cfg = TrainConfig(steps=60, batch_size=20, lr=1.0)
    relu = ia.mlp(init="zero", seed=0)
    fit(relu, x, y, cfg=cfg, seed=0, device=CPU)
    for name, p in relu.named_parameters():
        assert torch.all(p == 0) or name == "layers.1.bias"
    sig = ia.mlp(activation="sigmoid", init="zero", seed=0)
    fit(sig, x, y, cfg=cfg, seed=0, device=CPU)
    w, v = sig.layers[0].weight, sig.layers[1].weight
    assert torch.equal(w, w[:1].expand_as(w)) and torch.equal(v, v[:, :1].expand_as(v))
    assert w.abs().max() > 0  # it did learn something


@pytest.fixture(scope="module")
def dead_rows():
    x, y = ia.moons(200, seed=0)
    rows = {lr: ia.dead_unit_experiment(x, y, lr=lr, seeds=SEEDS, device=CPU) for lr in (0.1, 1.0)}
    return x, y, rows


def test_dead_counts_never_fall_along_the_ordered_stream(dead_rows):
    """A dead first-layer unit stays dead under plain SGD (the chapter's comparisons of step size
    and order are registered claims, tests/claims/ch01.py)."""
    _, _, rows = dead_rows
    for r in rows[1.0]:
        assert r["dead at init"] <= r["dead after class 0"] <= r["dead, ordered"]


def _revival_check(models, x, y):
    """Train on and assert: dead units have exactly zero gradient and bit-identical parameters."""
    dead = [ia.dead_units(m, x)[0] for m in models]
    assert sum(int(d.sum()) for d in dead) > 0
    for m, d in zip(models, dead):
        assert torch.all(ia.unit_gradients(m, x, y)[0][d] == 0)
    before = copy.deepcopy(models)
    ia.fit_seeds(models, x, y, cfg=TrainConfig(steps=100, batch_size=20, lr=0.1), seeds=SEEDS, device=CPU)
    for m0, m, d in zip(before, models, dead):
        assert torch.equal(m0.layers[0].weight[d], m.layers[0].weight[d])
        assert torch.equal(m0.layers[1].weight[:, d], m.layers[1].weight[:, d])
        assert ia.dead_units(m, x)[0][d].all()


def test_dead_units_never_recover(dead_rows):
    x, y, rows = dead_rows
    _revival_check([r["model, shuffled"] for r in rows[1.0]], x, y)


def test_revival_check_fails_when_relu_leaks(dead_rows, monkeypatch):
    # mutation: a leaky activation gives dead units a gradient, and the check must notice
    x, y, rows = dead_rows
    models = copy.deepcopy([r["model, shuffled"] for r in rows[1.0]])
    monkeypatch.setitem(ia.ACTIVATIONS, "relu", lambda z: torch.nn.functional.leaky_relu(z, 0.1))
    for m in models:
        m.act = ia.ACTIVATIONS["relu"]
    with pytest.raises(AssertionError):
        _revival_check(models, x, y)


def check_gates():
    for name, (truth, w, b) in ia.GATES.items():
        fires = ia.relu_unit(w, b, ia.inputs(len(w))) > 0
        assert fires.long().tolist() == list(truth), name
    # the truth tables themselves, from Python's boolean operators
    ops = {"AND": lambda a, b: a and b, "OR": lambda a, b: a or b, "NAND": lambda a, b: not (a and b),
           "NOR": lambda a, b: not (a or b)}
    for name, op in ops.items():
        assert ia.GATES[name][0] == tuple(int(bool(op(a, b))) for a, b in itertools.product((0, 1), repeat=2))
    assert ia.GATES["NOT"][0] == (1, 0)


def test_gates_by_enumeration():
    check_gates()


def test_gate_check_fails_when_the_unit_is_broken(monkeypatch):
    monkeypatch.setattr(ia, "relu_unit", lambda w, b, x: torch.relu(x @ torch.as_tensor(w, dtype=x.dtype) - b))
    with pytest.raises(AssertionError):
        check_gates()


def check_sixteen_functions():
    impossible = []
    for truth in itertools.product((0, 1), repeat=4):
        wb, cert = ia.one_unit_weights(truth), ia.farkas_certificate(truth)
        assert (wb is None) != (cert is None), truth
        if wb is not None:
            assert tuple((ia.relu_unit(wb[:2], wb[2], ia.inputs(2)) > 0).long().tolist()) == truth
        else:
            impossible.append(truth)
    assert impossible == [(0, 1, 1, 0), (1, 0, 0, 1)]


def test_exactly_xor_and_xnor_need_a_hidden_layer():
    check_sixteen_functions()
    assert ia.certificate_holds((0, 1, 1, 0), (1, 1, 1, 1))
    assert not ia.certificate_holds((0, 1, 1, 0), (1, 1, 1, 0))
    assert not ia.certificate_holds((0, 1, 1, 0), (-1, 1, 1, 1))


def test_sixteen_function_check_fails_with_a_wrong_certificate_rule(monkeypatch):
    # mutation: a rule that accepts any non-negative multipliers "proves" feasible functions impossible
    monkeypatch.setattr(ia, "certificate_holds", lambda table, y: all(v >= 0 for v in y))
    with pytest.raises(AssertionError):
        check_sixteen_functions()


def test_sixteen_function_check_fails_with_an_incomplete_search(monkeypatch):
    # mutation: searching only non-negative weights misses NAND, NOR, ...; the partition check notices
    real = ia.one_unit_weights
    monkeypatch.setattr(ia, "one_unit_weights", lambda table: real(table, values=range(0, 3)))
    with pytest.raises(AssertionError):
        check_sixteen_functions()


def test_xor_network_exact():
    net = ia.xor_network()
    out = net(ia.inputs(2)).squeeze(1)
    assert out.tolist() == [0.0, 1.0, 1.0, 0.0]
