"""Checks behind chapter 7 (dropout as Tikhonov regularization), keep probability p, no rescaling."""

import numpy as np
import pytest
import sympy as sp

from dlbook import dropout as D
from dlbook import tikhonov as T


def random_problem(seed=0, n=12, d=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.array([1.0, 4.0, 0.25])[:d]
    return X, X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)


def test_symbolic_expectation_3x2():
    p = sp.Symbol("p", positive=True)
    X = sp.Matrix(3, 2, sp.symbols("x1:4(1:3)", real=True))
    y = sp.Matrix(sp.symbols("y1:4", real=True))
    w = sp.Matrix(sp.symbols("w1:3", real=True))
    r = sp.symbols("r1:4(1:3)")
    R = sp.Matrix(3, 2, r)
    loss = sp.expand(((y - X.multiply_elementwise(R) * w).T * (y - X.multiply_elementwise(R) * w))[0])
    loss = loss.replace(lambda e: e.is_Pow and e.base in r, lambda e: e.base)  # r^2 = r for r in {0, 1}
    expected = sp.expand(loss.subs({ri: p for ri in r}))  # independent entries: E of a product of distinct r's
    gamma = sp.diag(*[sp.sqrt(sum(X[i, j] ** 2 for i in range(3))) for j in range(2)])
    target = ((y - p * X * w).T * (y - p * X * w))[0] + p * (1 - p) * ((gamma * w).T * (gamma * w))[0]
    assert sp.simplify(expected - sp.expand(target)) == 0


def test_enumeration_matches_closed_form():
    rng = np.random.default_rng(1)
    X, y, w = rng.normal(size=(3, 2)), rng.normal(size=3), rng.normal(size=2)
    for p in (0.3, 0.5, 0.9):
        assert T.enumerated_dropout_objective(w, X, y, keep=p) == pytest.approx(
            T.dropout_objective(w, X, y, keep=p), rel=1e-12)


def test_rescaled_dropout_solution_is_tikhonov_and_inverted_dropout():
    X, y = random_problem()
    for p in (0.4, 0.8):
        w_check = T.dropout_solution(X, y, keep=p)
        eps = 1e-6
        for i in range(X.shape[1]):
            e = np.zeros(X.shape[1])
            e[i] = eps
            g = (T.dropout_objective(w_check + e, X, y, keep=p) - T.dropout_objective(w_check - e, X, y, keep=p)) / 2
            assert abs(g / eps) < 1e-5
        w_tik = T.tikhonov_solution(X, y, T.dropout_gamma(X, keep=p))
        np.testing.assert_allclose(T.rescale(w_check, keep=p), w_tik, rtol=1e-10)
        # inverted dropout (drop rate 1 - p) learns the rescaled weights directly
        np.testing.assert_allclose(D.dropout_minimizer(X, y, rate=1 - p), w_tik, rtol=1e-10)


def test_change_of_variables_to_ridge():
    X, y = random_problem()
    p = 0.6
    lam = (1 - p) / p
    G_check = np.diag(T.column_norms(X))
    Xt = T.ridge_data(X, G_check)
    np.testing.assert_allclose(Xt, X / T.column_norms(X), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(Xt, axis=0), 1.0, rtol=1e-12)
    w_ridge = T.ridge_solution(Xt, y, lam=lam)
    np.testing.assert_allclose(np.linalg.solve(G_check, w_ridge),
                               T.tikhonov_solution(X, y, T.dropout_gamma(X, keep=p)), rtol=1e-10)


def test_dropout_is_equivariant_to_feature_scale_ridge_is_not():
    X, y = random_problem()
    S = np.diag([10.0, 0.1, 3.0])
    w = T.rescale(T.dropout_solution(X, y, keep=0.7), keep=0.7)
    w_s = T.rescale(T.dropout_solution(X @ S, y, keep=0.7), keep=0.7)
    np.testing.assert_allclose(S @ w_s, w, rtol=1e-10)
    r, r_s = T.ridge_solution(X, y, lam=1.0), T.ridge_solution(X @ S, y, lam=1.0)
    assert np.linalg.norm(S @ r_s - r) > 0.05 * np.linalg.norm(r)


def test_monte_carlo_sgd_matches_closed_form():
    X, y = random_problem(2, n=10)
    p = 0.7
    h = np.linalg.eigvalsh(T.objective_hessian(X, keep=p))
    steps, S = 4000, 8
    out = T.monte_carlo_dropout_sgd(X, y, keep=p, steps=steps, lr=1 / h[-1], replicas=S, seed=0)
    w_check = T.dropout_solution(X, y, keep=p)
    bias = (1 - h[0] / h[-1]) ** (steps // 2) * np.linalg.norm(w_check)
    avg = out["average"]
    se = avg.std(0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(avg.mean(0) - w_check) <= bias + 5 * se + 1e-12)
    w_tik = T.tikhonov_solution(X, y, T.dropout_gamma(X, keep=p))
    err = np.linalg.norm(T.rescale(avg.mean(0), keep=p) - w_tik)
    assert err < 0.02 * np.linalg.norm(w_tik)
    assert np.linalg.norm(avg.mean(0) - w_tik) > 10 * err  # without rescaling it does not match


def test_bad_arguments():
    X, y = random_problem()
    with pytest.raises(ValueError, match="keep"):
        T.dropout_solution(X, y, keep=0.0)
    with pytest.raises(TypeError, match="keep"):
        T.dropout_objective(np.zeros(3), X, y, keep=None)
    with pytest.raises(ValueError, match="Gamma"):
        T.tikhonov_solution(X, y, np.eye(2))
    with pytest.raises(ValueError, match="lam"):
        T.ridge_solution(X, y, lam=0.0)
    with pytest.raises(ValueError, match="16 entries"):
        T.enumerated_dropout_objective(np.zeros(3), X, y, keep=0.5)
