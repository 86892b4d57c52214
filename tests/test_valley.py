"""dlbook.valley: optimizer paths against closed forms and plain loops, least squares against the pseudo-inverse."""

import numpy as np
import pytest
import torch

from dlbook import valley as V
from dlbook.optim import Schedule
from dlbook.results import compare

H = np.array([1.0, 50.0])
START = np.array([-10.0, 1.0])


def reference_path(name, *, lr, steps, h=H, start=START, beta=0.9, b1=0.9, b2=0.999, eps=1e-8):
    """The update rules written out in numpy, independent of torch.optim."""
    w, v, m, s = start.astype(float).copy(), np.zeros_like(start), np.zeros_like(start), np.zeros_like(start)
    path = [w.copy()]
    for t in range(1, steps + 1):
        g = h * w
        if name == "sgd":
            w = w - lr * g
        elif name == "momentum":
            v = beta * v + g
            w = w - lr * v
        elif name == "nesterov":
            v = beta * v + g
            w = w - lr * (g + beta * v)
        else:
            m = b1 * m + (1 - b1) * g
            s = b2 * s + (1 - b2) * g**2
            w = w - lr * (m / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + eps)
        path.append(w.copy())
    return np.array(path)


def check_paths():
    t = np.arange(31)[:, None]
    gd = V.valley_path("sgd", lr=0.03, steps=30, start=START, curvatures=H)
    np.testing.assert_allclose(gd, (1 - 0.03 * H) ** t * START, rtol=1e-12, atol=1e-14)  # closed form
    for name, lr in (("momentum", 0.02), ("nesterov", 0.01), ("adam", 0.3)):
        np.testing.assert_allclose(V.valley_path(name, lr=lr, steps=30, start=START, curvatures=H),
                                   reference_path(name, lr=lr, steps=30), rtol=1e-10, atol=1e-12)


def test_paths_match_closed_form_and_plain_loops():
    check_paths()


def test_path_check_fails_when_momentum_is_wrong(monkeypatch):
    real = V.make_optimizer
    monkeypatch.setattr(V, "make_optimizer", lambda params, **kw: real(params, **(kw | {"momentum": 0.8})))
    with pytest.raises(AssertionError):
        check_paths()


def quadratic_roots_rate(lr, beta, h):
    """Spectral radius from the characteristic polynomial lambda^2 - (1 + beta - lr h) lambda + beta."""
    return max(np.abs(np.roots([1.0, -(1 + beta - lr * hi), beta])).max() for hi in h)


def check_rates():
    for lr in (0.001, 0.01, 0.03, 0.07):
        assert V.momentum_rate(lr, 0.9, H) == pytest.approx(quadratic_roots_rate(lr, 0.9, H), rel=1e-9)
    # inside the band (1 - sqrt b)^2 <= lr h <= (1 + sqrt b)^2 the rate is sqrt(beta) for every h
    assert V.momentum_rate(0.03, 0.9, H) == pytest.approx(np.sqrt(0.9), rel=1e-6)
    assert V.gd_rate(0.03, H) == pytest.approx(max(abs(1 - 0.03 * H)), rel=1e-15)
    # the measured decay of a long path agrees with the rate (oscillation adds at most log(10)/400)
    p = V.valley_path("momentum", lr=0.03, steps=800, start=START, curvatures=H)
    measured = np.log(np.linalg.norm(p[800]) / np.linalg.norm(p[400])) / 400
    assert abs(measured - np.log(V.momentum_rate(0.03, 0.9, H))) < np.log(10) / 400


def test_momentum_rate():
    check_rates()


def test_rate_check_fails_when_rate_is_inflated(monkeypatch):
    real = V.momentum_rate
    monkeypatch.setattr(V, "momentum_rate", lambda *a: 1.02 * real(*a))
    with pytest.raises(AssertionError):
        check_rates()


def test_lr_search_picks_the_smallest_final_loss():
    lrs = [0.001, 0.01, 0.03, 0.05]
    r = V.lr_search("sgd", lrs, steps=50, start=START, curvatures=H)
    brute = [0.5 * np.sum(H * reference_path("sgd", lr=lr, steps=50)[-1] ** 2) for lr in lrs]
    assert r["best_lr"] == lrs[int(np.argmin(brute))] == 0.03
    assert r["losses"][-1] > 1e10  # 0.05 > 2 / 50 diverges
    np.testing.assert_allclose(r["losses"][:3], brute[:3], rtol=1e-10)


