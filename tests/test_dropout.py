"""Checks behind chapter 6 (dropout in a two-weight model): every analytic claim the chapter makes."""

import numpy as np
import pytest
import sympy as sp
import torch

from dlbook import dropout as D

X = np.array([[10.0, 1.0]])
Y = np.array([11.0])


def test_min_norm_solution_and_gd_from_zero():
    w = D.min_norm_solution(X, Y)
    np.testing.assert_allclose(w, [110 / 101, 11 / 101], rtol=1e-12)
    lr, T = 1e-3, 50
    run = D.train_dropout(X, Y, rates=[0.0], steps=T, batch_size=4, lr=lr, seed=0)
    # GD from zero stays on the line through x: w_T = (1 - (1 - 2 lr |x|^2)^T) w_min_norm exactly
    np.testing.assert_allclose(run["weights"][0], (1 - (1 - 2 * lr * 101) ** T) * w, rtol=1e-10)


def test_expected_loss_sympy_enumeration_and_closed_form():
    w1, w2, q, x1, x2, y = sp.symbols("w1 w2 q x1 x2 y", real=True)
    total = 0
    for m1 in (0, 1):
        for m2 in (0, 1):
            prob = (1 - q if m1 else q) * (1 - q if m2 else q)
            total += prob * (y - (m1 * x1 * w1 + m2 * x2 * w2) / (1 - q)) ** 2
    closed = (y - x1 * w1 - x2 * w2) ** 2 + q / (1 - q) * (x1**2 * w1**2 + x2**2 * w2**2)
    assert sp.simplify(total - closed) == 0
    rng = np.random.default_rng(0)
    for rate in (0.0, 0.2, 0.5, 0.9):
        for conv in D.CONVENTIONS:
            w = rng.normal(size=2)
            assert D.expected_dropout_loss(w, X, Y, rate=rate, convention=conv) == pytest.approx(
                D.enumerated_dropout_loss(w, X, Y, rate=rate, convention=conv), rel=1e-12)


def test_minimizer_equal_contributions_and_limit():
    q, lam = sp.symbols("q lambda", positive=True)
    w_star = sp.Matrix([11 / (10 * (lam + 2)), 11 / (lam + 2)]).subs(lam, q / (1 - q))
    for rate in (0.1, 0.5, 0.8):
        w = D.dropout_minimizer(X, Y, rate=rate)
        np.testing.assert_allclose(w, [float(v) for v in w_star.subs(q, rate)], rtol=1e-12)
        np.testing.assert_allclose(10 * w[0], w[1], rtol=1e-12)  # equal contributions
        # the gradient of the closed-form loss vanishes there
        eps = 1e-6
        for i in range(2):
            e = np.zeros(2)
            e[i] = eps
            g = (D.expected_dropout_loss(w + e, X, Y, rate=rate) - D.expected_dropout_loss(w - e, X, Y, rate=rate)) / 2
            assert abs(g / eps) < 1e-6
    limit = [sp.limit(c, q, 0, "+") for c in w_star]
    assert limit == [sp.Rational(11, 20), sp.Rational(11, 2)]
    assert np.linalg.norm(np.array(limit, float) - D.min_norm_solution(X, Y)) > 5


def test_d_inputs_equal_contributions():
    x5, lam = np.array([[3.0, -1.0, 0.5, 7.0, 2.0]]), D.penalty_strength(0.3)
    w = D.dropout_minimizer(x5, Y, rate=0.3)
    np.testing.assert_allclose(x5[0] * w, 11 / (lam + 5), rtol=1e-12)
    assert D.expected_dropout_loss(w, x5, Y, rate=0.3) == pytest.approx(121 * lam / (lam + 5), rel=1e-12)
    assert D.expected_dropout_loss(w, x5, Y, rate=0.3) == pytest.approx(
        D.enumerated_dropout_loss(w, x5, Y, rate=0.3), rel=1e-12)


def test_min_loss_and_all_dropped_share():
    for rate in (0.2, 0.5, 0.7):
        w = D.dropout_minimizer(X, Y, rate=rate)
        loss = D.expected_dropout_loss(w, X, Y, rate=rate)
        assert loss == pytest.approx(121 * rate / (2 - rate), rel=1e-12)
        assert loss > rate**2 * 121  # the all-dropped mask alone costs rate^2 y^2


def test_no_rescaling_convention_needs_test_time_scaling():
    for rate in (0.2, 0.5):
        w_inv = D.dropout_minimizer(X, Y, rate=rate)
        w_raw = D.dropout_minimizer(X, Y, rate=rate, convention="none")
        np.testing.assert_allclose((1 - rate) * w_raw, w_inv, rtol=1e-12)


def test_torch_dropout_is_inverted():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = torch.nn.functional.dropout(torch.ones(1000, dtype=torch.float64), p=0.2, training=True)
    assert set(np.unique(out.numpy()).round(12)) == {0.0, 1.25}


