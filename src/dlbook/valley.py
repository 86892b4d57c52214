"""Optimizers on closed-form losses: paths in a narrow quadratic valley, and implicit bias in least squares.

Topic module for the chapter on momentum, Nesterov and Adam. The valley paths run the book's
own optimizers (`optim.make_optimizer`) on a two-parameter tensor; the loop is four lines and
in view. Least-squares problems are trained as bias-free linear models through `sweep.fit_stacked`.

Used by chapters: 3.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import checks
from .optim import make_optimizer
from .runtime import numpy_rng
from .sweep import fit_stacked
from .train import TrainConfig


def valley_loss(w: torch.Tensor, curvatures: torch.Tensor) -> torch.Tensor:
    """f(w) = 1/2 sum_i h_i w_i^2 for w (d,) and curvatures h (d,): a valley when the h_i differ a lot."""
    return 0.5 * (curvatures * w**2).sum()


def _valley_args(start, curvatures):
    start = torch.as_tensor(start, dtype=torch.float64)
    h = torch.as_tensor(curvatures, dtype=torch.float64)
    if start.ndim != 1 or h.shape != start.shape:
        raise ValueError(f"start and curvatures must be vectors of one length, got "
                         f"{tuple(start.shape)} and {tuple(h.shape)}")
    if not bool((h > 0).all()):
        raise ValueError("curvatures must all be positive")
    return start, h


def valley_path(name: str, *, lr: float, steps: int, start, curvatures,
                momentum: float = 0.9) -> np.ndarray:
    """Iterates (steps + 1, d) of optimizer `name` on valley_loss from `start` (d,)."""
    checks.positive_int("steps", steps)
    start, h = _valley_args(start, curvatures)
    w = start.clone().requires_grad_(True)
    opt = make_optimizer([w], name=name, lr=lr, momentum=momentum)
    path = [start.numpy().copy()]
    for _ in range(steps):
        opt.zero_grad()
        valley_loss(w, h).backward()
        opt.step()
        path.append(w.detach().numpy().copy())
    return np.array(path)


def final_loss(path: np.ndarray, curvatures) -> float:
    """valley_loss at the last iterate of a path; inf when the run blew up."""
    w = np.asarray(path, dtype=np.float64)[-1]
    value = 0.5 * float(np.sum(np.asarray(curvatures, dtype=np.float64) * w**2))
    return value if np.isfinite(value) else float("inf")


def lr_search(name: str, lrs, *, steps: int, start, curvatures, momentum: float = 0.9) -> dict:
    """Final valley loss for each learning rate in `lrs`; the best one and its path."""
    lrs = [checks.positive(f"lrs[{i}]", lr) for i, lr in enumerate(lrs)]
    if not lrs:
        raise ValueError("lrs must not be empty")
    paths = [valley_path(name, lr=lr, steps=steps, start=start, curvatures=curvatures,
                         momentum=momentum) for lr in lrs]
    losses = np.array([final_loss(p, curvatures) for p in paths])
    best = int(np.argmin(losses))
    return {"lrs": np.array(lrs), "losses": losses, "best_lr": lrs[best], "path": paths[best]}


def gd_rate(lr: float, curvatures) -> float:
    """Contraction factor max_i |1 - lr h_i| of gradient descent per step (< 1: it converges)."""
    h = np.asarray(curvatures, dtype=np.float64)
    return float(np.max(np.abs(1 - checks.positive("lr", lr) * h)))


def momentum_rate(lr: float, momentum: float, curvatures) -> float:
    """Asymptotic contraction per step of heavy-ball momentum (torch's form) on the valley.

    Per coordinate the state (v, w) evolves linearly, v <- beta v + h w, w <- w - lr v; the rate
    is the largest spectral radius of those 2 x 2 matrices (momentum 0 gives gd_rate).
    """
    lr, beta = checks.positive("lr", lr), checks.probability("momentum", momentum)
    radii = []
    for h in np.asarray(curvatures, dtype=np.float64):
        m = np.array([[beta, h], [-lr * beta, 1 - lr * h]])
        radii.append(np.max(np.abs(np.linalg.eigvals(m))))
    return float(max(radii))


def wide_problem(n: int, d: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random under-determined least-squares problem: X (n, d) and y (n,), standard normal, n < d."""
    checks.positive_int("n", n)
    checks.positive_int("d", d)
    if n >= d:
        raise ValueError(f"n must be smaller than d for an under-determined problem, got n={n}, d={d}")
    rng = numpy_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal(n)


def linear_models(k: int, d: int, *, w0=None) -> list[nn.Linear]:
    """k bias-free float64 linear models x -> w . x, all with weights w0 (d,) (zeros when None)."""
    checks.positive_int("k", k)
    models = []
    for _ in range(k):
        m = nn.Linear(checks.positive_int("d", d), 1, bias=False).double()
        with torch.no_grad():
            m.weight.copy_(torch.zeros(1, d) if w0 is None else torch.as_tensor(w0).view(1, d))
        models.append(m)
    return models


def least_squares_fit(X, y, *, optimizer: str, lr: float, steps: int, w0=None,
                      schedule=None, device="cpu") -> dict:
    """Full-batch training on mean (y - X w)^2 of K problems X (K, n, d), y (K, n) at once (sweep.fit_stacked).

    Returns the weights (K, d) and the history; every model starts from w0 (zeros when None).
    """
    X = torch.as_tensor(np.asarray(X, dtype=np.float64))
    y = torch.as_tensor(np.asarray(y, dtype=np.float64))
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(f"X must be (K, n, d) and y (K, n), got {tuple(X.shape)} and {tuple(y.shape)}")
    models = linear_models(X.shape[0], X.shape[2], w0=w0)
    kw = {} if schedule is None else {"schedule": schedule}
    # batch_size n: every step sees the whole problem, i.e. full-batch gradient descent
    cfg = TrainConfig(steps=steps, batch_size=X.shape[1], optimizer=optimizer, lr=lr,
                      loss="mse", eval_every=max(1, steps // 20), **kw)
    hist = fit_stacked(models, X, y, cfg=cfg, seeds=list(range(len(models))), device=device)
    w = np.stack([m.weight.detach().cpu().numpy().ravel() for m in models])
    return {"w": w, "history": hist}


def null_space_part(X, w) -> np.ndarray:
    """The component (d,) of w in the null space of X (n, d): w - pinv(X) X w."""
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    return w - np.linalg.pinv(X) @ (X @ w)
