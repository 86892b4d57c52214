"""Checks behind chapter 6 (dropout in a two-weight model), drop rate p, keep probability 1 - p.

References come from outside the code under test: sympy, enumeration of masks, the exact SGD
moments (tolerances are Monte Carlo standard errors from the exact covariance), torch's own
layers. Mutation tests break the library on purpose and expect the checks to fail.
"""

from dataclasses import replace

import numpy as np
import pytest
import sympy as sp
import torch

from dlbook import dropout as D
from dlbook.results import compare, summary
from dlbook.train import TrainConfig, fit

X = np.array([[10.0, 1.0]])
Y = np.array([11.0])
x = X[0]
SEEDS = 10
# the chapter's settings
CFG = TrainConfig(steps=3000, batch_size=256, lr=1e-3, loss="mse", sampling="replacement")


def sympy_minimizer(rate, convention):
    """argmin of the expected loss by sympy from the four masks, independent of the library."""
    w1, w2 = sp.symbols("w1 w2", real=True)
    p = sp.Rational(rate).limit_denominator(1000)
    scale = 1 / (1 - p) if convention == "inverted" else 1
    loss = sum((1 - p if m1 else p) * (1 - p if m2 else p)
               * (11 - scale * (m1 * 10 * w1 + m2 * w2)) ** 2 for m1 in (0, 1) for m2 in (0, 1))
    sol = sp.solve([sp.diff(loss, w1), sp.diff(loss, w2)], [w1, w2], dict=True)[0]
    return np.array([float(sol[w1]), float(sol[w2])])


def check_sgd_reaches_closed_form(rate, convention="inverted", *, steps=1500, batch_size=64, seeds=12):
    """Runs vs exact moments (4 Monte Carlo SEs) and exact mean vs closed form (contraction bound)."""
    lr = D.curvature_lr(X, rate=rate, convention=convention)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, loss="mse", sampling="replacement")
    W = D.fit_linear(X, Y, rates=[rate] * seeds, conventions=convention, cfg=cfg, seed=0, device="cpu")
    mean, cov = D.sgd_moments(X, Y, rate=rate, lr=lr, batch_size=batch_size, steps=steps,
                              convention=convention)
    w_star = D.dropout_minimizer(X, Y, rate=rate, convention=convention)
    rho = D.contraction_factor(D.expected_loss_hessian(X, rate=rate, convention=convention), lr)
    assert np.linalg.norm(mean - w_star) <= rho**steps * np.linalg.norm(w_star) + 1e-12
    assert np.all(np.abs(W.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / seeds))
    return W


def test_min_norm_solution_and_gd_path_with_torch_layers():
    w = D.min_norm_solution(X, Y)
    np.testing.assert_allclose(w, [110 / 101, 11 / 101], rtol=1e-12)
    cfg = TrainConfig(steps=60, batch_size=4, lr=1e-3, loss="mse", sampling="replacement")
    net = D.torch_model(2, rate=0.0)
    with D.recording(net) as rec:
        fit(net, torch.tensor(X), torch.tensor(Y), cfg=cfg, seed=0, device="cpu")
    path = np.stack(rec["weights"] + [net[1].weight.detach()[0]])
    t = np.arange(61)[:, None]
    # GD from zero stays on the line through x: w_t = (1 - (1 - 2 lr |x|^2)^t) w_min_norm exactly
    np.testing.assert_allclose(path, (1 - (1 - 2e-3 * 101) ** t) * w, rtol=1e-10, atol=1e-14)


def test_expected_loss_sympy_enumeration_and_closed_form():
    w1, w2, p, x1, x2, y = sp.symbols("w1 w2 p x1 x2 y", real=True)
    total = 0
    for m1 in (0, 1):
        for m2 in (0, 1):
            prob = (1 - p if m1 else p) * (1 - p if m2 else p)
            total += prob * (y - (m1 * x1 * w1 + m2 * x2 * w2) / (1 - p)) ** 2
    closed = (y - x1 * w1 - x2 * w2) ** 2 + p / (1 - p) * (x1**2 * w1**2 + x2**2 * w2**2)
    assert sp.simplify(total - closed) == 0
    rng = np.random.default_rng(0)
    for rate in (0.0, 0.2, 0.5, 0.9):
        for conv in D.CONVENTIONS:
            w = rng.normal(size=2)
            assert D.expected_dropout_loss(w, X, Y, rate=rate, convention=conv) == pytest.approx(
                D.enumerated_dropout_loss(w, X, Y, rate=rate, convention=conv), rel=1e-12)


