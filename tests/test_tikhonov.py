"""Checks behind chapter 7 (dropout as Tikhonov regularization): drop rate p, no rescaling in training.

References: sympy, enumeration of all keep matrices, finite differences, the exact SGD moments of
`dropout.sgd_moments` (Monte Carlo tolerances). Mutation tests break the library on purpose.
"""

import numpy as np
import pytest
import sympy as sp

from dlbook import dropout as D
from dlbook import tikhonov as T
from dlbook.train import TrainConfig


def random_problem(seed=0, n=12, d=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.array([1.0, 4.0, 0.25])[:d]
    return X, X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)


def test_symbolic_expectation_3x2():
    p = sp.Symbol("p", positive=True)  # drop rate
    X = sp.Matrix(3, 2, sp.symbols("x1:4(1:3)", real=True))
    y = sp.Matrix(sp.symbols("y1:4", real=True))
    w = sp.Matrix(sp.symbols("w1:3", real=True))
    r = sp.symbols("r1:4(1:3)")
    R = sp.Matrix(3, 2, r)
    loss = sp.expand(((y - X.multiply_elementwise(R) * w).T * (y - X.multiply_elementwise(R) * w))[0])
    loss = loss.replace(lambda e: e.is_Pow and e.base in r, lambda e: e.base)  # r^2 = r for r in {0, 1}
    expected = sp.expand(loss.subs({ri: 1 - p for ri in r}))  # E of a product of distinct r's
    gamma = sp.diag(*[sp.sqrt(sum(X[i, j] ** 2 for i in range(3))) for j in range(2)])
    target = ((y - (1 - p) * X * w).T * (y - (1 - p) * X * w))[0] + p * (1 - p) * ((gamma * w).T * (gamma * w))[0]
    assert sp.simplify(expected - sp.expand(target)) == 0


def check_objective_against_enumeration():
    rng = np.random.default_rng(1)
    X, y, w = rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=2)
    for rate in (0.1, 0.5, 0.7):
        assert T.enumerated_dropout_objective(w, X, y, rate=rate) == pytest.approx(
            T.dropout_objective(w, X, y, rate=rate), rel=1e-12)


def test_enumeration_matches_closed_form():
    check_objective_against_enumeration()


def check_dropout_solution(rate):
    """The solution has zero gradient (finite differences of the enumerated objective's closed form)."""
    X, y = random_problem()
    w_check = T.dropout_solution(X, y, rate=rate)
    eps = 1e-6
    for i in range(X.shape[1]):
        e = np.zeros(X.shape[1])
        e[i] = eps
        g = (T.dropout_objective(w_check + e, X, y, rate=rate) - T.dropout_objective(w_check - e, X, y, rate=rate))
        assert abs(g / (2 * eps)) < 1e-5
    return X, y, w_check


def test_rescaled_dropout_solution_is_tikhonov_and_inverted_dropout():
    for rate in (0.2, 0.6):
        X, y, w_check = check_dropout_solution(rate)
        w_tik = T.tikhonov_solution(X, y, T.dropout_gamma(X, rate=rate))
        np.testing.assert_allclose(T.rescale(w_check, rate=rate), w_tik, rtol=1e-10)
        # inverted dropout at the same drop rate learns the rescaled weights directly
        np.testing.assert_allclose(D.dropout_minimizer(X, y, rate=rate), w_tik, rtol=1e-10)
        np.testing.assert_allclose(D.dropout_minimizer(X, y, rate=rate, convention="none"), w_check, rtol=1e-10)


def test_change_of_variables_to_ridge():
    X, y = random_problem()
    rate = 0.4
    G_check = np.diag(T.column_norms(X))
    Xt = T.ridge_data(X, G_check)
    np.testing.assert_allclose(Xt, X / T.column_norms(X), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(Xt, axis=0), 1.0, rtol=1e-12)
    w_ridge = T.ridge_solution(Xt, y, lam=rate / (1 - rate))
    np.testing.assert_allclose(np.linalg.solve(G_check, w_ridge),
                               T.tikhonov_solution(X, y, T.dropout_gamma(X, rate=rate)), rtol=1e-10)