def test_vectorized_sweep_equals_loop():
    rates = [0.0, 0.3, 0.6]
    kw = dict(steps=200, batch_size=16, seed=3)
    for opt, lr in (("sgd", 1e-3), ("adam", 1e-2)):
        batched = D.train_dropout(X, Y, rates=rates, lr=lr, optimizer=opt, **kw)
        for r, rate in enumerate(rates):
            single = D.train_dropout(X, Y, rates=[rate], lr=lr, optimizer=opt, **kw)
            np.testing.assert_allclose(batched["path"][:, r], single["path"][:, 0], rtol=1e-12, atol=1e-14)


def test_hand_gradient_and_adam_match_torch():
    w0 = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    xt = torch.tensor([[20.0, 0.0], [0.0, 2.0], [20.0, 2.0]], dtype=torch.float64)
    yt = torch.full((3,), 11.0, dtype=torch.float64)
    loss = ((yt - xt @ w0) ** 2).mean()
    loss.backward()
    resid = (yt - xt @ w0).detach()
    np.testing.assert_allclose(w0.grad.numpy(), (-2 * (xt * resid[:, None]).mean(0)).numpy(), rtol=1e-12)
    # Adam at rate 0 (deterministic gradient) against torch.optim.Adam
    run = D.train_dropout(X, Y, rates=[0.0], steps=100, batch_size=1, lr=0.05, optimizer="adam", seed=0)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    x = torch.tensor(X[0])
    for _ in range(100):
        opt.zero_grad()
        ((11.0 - x @ w) ** 2).backward()
        opt.step()
    np.testing.assert_allclose(run["weights"][0], w.detach().numpy(), rtol=1e-10)


def test_exact_moments_predict_sgd_error():
    rate, lr, T = 0.5, 2e-3, 1500
    H = D.expected_loss_hessian(X, rate=rate)
    np.testing.assert_allclose(np.linalg.eigvalsh(H), np.linalg.eigvalsh(2 * np.array([[200.0, 10], [10, 2]])))
    rho = D.contraction_factor(H, lr)
    assert rho == pytest.approx(1 - lr * np.linalg.eigvalsh(H)[0])
    w_star = D.dropout_minimizer(X, Y, rate=rate)
    mean, second = D.sgd_error_moments(X, Y, rate=rate, lr=lr, batch_size=64, steps=T)
    # the mean iterate is GD on the expected loss
    np.testing.assert_allclose(mean, np.linalg.matrix_power(np.eye(2) - lr * H, T) @ -w_star, atol=1e-12)
    assert np.linalg.norm(mean) <= rho**T * np.linalg.norm(w_star) + 1e-15
    rms = np.sqrt(np.trace(second))
    errs = [np.linalg.norm(D.train_dropout(X, Y, rates=[rate], steps=T, batch_size=64, lr=lr, seed=s)["weights"][0]
                           - w_star) for s in range(3)]
    assert max(errs) <= rho**T * np.linalg.norm(w_star) + 4 * rms
    assert 1 / 3 < np.sqrt(np.mean(np.square(errs))) / rms < 3
    _, second_1 = D.sgd_error_moments(X, Y, rate=rate, lr=lr, batch_size=1, steps=T)
    assert 4 < np.sqrt(np.trace(second_1)) / rms < 16  # roughly sqrt(64) = 8


def test_torch_nn_dropout_reaches_minimizer():
    w = D.train_torch_dropout(X, Y, rate=0.5, steps=1000, batch_size=64, lr=2e-3, seed=0)
    _, second = D.sgd_error_moments(X, Y, rate=0.5, lr=2e-3, batch_size=64, steps=1000)
    assert np.linalg.norm(w - D.dropout_minimizer(X, Y, rate=0.5)) <= 4 * np.sqrt(np.trace(second))


def test_adam_without_dropout_equal_weights():
    run = D.train_dropout(X, Y, rates=[0.0], steps=2000, batch_size=1, lr=0.01, optimizer="adam", seed=0)
    path = run["path"][:, 0]
    assert np.max(np.abs(path[:, 0] - path[:, 1])) < 1e-6
    np.testing.assert_allclose(run["weights"][0], [1.0, 1.0], atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rate"):
        D.dropout_minimizer(X, Y, rate=1.0)
    with pytest.raises(TypeError, match="rate"):
        D.dropout_minimizer(X, Y, rate="0.5")
    with pytest.raises(ValueError, match="convention"):
        D.expected_dropout_loss([0, 0], X, Y, rate=0.5, convention="scaled")
    with pytest.raises(ValueError, match="optimizer"):
        D.train_dropout(X, Y, rates=[0.5], steps=1, batch_size=1, lr=0.1, optimizer="rmsprop", seed=0)
    with pytest.raises(ValueError, match="lr"):
        D.train_dropout(X, Y, rates=[0.5], steps=1, batch_size=1, lr=0.0, seed=0)
    with pytest.raises(ValueError, match="X must be"):
        D.min_norm_solution(np.zeros((2, 2)), np.zeros(3))
