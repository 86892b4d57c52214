"""Chapter 12: the edge models' fast paths equal their plain definitions (values and autograd gradients).

The generic claim that fit_stacked equals fit lives in tests/test_core.py; here only what is
specific to EdgeCNN / EdgeMLP: their stacked_forward, the arg-max convolution, parameter counts.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlbook import edge_models
from dlbook.edge_models import (cnn_parameter_formula, edge_kernels, global_max_conv, make_cnn, make_mlp,
                                mlp_parameter_formula, stacked_conv, stacked_global_max_conv)
from dlbook.edges import edge_images
from dlbook.metrics import param_count
from dlbook.runtime import torch_generator
from dlbook.sweep import fit_stacked
from dlbook.train import TrainConfig, fit

CPU = torch.device("cpu")
KINDS = {
    "cnn_max": lambda s: make_cnn(seed=s),
    "cnn_avg": lambda s: make_cnn(seed=s, pool="avg"),
    "cnn_local_max": lambda s: make_cnn(seed=s, local_pool="max"),
    "cnn_local_avg": lambda s: make_cnn(seed=s, local_pool="avg"),
    "mlp": lambda s: make_mlp(seed=s, hidden=16),
}


def _data(k, n, *, n_classes=3):
    parts = [edge_images(n, generator=torch_generator(50 + s), n_classes=n_classes, noise=0.05)
             for s in range(k)]
    return torch.stack([p[0] for p in parts]).double(), torch.stack([p[1] for p in parts])


def _plain_cnn(model, x):
    """The CNN written out with conv2d, ReLU, pooling and a linear head: the reference."""
    h = F.relu(F.conv2d(x, model.conv.weight, model.conv.bias))
    if model.local_pool is not None:
        h = (F.max_pool2d if model.local_pool == "max" else F.avg_pool2d)(h, 2)
    h = h.amax(dim=(-2, -1)) if model.pool == "max" else h.mean(dim=(-2, -1))
    return F.linear(h, model.head.weight, model.head.bias)


@pytest.mark.parametrize("kind", list(KINDS))
def test_stacked_forward_equals_each_models_plain_forward_with_gradients(kind):
    models = [KINDS[kind](s).double() for s in (0, 1, 2)]
    x, _ = _data(3, 4)
    params = {name: torch.stack([dict(m.named_parameters())[name] for m in models])
              for name, _ in models[0].named_parameters()}
    out = models[0].stacked_forward(params, x)
    assert out.shape == (3, 12, 3)
    up = torch.randn(out.shape, generator=torch_generator(7), dtype=torch.float64)
    g_stacked = torch.autograd.grad((out * up).sum(), [p for p in params.values()])
    for i, m in enumerate(models):
        ref = _plain_cnn(m, x[i]) if kind.startswith("cnn") else m.fc2(F.relu(m.fc1(x[i].flatten(1))))
        assert torch.allclose(out[i], ref, atol=1e-12)
        assert torch.allclose(m(x[i]), ref, atol=1e-12)
        g_ref = torch.autograd.grad((ref * up[i]).sum(), list(m.parameters()))
        for gs, gr in zip(g_stacked, g_ref):
            assert torch.allclose(gs[i], gr, atol=1e-12)


def test_global_max_conv_value_and_gradient_match_conv2d_amax():
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


def test_stacked_conv_equals_conv2d_model_by_model():
    g = torch_generator(2)
    x = torch.rand(3, 4, 1, 11, 11, generator=g, dtype=torch.float64)
    w = torch.randn(3, 5, 1, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(3, 5, generator=g, dtype=torch.float64)
    out = stacked_conv(x, w, b)
    for i in range(3):
        assert torch.allclose(out[i], F.conv2d(x[i], w[i], b[i]), atol=1e-12)


def test_check_fails_when_the_fast_max_path_is_broken(monkeypatch):
    # mutation: an arg-max one column off must not pass the equality test
    def shifted(x, weight, bias):
        out = stacked_global_max_conv(x, weight, bias)
        return out + 1e-3 * out.detach().abs()

    monkeypatch.setattr(edge_models, "stacked_global_max_conv", shifted)
    with pytest.raises(AssertionError):
        test_stacked_forward_equals_each_models_plain_forward_with_gradients("cnn_max")


def test_local_max_before_global_max_changes_nothing_but_local_avg_does():
    """max over 2x2 blocks, then max over blocks, is the max: the local max slot is redundant."""
    x, _ = _data(1, 6)
    a, b, c = make_cnn(seed=3).double(), make_cnn(seed=3, local_pool="max").double(), \
        make_cnn(seed=3, local_pool="avg").double()
    assert torch.allclose(a(x[0]), b(x[0]), atol=1e-12)
    assert not torch.allclose(a(x[0]), c(x[0]), atol=1e-3)


@pytest.mark.parametrize("kind", ["cnn_max", "cnn_local_avg", "frozen", "mlp"])
def test_fit_stacked_with_the_edge_models_equals_fit(kind):
    make = KINDS.get(kind, lambda s: make_cnn(seed=s, edge_init="hvd"))
    frozen = ("conv.weight", "conv.bias") if kind == "frozen" else ()
    seeds = [3, 4]
    models = [make(s).double() for s in seeds]
    twins = copy.deepcopy(models)
    x, y = _data(2, 7)  # 21 images, batch 8: the last batch of each epoch is partial
    cfg = TrainConfig(steps=12, batch_size=8, optimizer="adam", lr=0.01, eval_every=6)
    h = fit_stacked(models, x, y, cfg=cfg, seeds=seeds, device=CPU, frozen=frozen)
    for k, m in enumerate(twins):
        for name in frozen:
            m.get_parameter(name).requires_grad_(False)
        hk = fit(m, x[k], y[k], cfg=cfg, seed=seeds[k], device=CPU)
        assert np.allclose(h["train_loss"][k], hk["train_loss"], atol=1e-10)
        for p, q in zip(models[k].parameters(), m.parameters()):
            assert torch.allclose(p, q, atol=1e-10)
    if frozen:
        assert all(torch.equal(m.conv.weight, edge_kernels(3).double()) for m in models)


def test_parameter_counts_match_formulas():
    for k, c, f in [(3, 3, 8), (7, 5, 4), (27, 3, 8)]:
        m = make_cnn(seed=0, kernel_size=k, n_classes=c, n_filters=f)
        assert param_count(m) == cnn_parameter_formula(n_filters=f, kernel_size=k, n_classes=c)
    assert param_count(make_cnn(seed=0)) == 8 * 10 + 9 * 3 == 107
    assert param_count(make_mlp(seed=0)) == mlp_parameter_formula(size=28, hidden=64, n_classes=3) \
        == 785 * 64 + 65 * 3
    m = make_cnn(seed=0, edge_init="hvd")
    m.conv.requires_grad_(False)
    assert param_count(m, trainable_only=True) == 27


def test_edge_kernels_are_zero_sum_with_unit_step_response():
    bank = edge_kernels(3)
    assert bank.shape == (8, 1, 3, 3)
    assert torch.allclose(bank.sum(dim=(1, 2, 3)), torch.zeros(8), atol=1e-6)
    step = torch.zeros(1, 1, 8, 8)
    step[..., :4, :] = 1.0  # bright top half: a horizontal edge
    resp = F.conv2d(step, bank).amax(dim=(-2, -1))[0]
    assert torch.isclose(resp[0], torch.tensor(1.0)) and resp[1] == 0
    assert torch.equal(edge_kernels(5)[0, 0, 2], torch.zeros(5))
    assert torch.equal(edge_kernels(3, diagonals=False), bank[[0, 1, 4, 5]])
    assert torch.equal(make_cnn(seed=0, n_filters=4, edge_init="hv").conv.weight, bank[[0, 1, 4, 5]])


def test_bad_arguments_raise_naming_the_argument():
    with pytest.raises(ValueError, match="kernel_size"):
        edge_kernels(4)
    with pytest.raises(ValueError, match="n_filters"):
        make_cnn(seed=0, n_filters=4, edge_init="hvd")
    with pytest.raises(ValueError, match="edge_init"):
        make_cnn(seed=0, edge_init="diag")
    with pytest.raises(ValueError, match="pool"):
        make_cnn(seed=0, pool="min")
    with pytest.raises(ValueError, match="local_pool"):
        make_cnn(seed=0, local_pool="sum")
    with pytest.raises(ValueError, match="seed"):
        make_mlp(seed=-1)
    with pytest.raises(TypeError, match="hidden"):
        make_mlp(seed=0, hidden=2.5)


def test_edge_likeness_is_one_for_the_bank_and_lower_for_random_kernels():
    from dlbook.edge_models import edge_likeness

    assert abs(edge_likeness(edge_kernels(3)) - 1) < 1e-12
    assert abs(edge_likeness(-edge_kernels(5)[:3]) - 1) < 1e-12  # negatives are in the bank
    w = torch.randn(64, 1, 3, 3, generator=torch_generator(0))
    assert 0 < edge_likeness(w) < 0.8


def test_dead_filter_share_counts_filters_off_on_every_image():
    from dlbook.edge_models import dead_filter_share

    model = make_cnn(seed=0)
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.bias.fill_(1.0)
        model.conv.bias[:3] = -1.0  # three filters with a negative constant response: dead
    x = torch.rand(5, 1, 28, 28)
    assert dead_filter_share(model, x) == 3 / 8
    with torch.no_grad():
        model.conv.weight[0, 0, 1, 1] = 2.0  # filter 0 now fires where a pixel exceeds 0.5
    assert dead_filter_share(model, x) == 2 / 8


def test_stripe_contribution_by_hand():
    """A centre-tap filter on a vertical stripe of width w: the maximum rises by the contrast,
    the average by the contrast times the share w*26/676 of the 26x26 positions on the stripe."""
    from dlbook.edge_models import stripe_contribution

    model = make_cnn(seed=0)
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.weight[:, 0, 1, 1] = 1.0
        model.conv.bias.zero_()
    b, v, w = 0.3, 0.8, 3
    x = torch.full((1, 1, 28, 28), b)
    x[..., 10:10 + w] = v
    c_max = stripe_contribution(model, x, torch.tensor([b]), pool="max")
    c_avg = stripe_contribution(model, x, torch.tensor([b]), pool="avg")
    assert torch.allclose(c_max, torch.full((1, 8), v - b), atol=1e-6)
    assert torch.allclose(c_avg, torch.full((1, 8), (v - b) * w * 26 / 676), atol=1e-6)
    with pytest.raises(ValueError, match="background"):
        stripe_contribution(model, x, torch.tensor([b, b]), pool="max")
    with pytest.raises(ValueError, match="pool"):
        stripe_contribution(model, x, torch.tensor([b]), pool="min")
