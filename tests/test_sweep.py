"""Chapter 12: the vectorized sweep engine matches the plain loop; the models and their parameter counts."""

import copy

import pytest
import torch
import torch.nn.functional as F

from dlbook.edge_models import (cnn_parameter_formula, edge_kernels, global_max_conv, make_cnn, make_mlp,
                                mlp_parameter_formula, parameter_count, stacked_global_max_conv)
from dlbook.edges import edge_images
from dlbook.runtime import torch_generator
from dlbook.sweep import SweepConfig, batch_indices, seed_sweep, stacked_logits, train_looped, train_vectorized

CPU = torch.device("cpu")


def _data(k, n, *, dtype=torch.float32, n_classes=3):
    parts = [edge_images(n, generator=torch_generator(50 + s), n_classes=n_classes, noise=0.05) for s in range(k)]
    return torch.stack([p[0] for p in parts]).to(dtype), torch.stack([p[1] for p in parts])


def _max_param_diff(a, b):
    return max((p - q).abs().max().item() for ma, mb in zip(a, b) for p, q in zip(ma.parameters(), mb.parameters()))


@pytest.mark.parametrize("kind", ["cnn_max", "cnn_avg", "cnn_frozen", "mlp"])
def test_vectorized_matches_plain_loop_in_float64(kind):
    seeds = [3, 4, 5]
    make = {"cnn_max": lambda s: make_cnn(seed=s), "cnn_avg": lambda s: make_cnn(seed=s, pool="avg"),
            "cnn_frozen": lambda s: make_cnn(seed=s, edge_init="hvd"), "mlp": lambda s: make_mlp(seed=s, hidden=16)}[kind]
    frozen = ("conv.weight", "conv.bias") if kind == "cnn_frozen" else ()
    models = [make(s).double() for s in seeds]
    twins = copy.deepcopy(models)
    x, y = _data(3, 7, dtype=torch.float64)  # 21 images, batch 8: the last batch of each epoch is partial
    xv, yv = _data(3, 5, dtype=torch.float64)
    cfg = SweepConfig(steps=12, batch_size=8, lr=0.01, eval_every=5)
    h1 = train_vectorized(models, x, y, cfg=cfg, seeds=seeds, device=CPU, x_val=xv, y_val=yv, frozen=frozen)
    h2 = train_looped(twins, x, y, cfg=cfg, seeds=seeds, device=CPU, x_val=xv, y_val=yv, frozen=frozen)
    assert _max_param_diff(models, twins) < 1e-10
    assert list(h1["step"]) == list(h2["step"]) == [5, 10, 12]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert h1[key].shape == (3, 3)
        assert abs(h1[key] - h2[key]).max() < 1e-10
    if frozen:
        bank = edge_kernels(3).double()
        assert all(torch.equal(m.conv.weight, bank) for m in models + twins)


def test_vectorized_close_to_loop_in_float32_and_models_differ():
    seeds = [0, 1]
    models = [make_cnn(seed=s) for s in seeds]
    twins = copy.deepcopy(models)
    x, y = _data(2, 5)
    cfg = SweepConfig(steps=10, batch_size=8, lr=0.01)
    train_vectorized(models, x, y, cfg=cfg, seeds=seeds, device=CPU)
    train_looped(twins, x, y, cfg=cfg, seeds=seeds, device=CPU)
    assert _max_param_diff(models, twins) < 1e-4
    assert not torch.allclose(models[0].conv.weight, models[1].conv.weight)


def test_batch_indices_cover_each_epoch_once():
    batches = batch_indices(10, steps=6, batch_size=4, generator=torch_generator(0))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))
    assert sorted(torch.cat(batches[3:]).tolist()) == list(range(10))


def test_stacked_logits_and_seed_sweep():
    def make_data(s):
        x, y = edge_images(4, generator=torch_generator(s))
        xv, yv = edge_images(3, generator=torch_generator(100 + s))
        return x, y, xv, yv

    hist, models = seed_sweep(lambda s: make_cnn(seed=s), make_data, seeds=[0, 1], cfg=SweepConfig(steps=3), device=CPU)
    assert hist["val_acc"].shape == (2, 1)
    xv = torch.stack([make_data(s)[2] for s in (0, 1)])
    logits = stacked_logits(models, xv, device=CPU)
    assert logits.shape == (2, 9, 3)
    assert torch.allclose(logits[1], models[1](xv[1]), atol=1e-5)


def test_config_and_shape_validation():
    with pytest.raises(ValueError, match="optimizer"):
        SweepConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="steps"):
        SweepConfig(steps=0)
    assert SweepConfig(steps=10, eval_every=4).eval_steps() == [4, 8, 10]
    x, y = _data(2, 3)
    with pytest.raises(ValueError, match="seed"):
        train_vectorized([make_cnn(seed=0)] * 2, x, y, cfg=SweepConfig(steps=1), seeds=[0], device=CPU)