def test_dropout_is_equivariant_to_feature_scale_ridge_is_not():
    X, y = random_problem()
    S = np.diag([10.0, 0.1, 3.0])
    w = T.rescale(T.dropout_solution(X, y, rate=0.3), rate=0.3)
    w_s = T.rescale(T.dropout_solution(X @ S, y, rate=0.3), rate=0.3)
    np.testing.assert_allclose(S @ w_s, w, rtol=1e-10)
    # ridge with lambda n on root-mean-square-normalized features is the rescaled dropout solution
    np.testing.assert_allclose(T.normalized_ridge_solution(X, y, rate=0.3), w, rtol=1e-10)
    rms = np.sqrt(np.mean(X**2, axis=0))
    np.testing.assert_allclose(
        np.linalg.solve((X / rms).T @ (X / rms) + 0.3 / 0.7 * len(X) * np.eye(3), (X / rms).T @ y) / rms, w,
        rtol=1e-10)
    r, r_s = T.ridge_solution(X, y, lam=1.0), T.ridge_solution(X @ S, y, lam=1.0)
    assert np.linalg.norm(S @ r_s - r) > 0.05 * np.linalg.norm(r)


def check_monte_carlo_sgd(rate=0.3, replicas=40, steps=None):
    """Real-mask SGD without rescaling vs exact moments; rescaled mean vs Tikhonov within 4 SE + bias."""
    X, y = random_problem(2, n=10)
    lr = D.curvature_lr(X, rate=rate, convention="none")
    h = np.linalg.eigvalsh(D.expected_loss_hessian(X, rate=rate, convention="none"))
    w_check = T.dropout_solution(X, y, rate=rate)
    rho = 1 - h[0] / h[-1]
    steps = steps or int(np.ceil(np.log(1e-4 / np.linalg.norm(w_check)) / np.log(rho)))
    cfg = TrainConfig(steps=steps, batch_size=10, lr=lr, loss="mse", sampling="replacement")
    W = D.fit_linear(X, y, rates=[rate] * replicas, conventions="none", cfg=cfg, seed=0, device="cpu")
    mean, cov = D.sgd_moments(X, y, rate=rate, lr=lr, batch_size=10, steps=steps, convention="none")
    bias = rho**steps * np.linalg.norm(w_check)
    assert np.linalg.norm(mean - w_check) <= bias + 1e-12
    se = np.sqrt(np.diag(cov) / replicas)
    assert np.all(np.abs(W.mean(0) - mean) <= 4 * se)
    w_tik = T.tikhonov_solution(X, y, T.dropout_gamma(X, rate=rate))
    tol = (1 - rate) * (bias + 4 * se)
    assert np.all(np.abs(T.rescale(W.mean(0), rate=rate) - w_tik) <= tol)
    assert np.linalg.norm(W.mean(0) - w_tik) > 10 * np.linalg.norm(tol)  # without rescaling: no match
    w_ols = np.linalg.lstsq(X, y, rcond=None)[0]
    assert np.linalg.norm(w_ols - w_tik) > 10 * np.linalg.norm(tol)  # the penalty is not negligible


def test_monte_carlo_sgd_matches_closed_form():
    check_monte_carlo_sgd()


# --- mutation tests ------------------------------------------------------------------------

def test_enumeration_check_fails_when_objective_is_inflated(monkeypatch):
    real = T.dropout_objective
    monkeypatch.setattr(T, "dropout_objective", lambda *a, **k: 1.5 * real(*a, **k))
    with pytest.raises(AssertionError):
        check_objective_against_enumeration()


def test_monte_carlo_check_fails_when_solution_is_inflated(monkeypatch):
    real = T.dropout_solution
    monkeypatch.setattr(T, "dropout_solution", lambda *a, **k: 1.5 * real(*a, **k))
    with pytest.raises(AssertionError):
        check_monte_carlo_sgd(steps=800)


def test_monte_carlo_check_fails_when_weights_are_swapped(monkeypatch):
    real = T.tikhonov_solution
    monkeypatch.setattr(T, "tikhonov_solution", lambda *a, **k: real(*a, **k)[[1, 0, 2]])
    with pytest.raises(AssertionError):
        check_monte_carlo_sgd()


def test_monte_carlo_check_fails_with_the_wrong_convention(monkeypatch):
    # training with inverted dropout while the theory assumes none: the check must notice
    real = D.fit_linear
    monkeypatch.setattr(D, "fit_linear", lambda *a, **k: real(*a, **(k | {"conventions": "inverted"})))
    with pytest.raises(AssertionError):
        check_monte_carlo_sgd(steps=800)


def test_bad_arguments():
    X, y = random_problem()
    with pytest.raises(ValueError, match="rate"):
        T.dropout_solution(X, y, rate=1.0)
    with pytest.raises(TypeError, match="rate"):
        T.dropout_objective(np.zeros(3), X, y, rate=None)
    with pytest.raises(ValueError, match="Gamma"):
        T.tikhonov_solution(X, y, np.eye(2))
    with pytest.raises(ValueError, match="lam"):
        T.ridge_solution(X, y, lam=0.0)
    with pytest.raises(ValueError, match="X.size"):
        T.enumerated_dropout_objective(np.zeros(3), X, y, rate=0.5)
