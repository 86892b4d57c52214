"""Figures of the edge lab (chapter 12): image grids, kernels, confusion matrices, per-seed points.

Topic module; imports only the core (plots) and matplotlib.

Used by chapters: 12.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter


def image_grid(rows: list, *, titles: list[str], figsize=(8, 5), suptitle: str | None = None):
    """One row of grey images (each (1, H, W) or (H, W), values in [0, 1]) per entry of `rows`."""
    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=figsize, squeeze=False)
    for r, (imgs, title) in enumerate(zip(rows, titles)):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            if c < len(imgs):
                ax.imshow(torch.as_tensor(imgs[c]).reshape(imgs[c].shape[-2:]), cmap="gray",
                          vmin=0, vmax=1)
            else:
                ax.set_visible(False)
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def kernel_grid(rows: list, *, titles: list[str], suptitle: str):
    """One row of k x k kernels (F, 1, k, k) per entry, each scaled to its own range (red > 0 > blue)."""
    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(8, 1.05 * len(rows) + 0.4), squeeze=False)
    for r, (kernels, title) in enumerate(zip(rows, titles)):
        for ax, k in zip(axes[r], kernels.detach().cpu()):
            lim = float(k.abs().max())
            ax.imshow(k[0], cmap="RdBu_r", vmin=-lim, vmax=lim)
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center")
    fig.suptitle(suptitle)
    return fig


def confusion_plot(ax, counts: torch.Tensor, classes, *, title: str):
    """Row-normalised confusion matrix (true class per row) with the rates written in the cells,
    in percent (three characters at most fit a cell at the book's 10-pt minimum)."""
    rate = (counts.double() / counts.sum(1, keepdim=True).clamp(min=1)).numpy()
    ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(rate):
        ax.text(c, r, f"{100 * v:.0f}", ha="center", va="center",
                color="white" if v > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(classes)), classes)
    ax.grid(False)
    ax.set_xlabel("predicted class (% of the true class)")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return rate


def log_size_axis(ax, sizes, *, label: str = "training images per class (log scale)"):
    """A log x-axis with one plain integer tick per size and no minor tick labels (nothing overlaps)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(sizes))))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(label)


def _check_seeds(x, ys) -> np.ndarray:
    ys = np.asarray(ys, dtype=float)
    if ys.ndim != 2 or ys.shape[1] != len(x):
        raise ValueError(f"ys must be (seeds, {len(x)}), got {ys.shape}")
    return ys


def seed_points(ax, x, ys, *, label: str, color: str, marker: str = "o", log: bool = True):
    """Every seed's value of ys (seeds, len(x)) as a small point, and the median as a line."""
    ys = _check_seeds(x, ys)
    k = ys.shape[0]
    spread = np.linspace(-0.04, 0.04, k) if k > 1 else np.zeros(1)  # side by side, not stacked
    xs = np.asarray(x, dtype=float)
    for j, off in enumerate(spread):
        px = xs * np.exp(off) if log else xs + off * (xs.max() - xs.min() + 1)
        ax.plot(px, ys[j], ls="none", marker=marker, ms=3, alpha=0.45, color=color)
    return ax.plot(xs, np.median(ys, 0), marker=marker, ms=5, color=color, label=label)[0]


def quartile_band(ax, x, ys, *, label: str, color: str, **kw):
    """Median over seeds of ys (seeds, len(x)) as a line, the quartiles as a band (never past the data)."""
    ys = _check_seeds(x, ys)
    q1, med, q3 = np.percentile(ys, [25, 50, 75], axis=0)
    (line,) = ax.plot(x, med, label=label, color=color, **kw)
    ax.fill_between(x, q1, q3, color=line.get_color(), alpha=0.2, linewidth=0)
    return line
