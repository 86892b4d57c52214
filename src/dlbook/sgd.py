"""Gradient descent, minibatches and step sizes: models, budgets and step-size schedules for chapter 2.

Topic module. Training goes through `dlbook.sweep.fit_stacked` (all seeds of one configuration
in one call); this module builds the models, converts budgets (epochs, steps) into evaluation
points, and writes the step-size sequences of the Robbins-Monro conditions as `optim.Schedule`s.

Used by chapters: 2.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from . import checks
from .optim import Schedule
from .runtime import seeded, torch_generator
from .sweep import fit_stacked
from .train import TrainConfig


class SoftmaxRegression(nn.Module):
    """Multinomial logistic regression: logits = W flatten(x) + b, (N, ...) -> (N, classes)."""

    def __init__(self, n_in: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(n_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, C) of K stacked copies on their own x (K, B, ...)."""
        return torch.baddbmm(params["linear.bias"].unsqueeze(1), x.flatten(2),
                             params["linear.weight"].transpose(1, 2))


class LinearRegression(nn.Module):
    """y_hat = w . x + b: (N, d) -> (N,); the MSE loss makes it least squares."""

    def __init__(self, d: int):
        super().__init__()
        self.linear = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Predictions (K, B) of K stacked copies on x (K, B, d)."""
        out = torch.baddbmm(params["linear.bias"].unsqueeze(1), x, params["linear.weight"].transpose(1, 2))
        return out.squeeze(-1)


def softmax_regression(*, n_in: int = 784, n_classes: int = 10, seed: int) -> SoftmaxRegression:
    """A softmax regression with torch's default init drawn from `seed`."""
    checks.positive_int("n_in", n_in)
    checks.positive_int("n_classes", n_classes)
    return seeded(lambda: SoftmaxRegression(n_in, n_classes), seed=seed)


def linear_regression(*, d: int, seed: int) -> LinearRegression:
    """A float64 linear regression on d inputs with torch's default init drawn from `seed`."""
    checks.positive_int("d", d)
    return seeded(lambda: LinearRegression(d).double(), seed=seed)


def regression_data(n: int, d: int, *, seed: int, noise: float = 1.0):
    """Gaussian inputs x (n, d) float64 and targets y = x . w_true + 1 + noise * N(0, 1), (n,)."""
    checks.positive_int("n", n)
    checks.positive_int("d", d)
    checks.nonnegative("noise", noise)
    g = torch_generator(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    y = x @ w_true + 1.0 + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, float]:
    """Closed-form minimizer (w, b) of the mean squared error, as [w..., b], and the minimal MSE."""
    checks.same_length(x=x, y=y)
    a = np.hstack([x.double().numpy(), np.ones((len(y), 1))])
    coef, *_ = np.linalg.lstsq(a, y.double().numpy(), rcond=None)
    return coef, float(np.mean((a @ coef - y.double().numpy()) ** 2))


def zero_weight_curvature(x: torch.Tensor, n_classes: int) -> float:
    """Largest Hessian eigenvalue of the mean cross-entropy of softmax regression at zero weights.

    There p = 1/C for every example, so H = (1/C)(I - 11^T/C) kron E[x~ x~^T] with x~ = (x, 1);
    the first factor has eigenvalues 1/C and 0, so lambda_max = lambda_max(E[x~ x~^T]) / C.
    """
    checks.positive_int("n_classes", n_classes)
    a = np.hstack([x.flatten(1).double().cpu().numpy(), np.ones((len(x), 1))])
    return float(np.linalg.eigvalsh(a.T @ a / len(x))[-1] / n_classes)


def epoch_steps(n: int, batch_size: int, epochs: float) -> int:
    """Number of minibatch steps in `epochs` passes over n examples (partial batches count as steps)."""
    checks.positive_int("n", n)
    checks.positive_int("batch_size", batch_size)
    checks.positive("epochs", epochs)
    steps = epochs * math.ceil(n / batch_size)
    if abs(steps - round(steps)) > 1e-9:
        raise ValueError(f"epochs={epochs} is not a whole number of steps at batch size {batch_size}")
    return int(round(steps))


def decay_schedule(*, power: int, total: int, start: int = 1) -> Schedule:
    """Step size eta_t ~ eta_0 (start / t)^power for t <= total, as a piecewise constant `Schedule`.

    The factor halves (power 1) or quarters (power 2) at t = start, 2 start, 4 start, ...: on the
    block of steps (start 2^k, start 2^(k+1)] it is 2^-(power (k+1)), within a factor 2^power of
    (start / t)^power. Power 0 is a constant step size.
    """
    checks.integer("power", power, low=0, high=2)
    checks.positive_int("total", total)
    checks.positive_int("start", start)
    if power == 0:
        return Schedule()
    milestones = tuple(start * 2 ** k for k in range(max(1, int(math.log2(total / start)) + 1)))
    return Schedule(kind="step", milestones=milestones, gamma=0.5 ** power)