def test_bad_input():
    with pytest.raises(ValueError, match="curvatures"):
        V.valley_path("sgd", lr=0.1, steps=3, start=[1.0, 1.0], curvatures=[1.0, -1.0])
    with pytest.raises(ValueError, match="start"):
        V.valley_path("sgd", lr=0.1, steps=3, start=[1.0], curvatures=[1.0, 2.0])
    with pytest.raises(ValueError, match="name"):
        V.valley_path("rmsprop", lr=0.1, steps=3, start=START, curvatures=H)
    with pytest.raises(ValueError, match="n must be smaller"):
        V.wide_problem(10, 5, seed=0)
    with pytest.raises(ValueError, match="X must be"):
        V.least_squares_fit(np.ones((2, 3)), np.ones(2), optimizer="sgd", lr=0.1, steps=2)


X1, Y1 = np.array([[[10.0, 1.0]]]), np.array([[11.0]])


def check_least_squares():
    # two weights: GD from zero converges at rate |1 - 2 lr |x|^2| = 0.192 per step to pinv(X) y
    gd = V.least_squares_fit(X1, Y1, optimizer="sgd", lr=0.004, steps=100)
    np.testing.assert_allclose(gd["w"][0], np.array([10.0, 1.0]) * 11 / 101, atol=1e-12)
    # wide problems: GD reaches the pseudo-inverse solution, from w0 its null-space part is kept
    probs = [V.wide_problem(8, 30, seed=s) for s in range(3)]
    X, y = np.stack([p[0] for p in probs]), np.stack([p[1] for p in probs])
    w_mn = np.stack([np.linalg.pinv(a) @ b for a, b in probs])
    gdw = V.least_squares_fit(X, y, optimizer="sgd", lr=0.05, steps=400)
    np.testing.assert_allclose(gdw["w"], w_mn, atol=1e-9)
    w0 = np.linspace(-1, 1, 30)
    gd0 = V.least_squares_fit(X[:1], y[:1], optimizer="sgd", lr=0.05, steps=400, w0=w0)
    p = X[0].T @ np.linalg.solve(X[0] @ X[0].T, X[0])  # projector on the row space, without pinv
    np.testing.assert_allclose(gd0["w"][0], w_mn[0] + (np.eye(30) - p) @ w0, atol=1e-9)
    np.testing.assert_allclose(V.null_space_part(X[0], w0), (np.eye(30) - p) @ w0, atol=1e-12)


def test_least_squares_against_pseudo_inverse():
    check_least_squares()


def test_least_squares_check_fails_when_start_is_not_zero(monkeypatch):
    real = V.linear_models
    monkeypatch.setattr(V, "linear_models", lambda k, d, w0=None: real(k, d, w0=np.full(d, 0.01) if w0 is None else w0))
    with pytest.raises(AssertionError):
        check_least_squares()


def test_adam_keeps_two_weights_equal_and_ends_at_one_one():
    ad = V.least_squares_fit(X1, Y1, optimizer="adam", lr=0.01, steps=500)
    np.testing.assert_allclose(ad["w"][0], [1.0, 1.0], atol=1e-6)


def test_adam_solutions_have_larger_norm_than_gradient_descent():
    probs = [V.wide_problem(20, 100, seed=s) for s in range(10)]
    X, y = np.stack([p[0] for p in probs]), np.stack([p[1] for p in probs])
    norm_mn = np.linalg.norm(np.stack([np.linalg.pinv(a) @ b for a, b in probs]), axis=1)
    gd = V.least_squares_fit(X, y, optimizer="sgd", lr=0.04, steps=300)
    ad = V.least_squares_fit(X, y, optimizer="adam", lr=0.01, steps=500, schedule=Schedule(kind="cosine", total=500))
    assert ad["history"]["train_loss"][:, -1].max() < 1e-12  # Adam also fits exactly
    c = compare(np.linalg.norm(ad["w"], axis=1) / norm_mn, np.linalg.norm(gd["w"], axis=1) / norm_mn, paired=True)
    assert c.exceeds(2), c