def test_global_max_conv_value_and_gradient():
    g = torch_generator(0)
    x = torch.rand(5, 1, 12, 12, generator=g, dtype=torch.float64)  # continuous values: no ties
    w = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, w, b).amax(dim=(-2, -1))
    out = global_max_conv(x, w, b)
    assert torch.allclose(out, ref, atol=1e-12)
    up = torch.randn(5, 3, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((ref * up).sum(), (w, b))
    gb = torch.autograd.grad((out * up).sum(), (w, b))
    assert all(torch.allclose(p, q, atol=1e-12) for p, q in zip(ga, gb))


def test_parameter_counts_match_formulas():
    for k, c, f in [(3, 3, 8), (7, 5, 4), (28, 3, 8)]:
        m = make_cnn(seed=0, kernel_size=k, n_classes=c, n_filters=f)
        assert parameter_count(m) == cnn_parameter_formula(n_filters=f, kernel_size=k, n_classes=c)
    assert parameter_count(make_cnn(seed=0)) == 107
    assert parameter_count(make_mlp(seed=0)) == mlp_parameter_formula(size=28, hidden=64, n_classes=3) == 50435
    m = make_cnn(seed=0, edge_init="hvd")
    m.conv.requires_grad_(False)
    assert parameter_count(m, trainable_only=True) == 27


def test_edge_kernels_are_zero_sum_with_unit_step_response():
    bank = edge_kernels(3)
    assert bank.shape == (8, 1, 3, 3)
    assert torch.allclose(bank.sum(dim=(1, 2, 3)), torch.zeros(8), atol=1e-6)
    step = torch.zeros(1, 1, 8, 8)
    step[..., :4, :] = 1.0  # bright top half: a horizontal edge
    resp = F.conv2d(step, bank).amax(dim=(-2, -1))[0]
    assert torch.isclose(resp[0], torch.tensor(1.0)) and resp[1] == 0
    assert torch.equal(edge_kernels(5)[0, 0, 2], torch.zeros(5))
    with pytest.raises(ValueError, match="kernel_size"):
        edge_kernels(4)
    assert torch.equal(edge_kernels(3, diagonals=False), bank[[0, 1, 4, 5]])
    assert torch.equal(make_cnn(seed=0, n_filters=4, edge_init="hv").conv.weight, bank[[0, 1, 4, 5]])
    with pytest.raises(ValueError, match="n_filters"):
        make_cnn(seed=0, n_filters=4, edge_init="hvd")
    with pytest.raises(ValueError, match="edge_init"):
        make_cnn(seed=0, edge_init=True)
    with pytest.raises(ValueError, match="pool"):
        make_cnn(seed=0, pool="min")


@pytest.mark.parametrize("kind", ["cnn_max", "cnn_avg", "mlp"])
def test_stacked_forward_matches_each_model(kind):
    make = {"cnn_max": lambda s: make_cnn(seed=s), "cnn_avg": lambda s: make_cnn(seed=s, pool="avg"),
            "mlp": lambda s: make_mlp(seed=s, hidden=16)}[kind]
    models = [make(s).double() for s in (0, 1, 2)]
    x, _ = _data(3, 4, dtype=torch.float64)
    params = {name: torch.stack([dict(m.named_parameters())[name] for m in models]) for name, _ in models[0].named_parameters()}
    out = models[0].stacked_forward(params, x)
    assert out.shape == (3, 12, 3)
    assert all(torch.allclose(out[i], m(x[i]), atol=1e-12) for i, m in enumerate(models))


def test_stacked_global_max_conv_takes_the_same_winner_on_ties():
    g = torch_generator(1)
    x = torch.zeros(2, 3, 1, 10, 10, dtype=torch.float64)  # flat images: every position ties
    x[0, 1, 0, 4:6, :] = 1.0  # a stripe: ties along its rows
    x[1, 2] = torch.rand(1, 10, 10, generator=g, dtype=torch.float64)
    w = torch.randn(2, 4, 1, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    out = stacked_global_max_conv(x, w, b)
    ref = torch.stack([global_max_conv(x[i], w[i], b[i]) for i in range(2)])
    assert torch.equal(out, ref)
    up = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((ref * up).sum(), (w, b))
    gb = torch.autograd.grad((out * up).sum(), (w, b))
    assert all(torch.allclose(p, q, atol=1e-12) for p, q in zip(ga, gb))


def test_vmap_fallback_for_models_without_stacked_forward():
    seeds = [0, 1]

    def make(s):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 3)).double()

    models = [make(s) for s in seeds]
    twins = copy.deepcopy(models)
    x, y = _data(2, 4, dtype=torch.float64)
    cfg = SweepConfig(steps=6, batch_size=5, lr=0.01)
    train_vectorized(models, x, y, cfg=cfg, seeds=seeds, device=CPU)
    train_looped(twins, x, y, cfg=cfg, seeds=seeds, device=CPU)
    assert _max_param_diff(models, twins) < 1e-10