def step_sizes(cfg: TrainConfig) -> np.ndarray:
    """The step size of every update 1..cfg.steps under cfg's schedule: (steps,)."""
    return np.array([cfg.lr * cfg.schedule.factor(t) for t in range(1, cfg.steps + 1)])


def fit_seeds(make_model, x, y, *, cfg: TrainConfig, seeds, device, x_val=None, y_val=None):
    """Train make_model(seed) for every seed at once on one shared data set (fit_stacked).

    Returns (history, models); the history's arrays are (seeds, evaluations).
    """
    seeds = [checks.seed(s) for s in seeds]
    models = [make_model(seed=s) for s in seeds]
    k = len(models)
    val = {} if x_val is None else {"x_val": x_val.expand(k, *x_val.shape),
                                    "y_val": y_val.expand(k, *y_val.shape)}
    hist = fit_stacked(models, x.expand(k, *x.shape), y.expand(k, *y.shape), cfg=cfg,
                       seeds=seeds, device=device, **val)
    return hist, models


def at_step(hist: dict, key: str, step: int) -> np.ndarray:
    """Values (seeds,) of history metric `key` at evaluation `step` (which must have been evaluated)."""
    steps = list(np.asarray(hist["step"]))
    if step not in steps:
        raise ValueError(f"step {step} was not evaluated (evaluated: {steps[:5]}...)")
    return np.asarray(hist[key])[:, steps.index(step)]


def _design(x: torch.Tensor) -> np.ndarray:
    """Rows (x, 1) of the least-squares design matrix: (n, d + 1) float64."""
    return np.hstack([x.double().cpu().numpy().reshape(len(x), -1), np.ones((len(x), 1))])


def _second_moment_map(a: np.ndarray, lr: float) -> np.ndarray:
    """E_i[(I - 2 lr a_i a_i^T) kron (I - 2 lr a_i a_i^T)]: how E[e e^T] maps in one batch-1 step, (p^2, p^2)."""
    p = a.shape[1]
    out = np.zeros((p * p, p * p))
    for row in a:
        m = np.eye(p) - 2 * lr * np.outer(row, row)
        out += np.kron(m, m)
    return out / len(a)


def noise_floor(x: torch.Tensor, y: torch.Tensor, *, lr: float) -> dict:
    """Stationary excess MSE of batch-1 SGD on least squares (examples drawn uniformly with replacement).

    With e = w - w*, r_i the residuals at w* and a_i = (x_i, 1), one step is
    e <- (I - 2 lr a a^T) e + 2 lr a r, so M = E[e e^T] solves M = T(M) + 4 lr^2 E[r^2 a a^T]
    ("exact"; the excess loss is tr(E[a a^T] M)). For small lr, H M + M H = lr Sigma with the Hessian
    H = 2 E[a a^T] and the gradient-noise covariance Sigma = 4 E[r^2 a a^T], so the excess is
    tr(H M) / 2 = lr tr(Sigma) / 4 = lr E[r^2 |a|^2] ("small_lr"). Returns both (inf when unstable).
    """
    lr = checks.positive("lr", lr)
    checks.same_length(x=x, y=y)
    a = _design(x)
    coef, _ = least_squares(x, y)
    r = a @ coef - y.double().cpu().numpy()
    p = a.shape[1]
    t = _second_moment_map(a, lr)
    q = 4 * lr ** 2 * (a.T * r ** 2) @ a / len(a)
    small = float(lr * np.mean(r ** 2 * (a ** 2).sum(1)))
    if np.max(np.abs(np.linalg.eigvals(t))) >= 1:
        return {"small_lr": small, "exact": float("inf")}
    m = np.linalg.solve(np.eye(p * p) - t, q.reshape(-1)).reshape(p, p)
    return {"small_lr": small, "exact": float(np.trace(a.T @ a / len(a) @ m))}


def stability_edge(x: torch.Tensor, *, hi: float = 10.0) -> float:
    """Largest step size at which batch-1 SGD on least squares is mean-square stable (bisection).

    The second moment E[e e^T] of the error maps linearly per step (`noise_floor`); it stays bounded
    while the map's spectral radius is below 1.
    """
    checks.positive("hi", hi)
    a = _design(x)

    def radius(lr):
        return np.max(np.abs(np.linalg.eigvals(_second_moment_map(a, lr))))

    lo = 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if radius(mid) < 1 else (lo, mid)
    return lo


def window_means(values, *, windows: int) -> np.ndarray:
    """Means of `values` (seeds, evaluations) over `windows` equal consecutive blocks: (seeds, windows)."""
    v = np.asarray(values, dtype=float)
    checks.positive_int("windows", windows)
    if v.ndim != 2 or v.shape[1] % windows:
        raise ValueError(f"values must be (seeds, evaluations) with evaluations divisible by windows={windows}, "
                         f"got shape {v.shape}")
    return v.reshape(v.shape[0], windows, -1).mean(2)