def test_minimizer_against_sympy_equal_contributions_and_limit():
    for rate in (0.1, 0.5, 0.8):
        for conv in D.CONVENTIONS:
            np.testing.assert_allclose(D.dropout_minimizer(X, Y, rate=rate, convention=conv),
                                       sympy_minimizer(rate, conv), rtol=1e-12)
        w = D.dropout_minimizer(X, Y, rate=rate)
        np.testing.assert_allclose(10 * w[0], w[1], rtol=1e-12)  # equal contributions
    p = sp.Symbol("p", positive=True)
    lam = p / (1 - p)
    limit = [sp.limit(c, p, 0, "+") for c in (11 / (10 * (lam + 2)), 11 / (lam + 2))]
    assert limit == [sp.Rational(11, 20), sp.Rational(11, 2)]
    assert np.linalg.norm(np.array(limit, float) - D.min_norm_solution(X, Y)) > 5


def test_d_inputs_equal_contributions():
    x5, lam = np.array([[3.0, -1.0, 0.5, 7.0, 2.0]]), D.penalty_strength(0.3)
    w = D.dropout_minimizer(x5, Y, rate=0.3)
    np.testing.assert_allclose(x5[0] * w, 11 / (lam + 5), rtol=1e-12)
    assert D.enumerated_dropout_loss(w, x5, Y, rate=0.3) == pytest.approx(121 * lam / (lam + 5), rel=1e-12)


def test_min_loss_and_all_dropped_share():
    for rate in (0.2, 0.5, 0.7):
        w = D.dropout_minimizer(X, Y, rate=rate)
        loss = D.enumerated_dropout_loss(w, X, Y, rate=rate)
        assert loss == pytest.approx(121 * rate / (2 - rate), rel=1e-12)
        assert loss > rate**2 * 121  # the all-dropped mask alone costs p^2 y^2


def test_torch_dropout_is_inverted():
    out = torch.nn.functional.dropout(torch.ones(1000, dtype=torch.float64), p=0.2, training=True)
    assert set(np.unique(out.numpy()).round(12)) == {0.0, 1.25}


def test_exact_moments_against_a_plain_monte_carlo_loop():
    # an independent simulator: numpy, one row and mask at a time, many replicas
    rate, lr, T, B, S = 0.5, 2e-3, 200, 4, 4000
    rng = np.random.default_rng(0)
    w = np.zeros((S, 2))
    for _ in range(T):
        xt = x * (rng.random((S, B, 2)) >= rate) / (1 - rate)
        resid = Y[0] - (xt * w[:, None]).sum(-1)
        w += lr * 2 * (xt * resid[..., None]).mean(1)
    mean, cov = D.sgd_moments(X, Y, rate=rate, lr=lr, batch_size=B, steps=T)
    assert np.all(np.abs(w.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / S))
    # relative sd of a variance estimate from S replicas: about sqrt(2 / S) = 2 %
    np.testing.assert_allclose(np.var(w, axis=0, ddof=1), np.diag(cov), rtol=0.1)


@pytest.mark.parametrize("rate, convention", [(0.5, "inverted"), (0.2, "none"), (0.8, "inverted")])
def test_sgd_reaches_closed_form(rate, convention):
    check_sgd_reaches_closed_form(rate, convention)


