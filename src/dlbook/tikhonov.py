"""Dropout on a linear model as Tikhonov regularization, without rescaling in training.

Topic module for chapter 7. Notation as in chapter 6: p is the drop rate, 1 - p the keep
probability; the mask matrix R (n, d) has independent Bernoulli(1 - p) entries and training sees
R * X (no division by 1 - p). Training runs go through `dropout.fit_linear` in the chapter.

Used by chapters: 7.
"""

from __future__ import annotations

import itertools

import numpy as np

from . import checks


def _data(X, y):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got X {X.shape} and y {y.shape}")
    return X, y


def column_norms(X) -> np.ndarray:
    """Euclidean norm of each column of X (n, d): the diagonal of Gamma-check, shape (d,)."""
    return np.linalg.norm(np.asarray(X, dtype=np.float64), axis=0)


def dropout_objective(w, X, y, *, rate: float) -> float:
    """||y - (1-p) X w||^2 + p (1-p) ||Gamma-check w||^2 = E_R ||y - (R*X) w||^2 (closed form)."""
    X, y = _data(X, y)
    p = checks.probability("rate", rate)
    w = np.asarray(w, dtype=np.float64)
    return float(np.sum((y - (1 - p) * X @ w) ** 2) + p * (1 - p) * np.sum((column_norms(X) * w) ** 2))


def enumerated_dropout_objective(w, X, y, *, rate: float) -> float:
    """E_R ||y - (R*X) w||^2 by summing over all 2^(n d) keep matrices R (n d <= 16)."""
    X, y = _data(X, y)
    p = checks.probability("rate", rate)
    checks.integer("X.size", X.size, low=1, high=16)
    w = np.asarray(w, dtype=np.float64)
    total = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=X.size):
        R = np.array(bits).reshape(X.shape)
        total += np.prod(np.where(R == 1, 1 - p, p)) * np.sum((y - (R * X) @ w) ** 2)
    return float(total)


def tikhonov_solution(X, y, Gamma) -> np.ndarray:
    """argmin_w ||y - X w||^2 + ||Gamma w||^2 = (X^T X + Gamma^T Gamma)^-1 X^T y, shape (d,)."""
    X, y = _data(X, y)
    Gamma = np.asarray(Gamma, dtype=np.float64)
    if Gamma.shape != (X.shape[1], X.shape[1]):
        raise ValueError(f"Gamma must be ({X.shape[1]}, {X.shape[1]}), got {Gamma.shape}")
    return np.linalg.solve(X.T @ X + Gamma.T @ Gamma, X.T @ y)


def dropout_gamma(X, *, rate: float) -> np.ndarray:
    """Tikhonov matrix of dropout for the rescaled weights (1-p) w: sqrt(p/(1-p)) diag(column norms)."""
    p = checks.probability("rate", rate)
    return np.sqrt(p / (1 - p)) * np.diag(column_norms(X))


def dropout_solution(X, y, *, rate: float) -> np.ndarray:
    """argmin of the dropout objective: the weights as trained, before rescaling, shape (d,)."""
    X, y = _data(X, y)
    keep = 1 - checks.probability("rate", rate)  # keep probability 1 - p
    G = np.diag(column_norms(X) ** 2)
    A = keep**2 * X.T @ X + keep * (1 - keep) * G
    return np.linalg.solve(A, keep * X.T @ y)


def rescale(w_dropout, *, rate: float) -> np.ndarray:
    """Weights for use without dropout: the keep probability 1 - p times the trained weights."""
    return (1 - checks.probability("rate", rate)) * np.asarray(w_dropout, dtype=np.float64)


def ridge_data(X, Gamma) -> np.ndarray:
    """X-tilde = X Gamma^-1: the data matrix of the ridge problem in w-tilde = Gamma w, (n, d)."""
    X = np.asarray(X, dtype=np.float64)
    Gamma = np.asarray(Gamma, dtype=np.float64)
    return np.linalg.solve(Gamma.T, X.T).T


def ridge_solution(X, y, *, lam: float) -> np.ndarray:
    """argmin ||y - X w||^2 + lam ||w||^2, shape (d,)."""
    X, y = _data(X, y)
    lam = checks.positive("lam", lam)
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


def normalized_ridge_solution(X, y, *, rate: float) -> np.ndarray:
    """Ridge with lambda n = n p / (1-p) on features divided by their root-mean-square, in X's units (d,).

    Equal to the rescaled dropout solution: dropout is ridge on normalized features.
    """
    X, y = _data(X, y)
    p = checks.probability("rate", rate)
    rms = column_norms(X) / np.sqrt(X.shape[0])
    return ridge_solution(X / rms, y, lam=p / (1 - p) * X.shape[0]) / rms
