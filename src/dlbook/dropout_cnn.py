"""Choosing the dropout rate of a small CNN on real digits (chapter 8), and the optimism of the choice.

The CNN (with dropout, or batch norm), its runs over seeds with a validation split per seed (all
seeds of one configuration trained at once by `sweep.fit_stacked`), and the selection-optimism
estimator. Images are (N, 1, 28, 28) in [0, 1].

Used by chapters: 8.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import checks
from .dropout_mnist import N_CLASSES, StackedNet, validation_split
from .metrics import predictions
from .runtime import global_seed, numpy_rng, seeded
from .sweep import fit_stacked
from .train import TrainConfig, fit


def small_cnn(*, p: float = 0.0, batch_norm: bool = False, width: int = 8,
              seed: int):
    """(N, 1, 28, 28) -> logits (N, 10): two stride-2 convolutions, each
    followed by [batch norm], ReLU and dropout p; a linear classifier."""
    p = checks.probability("p", p)
    checks.positive_int("width", width)
    checks.boolean("batch_norm", batch_norm)

    def block(c_in, c_out, k):
        conv = nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2,
                         bias=not batch_norm)  # batch norm has a shift
        norm = [nn.BatchNorm2d(c_out)] * batch_norm
        return [conv, *norm, nn.ReLU(), nn.Dropout(p)]

    return seeded(lambda: StackedNet(
        *block(1, width, 5), *block(width, 2 * width, 3), nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, N_CLASSES)), seed=seed)


def cnn_runs(x, y, x_test, y_test, *, seeds, grid=(), batch_norm: bool = False,
             cfg: TrainConfig, n_val: int, n_fit: int | None = None, device):
    """The small CNN at each drop rate of `grid`, and with batch norm (p = 0) if
    `batch_norm`, each over `seeds` with a stratified validation split per seed
    (n_val images) and trained on n_fit of the rest (default: all of it).

    Returns (rows of final train, validation and test accuracy; validation curves
    {config: (seeds, evaluations)} with "step"; models {config: [one per seed]}).
    """
    seeds = [checks.seed(s) for s in seeds]
    checks.boolean("batch_norm", batch_norm)
    splits = [validation_split(x, y, n_val=n_val, seed=s) for s in seeds]
    if n_fit is not None:  # a stratified subset of each seed's training part
        splits = [(*validation_split(xf, yf, n_val=n_fit, seed=s)[2:], xv, yv)
                  for s, (xf, yf, xv, yv) in zip(seeds, splits)]
    x_fit, y_fit, x_val, y_val = (torch.stack(t) for t in zip(*splits))
    rows, curves, models = [], {}, {}

    def record(name, p, ms, train, val):
        curves[name], models[name] = np.asarray(val), ms
        for s, m, tr, va in zip(seeds, ms, np.asarray(train)[:, -1], np.asarray(val)[:, -1]):
            te = (predictions(m, x_test, device=device) == y_test).double().mean().item()
            rows.append({"model": name, "p": p, "seed": s, "train acc": float(tr),
                         "val acc": float(va), "test acc": te})

    for p in grid:
        ms = [small_cnn(p=p, seed=s) for s in seeds]
        with global_seed(seeds[0], device):  # stacked dropout masks: global generator
            hist = fit_stacked(ms, x_fit, y_fit, cfg=cfg, seeds=seeds, device=device,
                               x_val=x_val, y_val=y_val)
        record(f"p = {p}", p, ms, hist["train_acc"], hist["val_acc"])
    if batch_norm:  # running statistics are buffers, which fit_stacked does not write back
        ms = [small_cnn(batch_norm=True, seed=s) for s in seeds]
        hist = [fit(m, xf, yf, cfg=cfg, seed=s, device=device, x_val=xv, y_val=yv)
                for m, s, (xf, yf, xv, yv) in zip(ms, seeds, splits)]
        record("batch norm", 0.0, ms, [h["train_acc"] for h in hist],
               [h["val_acc"] for h in hist])
        hist = {"step": hist[0]["step"]}
    return rows, curves | {"step": np.asarray(hist["step"])}, models


def validation_correct(models, x, y, *, seeds, n_val: int, device) -> np.ndarray:
    """0/1 array (seeds, candidates, n_val): candidate j of seed i right on that seed's
    validation images; `models` is {candidate: [one model per seed]} (as from `cnn_runs`)."""
    out = []
    for i, s in enumerate(seeds):
        *_, x_val, y_val = validation_split(x, y, n_val=n_val, seed=s)
        out.append([(predictions(ms[i], x_val, device=device) == y_val).numpy()
                    for ms in models.values()])
    return np.asarray(out, dtype=float)


def selection_on_validation(rows, *, grid):
    """Per seed: the rate of `grid` with the best validation accuracy (ties: the
    smaller rate), and that network's validation and test accuracy."""
    out = []
    for s in sorted({r["seed"] for r in rows}):
        cand = sorted((r for r in rows if r["seed"] == s and r["p"] in grid
                       and r["model"] != "batch norm"), key=lambda r: r["p"])
        best = max(cand, key=lambda r: r["val acc"])
        out.append({"seed": s, "chosen p": best["p"], "val acc": best["val acc"],
                    "test acc": best["test acc"]})
    return out


def selection_optimism(correct, *, m: int, n_draws: int, seed: int,
                       k: int | None = None) -> float:
    """Optimism of choosing on m examples: `correct` (K candidates, N examples) is 0/1.

    Each draw splits the N examples at random into m for the choice and N - m held out
    (one pool, so a candidate fixed in advance scores the same on both in expectation),
    takes k random candidates (default all K), picks the best on the m and records its
    accuracy there minus its accuracy on the held-out rest. Returns the mean over draws.
    """
    correct = np.asarray(correct, dtype=float)
    if correct.ndim != 2 or not np.isin(correct, (0.0, 1.0)).all():
        raise ValueError("correct must be a 0/1 array of shape (K candidates, N examples)")
    n_cand, n = correct.shape
    checks.integer("m", m, low=1, high=n - 1)
    checks.positive_int("n_draws", n_draws)
    k = n_cand if k is None else checks.integer("k", k, low=1, high=n_cand)
    rng = numpy_rng(seed)
    gaps = np.empty(n_draws)
    for i in range(n_draws):
        order = rng.permutation(n)
        cand = rng.choice(n_cand, k, replace=False) if k < n_cand else np.arange(n_cand)
        sub = correct[np.ix_(cand, order[:m])].mean(1)
        best = cand[int(np.argmax(sub))]  # ties: the first candidate drawn
        gaps[i] = sub.max() - correct[best, order[m:]].mean()
    return float(gaps.mean())