def test_torch_nn_dropout_reaches_exact_moments():
    cfg = TrainConfig(steps=800, batch_size=64, lr=2e-3, loss="mse", sampling="replacement")
    mean, cov = D.sgd_moments(X, Y, rate=0.5, lr=2e-3, batch_size=64, steps=800)
    W = []
    for seed in range(SEEDS):
        net = D.torch_model(2, rate=0.5)
        fit(net, torch.tensor(X), torch.tensor(Y), cfg=cfg, seed=seed, device="cpu")
        W.append(net[1].weight.detach().numpy()[0])
    assert np.all(np.abs(np.mean(W, 0) - mean) < 4 * np.sqrt(np.diag(cov) / SEEDS))


def test_per_model_learning_rates_are_exact():
    # at rate 0 training is deterministic: each model follows the GD formula with its own lr
    cfg = TrainConfig(steps=40, batch_size=2, lr=1e-3, loss="mse", sampling="replacement")
    W = D.fit_linear(X, Y, rates=[0.0, 0.0], lrs=[1e-3, 3e-3], cfg=cfg, seed=0, device="cpu")
    for w, lr in zip(W, (1e-3, 3e-3)):
        np.testing.assert_allclose(w, (1 - (1 - 2 * lr * 101) ** 40) * D.min_norm_solution(X, Y), rtol=1e-10)


def test_no_rescaling_needs_test_time_scaling():
    """Train without rescaling; evaluate with and without the test-time factor against sympy."""
    rate, T, B = 0.2, 1500, 64
    lr = D.curvature_lr(X, rate=rate, convention="none")
    cfg = TrainConfig(steps=T, batch_size=B, lr=lr, loss="mse", sampling="replacement")
    W = D.fit_linear(X, Y, rates=[rate] * SEEDS, conventions="none", cfg=cfg, seed=5, device="cpu")
    net = D.DropoutLinear(2, rate=rate, convention="none").eval()
    scaled, raw = [], []
    for w in W:
        net.weight.data = torch.tensor(w)
        scaled.append(net(torch.tensor(X)).item())   # the model's test-time forward
        raw.append(x @ w)                             # the same weights without the factor
    target = x @ sympy_minimizer(rate, "inverted")   # mean training-time prediction at the optimum
    _, cov = D.sgd_moments(X, Y, rate=rate, lr=lr, batch_size=B, steps=T, convention="none")
    se = (1 - rate) * np.sqrt(x @ cov @ x / SEEDS)
    assert abs(np.mean(scaled) - target) < 4 * se
    assert abs(np.mean(raw) - target / (1 - rate)) < 4 * se / (1 - rate)  # off by 1 / (1 - p)
    assert np.mean(raw) - target > 4 * se
    assert compare(raw, scaled, paired=True).exceeds(2)
    np.testing.assert_allclose(np.mean(raw) / np.mean(scaled), 1 / (1 - rate), rtol=1e-12)


# --- mutation tests: a broken library must make the checks fail -------------------------------

def test_check_fails_when_closed_form_is_inflated(monkeypatch):
    real = D.dropout_minimizer
    monkeypatch.setattr(D, "dropout_minimizer", lambda *a, **k: 1.5 * real(*a, **k))
    with pytest.raises(AssertionError):
        check_sgd_reaches_closed_form(0.5)


def test_check_fails_when_weights_are_swapped(monkeypatch):
    real = D.dropout_minimizer
    monkeypatch.setattr(D, "dropout_minimizer", lambda *a, **k: real(*a, **k)[::-1])
    with pytest.raises(AssertionError):
        check_sgd_reaches_closed_form(0.5)


def test_check_fails_when_training_forgets_to_rescale(monkeypatch):
    real = D.DropoutLinear.stacked_forward

    def no_rescaling(self, params, x):
        return real(self, params | {"inverted": torch.zeros_like(params["inverted"])}, x)

    monkeypatch.setattr(D.DropoutLinear, "stacked_forward", no_rescaling)
    with pytest.raises(AssertionError):
        check_sgd_reaches_closed_form(0.5)


def test_minimizer_check_fails_when_closed_form_is_inflated(monkeypatch):
    real = D.dropout_minimizer
    monkeypatch.setattr(D, "dropout_minimizer", lambda *a, **k: 1.5 * real(*a, **k))
    with pytest.raises(AssertionError):
        test_minimizer_against_sympy_equal_contributions_and_limit()


