"""Dropout on a linear model as Tikhonov regularization (keep probability p, no rescaling in training)."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .runtime import progress, torch_generator


def _data(X, y):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got X {X.shape} and y {y.shape}")
    return X, y


def _keep(keep):
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.floating)):
        raise TypeError(f"keep must be a float, got {type(keep).__name__}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep (the keep probability p) must be in (0, 1], got {keep}")
    return float(keep)


def column_norms(X) -> np.ndarray:
    """Euclidean norm of each column of X (n, d): the diagonal of Gamma-check, shape (d,)."""
    return np.linalg.norm(np.asarray(X, dtype=np.float64), axis=0)


def dropout_objective(w, X, y, *, keep: float) -> float:
    """||y - p X w||^2 + p (1 - p) ||Gamma w||^2, Gamma = diag(column norms of X): E_R ||y - (R*X) w||^2."""
    X, y = _data(X, y)
    p = _keep(keep)
    w = np.asarray(w, dtype=np.float64)
    return float(np.sum((y - p * X @ w) ** 2) + p * (1 - p) * np.sum((column_norms(X) * w) ** 2))


def enumerated_dropout_objective(w, X, y, *, keep: float) -> float:
    """E_R ||y - (R*X) w||^2 by summing over all 2^(n d) keep matrices R (n d <= 16)."""
    X, y = _data(X, y)
    p = _keep(keep)
    if X.size > 16:
        raise ValueError(f"X must have at most 16 entries to enumerate masks, got {X.size}")
    w = np.asarray(w, dtype=np.float64)
    total = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=X.size):
        R = np.array(bits).reshape(X.shape)
        total += np.prod(np.where(R == 1, p, 1 - p)) * np.sum((y - (R * X) @ w) ** 2)
    return float(total)


def tikhonov_solution(X, y, Gamma) -> np.ndarray:
    """argmin_w ||y - X w||^2 + ||Gamma w||^2 = (X^T X + Gamma^T Gamma)^-1 X^T y, shape (d,)."""
    X, y = _data(X, y)
    Gamma = np.asarray(Gamma, dtype=np.float64)
    if Gamma.shape != (X.shape[1], X.shape[1]):
        raise ValueError(f"Gamma must be ({X.shape[1]}, {X.shape[1]}), got {Gamma.shape}")
    return np.linalg.solve(X.T @ X + Gamma.T @ Gamma, X.T @ y)


def dropout_gamma(X, *, keep: float) -> np.ndarray:
    """The Tikhonov matrix that dropout implies for the rescaled weights p w: sqrt((1-p)/p) diag(column norms)."""
    p = _keep(keep)
    return np.sqrt((1 - p) / p) * np.diag(column_norms(X))


def dropout_solution(X, y, *, keep: float) -> np.ndarray:
    """argmin of the dropout objective (weights used in training, before rescaling), shape (d,)."""
    X, y = _data(X, y)
    p = _keep(keep)
    G = np.diag(column_norms(X) ** 2)
    return np.linalg.solve(p**2 * X.T @ X + p * (1 - p) * G, p * X.T @ y)


def rescale(w_dropout, *, keep: float) -> np.ndarray:
    """Weights for use without dropout: p times the weights trained with (non-inverted) dropout."""
    return _keep(keep) * np.asarray(w_dropout, dtype=np.float64)


def ridge_data(X, Gamma) -> np.ndarray:
    """X-tilde = X Gamma^-1: the data matrix of the ridge problem in the variables w-tilde = Gamma w, (n, d)."""
    X = np.asarray(X, dtype=np.float64)
    Gamma = np.asarray(Gamma, dtype=np.float64)
    return np.linalg.solve(Gamma.T, X.T).T


def ridge_solution(X, y, *, lam: float) -> np.ndarray:
    """argmin ||y - X w||^2 + lam ||w||^2, shape (d,)."""
    X, y = _data(X, y)
    if not lam > 0:
        raise ValueError(f"lam must be positive, got {lam}")
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


def objective_hessian(X, *, keep: float) -> np.ndarray:
    """Hessian (d, d) of the dropout objective divided by n (the loss SGD descends)."""
    X = np.asarray(X, dtype=np.float64)
    p = _keep(keep)
    return 2 * (p**2 * X.T @ X + p * (1 - p) * np.diag(column_norms(X) ** 2)) / X.shape[0]


def monte_carlo_dropout_sgd(X, y, *, keep: float, steps: int, lr: float, replicas: int, seed: int,
                            average_from: int | None = None, device="cpu", dtype=torch.float64) -> dict:
    """SGD from zero on ||y - (R*X) w||^2 / n, fresh R ~ Bernoulli(p) per step: weights, average (S, d)."""
    # Also returned: the path (steps + 1, S, d) and the loss per step (steps, S); the average is over
    # the iterates after step `average_from` (tail averaging), which removes most of the SGD noise.
    X, y = _data(X, y)
    p = _keep(keep)
    for name, v in (("steps", steps), ("replicas", replicas)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    average_from = steps // 2 if average_from is None else average_from
    if not 0 <= average_from < steps:
        raise ValueError(f"average_from must be in [0, {steps}), got {average_from}")
    n, d = X.shape
    Xt = torch.as_tensor(X, dtype=dtype, device=device)
    yt = torch.as_tensor(y, dtype=dtype, device=device)
    gen = torch_generator(seed, device)
    w = torch.zeros(replicas, d, dtype=dtype, device=device)
    avg = torch.zeros_like(w)
    losses = torch.zeros(steps, replicas, dtype=dtype, device=device)
    path = torch.zeros(steps + 1, replicas, d, dtype=dtype, device=device)
    for t in progress(range(steps), desc="steps"):
        R = (torch.rand(replicas, n, d, generator=gen, dtype=dtype, device=device) < p).to(dtype)
        Xr = R * Xt  # (S, n, d), no rescaling by 1/p
        resid = yt - (Xr @ w[..., None])[..., 0]  # (S, n)
        losses[t] = (resid**2).mean(1)
        w = w + lr * 2 / n * (Xr.transpose(1, 2) @ resid[..., None])[..., 0]
        path[t + 1] = w
        if t >= average_from:
            avg += w
    return {"weights": w.cpu().numpy(), "average": (avg / (steps - average_from)).cpu().numpy(),
            "path": path.cpu().numpy(), "loss": losses.cpu().numpy()}
