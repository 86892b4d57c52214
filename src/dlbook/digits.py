"""Small, fast MNIST tasks for the training chapters: pooled digits, label noise, a stackable MLP.

Topic module for the chapters on optimizers and on schedules and early stopping. Digits are
average-pooled to 14 x 14 so that ten seeds of a small MLP train in seconds on a CPU; the MLP
has a `stacked_forward` so `sweep.fit_stacked` trains many copies with batched matrix products.

Used by chapters: 3, 4.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .runtime import seeded, torch_generator

N_CLASSES = 10


def pooled(x: torch.Tensor, *, factor: int = 2) -> torch.Tensor:
    """Images (N, 1, H, W) average-pooled by `factor` and flattened to (N, H W / factor^2)."""
    checks.tensor("x", x, ndim=4)
    checks.positive_int("factor", factor)
    return F.avg_pool2d(x, factor).flatten(1)


def split(x: torch.Tensor, y: torch.Tensor, *, n_val: int, seed: int):
    """(x_train, y_train, x_val, y_val): a random validation split of n_val rows of (x (N, ...), y (N,))."""
    n = checks.same_length(x=x, y=y)
    checks.integer("n_val", n_val, low=1, high=n - 1)
    order = torch.randperm(n, generator=torch_generator(seed))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def noisy_labels(y: torch.Tensor, *, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (N,) with round(fraction N) of them, chosen at random, replaced by one of the 9 other classes.

    Returns (noisy labels, boolean mask (N,) of the changed rows).
    """
    checks.tensor("y", y, ndim=1, dtype=torch.int64)
    fraction = checks.real("fraction", fraction, low=0.0, high=1.0)
    g = torch_generator(seed)
    n = len(y)
    changed = torch.zeros(n, dtype=torch.bool)
    changed[torch.randperm(n, generator=g)[:round(fraction * n)]] = True
    # a shift of 1..9 classes never maps a label to itself
    shift = torch.randint(1, N_CLASSES, (n,), generator=g)
    return torch.where(changed, (y + shift) % N_CLASSES, y), changed


class MLP(nn.Module):
    """inputs -> hidden (ReLU) -> classes; `stacked_forward` runs K copies with batched matmuls."""

    def __init__(self, inputs: int, hidden: int, classes: int = N_CLASSES):
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, classes) of K models with stacked params, each on its own x (K, B, inputs)."""
        h = torch.baddbmm(params["fc1.bias"].unsqueeze(1), x, params["fc1.weight"].transpose(1, 2))
        return torch.baddbmm(params["fc2.bias"].unsqueeze(1), F.relu(h),
                             params["fc2.weight"].transpose(1, 2))


def make_mlp(*, inputs: int, hidden: int, seed: int, classes: int = N_CLASSES) -> MLP:
    """An MLP with torch's default initialization drawn from `seed`."""
    for name, v in (("inputs", inputs), ("hidden", hidden), ("classes", classes)):
        checks.positive_int(name, v)
    return seeded(lambda: MLP(inputs, hidden, classes), seed=checks.seed(seed))


def replicate(k: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor (N, ...) as a (k, N, ...) view: the same data for k stacked models."""
    checks.positive_int("k", k)
    return [t.unsqueeze(0).expand(k, *t.shape) for t in tensors]


def train_mlps(x, y, *, cfg, seeds, hidden: int, x_val=None, y_val=None, device="cpu") -> dict:
    """One MLP per seed (initialization and minibatch order from the seed) on the same data, via fit_stacked.

    Returns fit_stacked's history with the trained models under "models".
    """
    from .sweep import fit_stacked

    seeds = [checks.seed(s) for s in seeds]
    models = [make_mlp(inputs=x.shape[1], hidden=hidden, seed=s) for s in seeds]
    k = len(seeds)
    xs, ys = replicate(k, x, y)
    val = {} if x_val is None else dict(zip(("x_val", "y_val"), replicate(k, x_val, y_val)))
    hist = fit_stacked(models, xs, ys, cfg=cfg, seeds=seeds, device=device, **val)
    return hist | {"models": models}


def lr_cuts(steps, lrs) -> np.ndarray:
    """Evaluation steps after which the learning rate was lowered (the next recorded lr is smaller)."""
    steps, lrs = np.asarray(steps), np.asarray(lrs, dtype=float)
    if steps.shape != lrs.shape or steps.ndim != 1:
        raise ValueError(f"steps and lrs must be 1-D of one length, got {steps.shape} and {lrs.shape}")
    return steps[:-1][lrs[1:] < lrs[:-1]]


def error_around(steps, errors, at: int, *, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean error (K,) of errors (K, T) over the `width` evaluations before and after step `at`."""
    steps = np.asarray(steps)
    errors = np.asarray(errors, dtype=float)
    checks.positive_int("width", width)
    i = int(np.searchsorted(steps, at, side="right"))  # first evaluation after the step `at`
    if i < width or i + width > len(steps):
        raise ValueError(f"at={at} needs {width} evaluations on each side")
    return errors[:, i - width:i].mean(1), errors[:, i:i + width].mean(1)