# --- the chapter's comparative claims, over seeds ----------------------------------------------

@pytest.fixture(scope="module")
def chapter_runs():
    rate = 0.5
    W = D.fit_linear(X, Y, rates=[rate] * SEEDS, cfg=CFG, seed=0, device="cpu")
    W1 = D.fit_linear(X, Y, rates=[rate] * SEEDS, cfg=replace(CFG, batch_size=1), seed=1, device="cpu")
    adam = replace(CFG, optimizer="adam", lr=1e-2)
    WA = D.fit_linear(X, Y, rates=[rate] * SEEDS + [0.0], cfg=adam, seed=3, device="cpu")
    return {"w*": D.dropout_minimizer(X, Y, rate=rate), "sgd": W, "b1": W1, "adam": WA[:SEEDS],
            "adam0": WA[SEEDS]}


def test_large_batch_lands_closer_than_batch_size_1(chapter_runs):
    w_star = chapter_runs["w*"]
    d1 = np.linalg.norm(chapter_runs["b1"] - w_star, axis=1)
    d256 = np.linalg.norm(chapter_runs["sgd"] - w_star, axis=1)
    assert compare(d1, d256).exceeds(2)
    _, c1 = D.sgd_moments(X, Y, rate=0.5, lr=1e-3, batch_size=1, steps=CFG.steps)
    _, c256 = D.sgd_moments(X, Y, rate=0.5, lr=1e-3, batch_size=256, steps=CFG.steps)
    assert 0.5 * 16 < np.sqrt(np.trace(c1) / np.trace(c256)) < 2 * 16  # roughly sqrt(B)


def test_dropout_swaps_the_weights_and_equalizes_contributions(chapter_runs):
    W = chapter_runs["sgd"]
    assert compare(W[:, 1], 5 * W[:, 0]).exceeds(2)  # w2 well above w1 (without dropout w1 = 10 w2)
    ratio = 10 * W[:, 0] / W[:, 1]
    assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / np.sqrt(SEEDS)  # equal contributions


def test_adam_agrees_with_sgd_only_with_dropout(chapter_runs):
    w_gd = D.min_norm_solution(X, Y)
    np.testing.assert_allclose(chapter_runs["adam0"], [1.0, 1.0], atol=1e-6)
    gap_nodrop = np.linalg.norm(chapter_runs["adam0"] - w_gd)
    d_adam = np.linalg.norm(chapter_runs["adam"] - chapter_runs["w*"], axis=1)
    s = summary(d_adam)
    assert s.mean + 2 * s.se < gap_nodrop / 10  # with dropout Adam ends near w*, far inside that gap


def test_adam_without_dropout_keeps_equal_weights():
    cfg = TrainConfig(steps=2000, batch_size=1, optimizer="adam", lr=0.01, loss="mse", sampling="replacement")
    net = D.torch_model(2, rate=0.0)
    with D.recording(net) as rec:
        fit(net, torch.tensor(X), torch.tensor(Y), cfg=cfg, seed=0, device="cpu")
    path = np.stack(rec["weights"])
    assert np.max(np.abs(path[:, 0] - path[:, 1])) < 1e-6
    np.testing.assert_allclose(net[1].weight.detach().numpy()[0], [1.0, 1.0], atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rate"):
        D.dropout_minimizer(X, Y, rate=1.0)
    with pytest.raises(TypeError, match="rate"):
        D.dropout_minimizer(X, Y, rate="0.5")
    with pytest.raises(ValueError, match="convention"):
        D.expected_dropout_loss([0, 0], X, Y, rate=0.5, convention="scaled")
    with pytest.raises(ValueError, match="lrs"):
        D.fit_linear(X, Y, rates=[0.5], lrs=[5e-3], cfg=replace(CFG, optimizer="adam"), seed=0, device="cpu")
    with pytest.raises(ValueError, match="X must be"):
        D.min_norm_solution(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="batch_size"):
        D.sgd_moments(X, Y, rate=0.5, lr=1e-3, batch_size=0, steps=1)
