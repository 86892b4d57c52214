"""Synthetic edge images for the edge lab (chapter 12): horizontal, vertical, diagonal stripes or none.

Topic module; imports only the core.

Used by chapters: 12.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import checks
from .metrics import confusion_matrix
from .runtime import torch_generator
from .sweep import fit_stacked, stacked_logits

CLASSES = ("none", "horizontal", "vertical", "diagonal", "antidiagonal")
LOCATIONS = ("any", "first_half", "second_half")


def _uniform_int(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in [low, high] elementwise (low, high int tensors of one shape)."""
    u = torch.rand(low.shape, generator=generator)
    return low + torch.floor(u * (high - low + 1)).long().clamp(max=(high - low))


def offset_range(kind: str, width: int, *, size: int, location: str) -> tuple[int, int]:
    """Smallest and largest offset (inclusive) of a stripe of `width` of class `kind` for `location`.

    Horizontal/vertical: the first row/column, chosen so the whole stripe lies inside the image.
    Diagonals: d in the band d <= i - j < d + width (i + j - (size - 1) for the antidiagonal),
    with |d| <= size // 2 so the band crosses at least size // 2 pixels.
    """
    if kind in ("horizontal", "vertical"):
        # offset = first row (column) of the stripe; the whole stripe fits, so it is never clipped away
        lo, hi = 0, size - width
        half = size // 2
        if location == "first_half":
            lo, hi = 0, half - width
        elif location == "second_half":
            lo, hi = half, size - width
        return lo, hi
    lo, hi = -(size // 2), size // 2 - width
    if location == "first_half":
        hi = -width
    elif location == "second_half":
        lo = 0
    return lo, hi


def count_patterns(*, n_classes: int = 3, size: int = 28, widths: tuple[int, int] = (1, 5), location: str = "any") -> int:
    """Number of distinct (class, width, offset) stripe geometries the generator can draw."""
    checks.integer("n_classes", n_classes, low=2, high=len(CLASSES))
    total = 1  # "none" is one geometry
    for kind in CLASSES[1:n_classes]:
        for w in range(widths[0], widths[1] + 1):
            lo, hi = offset_range(kind, w, size=size, location=location)
            total += max(0, hi - lo + 1)
    return total


def _stripe_masks(kind: str, width: torch.Tensor, offset: torch.Tensor, size: int) -> torch.Tensor:
    """Boolean masks (N, size, size) of stripes with per-image width and offset (N,)."""
    i = torch.arange(size).view(1, size, 1)
    j = torch.arange(size).view(1, 1, size)
    w, d = width.view(-1, 1, 1), offset.view(-1, 1, 1)
    if kind == "horizontal":
        coord = i.expand(1, size, size)
    elif kind == "vertical":
        coord = j.expand(1, size, size)
    elif kind == "diagonal":
        coord = i - j
    else:  # antidiagonal
        coord = i + j - (size - 1)
    return (coord >= d) & (coord < d + w)


def edge_images(n_per_class: int, *, generator: torch.Generator, n_classes: int = 3, size: int = 28,
                widths: tuple[int, int] = (1, 5), location: str = "any", min_contrast: float = 0.2,
                noise: float = 0.0, return_info: bool = False):
    """Images x (N, 1, size, size) in [0, 1] and labels y (N,), N = n_classes * n_per_class, shuffled.

    Class c is CLASSES[c]. A stripe has a width drawn from `widths` (inclusive), a uniform offset
    that keeps it fully inside the image (`location` restricts it to the first or second half),
    a uniform background and a stripe intensity at least `min_contrast` away from it; optional
    Gaussian pixel noise of standard deviation `noise`. With `return_info` a dict of per-image
    tensors (width, offset, background, intensity) comes third (width = offset = 0 for "none").
    """
    checks.positive_int("n_per_class", n_per_class)
    checks.integer("n_classes", n_classes, low=2, high=len(CLASSES))
    checks.integer("size", size, low=8)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    checks.choice("location", location, LOCATIONS)
    if (not isinstance(widths, tuple) or len(widths) != 2
            or not all(isinstance(w, int) and not isinstance(w, bool) for w in widths)
            or not 1 <= widths[0] <= widths[1] <= size // 4):
        raise ValueError(f"widths must be a tuple (low, high) of ints with 1 <= low <= high <= {size // 4}, got {widths!r}")
    if not 0.0 < min_contrast <= 0.5:
        raise ValueError(f"min_contrast must be in (0, 0.5], got {min_contrast}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    n = n_classes * n_per_class
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    width = _uniform_int(torch.full((n,), widths[0]), torch.full((n,), widths[1]), generator)
    lo_hi = {k: [offset_range(k, w, size=size, location=location) for w in range(widths[0], widths[1] + 1)]
             for k in CLASSES[1:n_classes]}
    lo, hi = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    for c, kind in enumerate(CLASSES[1:n_classes], start=1):
        sel = y == c
        lo[sel] = torch.tensor([lo_hi[kind][w - widths[0]][0] for w in width[sel].tolist()], dtype=torch.long)
        hi[sel] = torch.tensor([lo_hi[kind][w - widths[0]][1] for w in width[sel].tolist()], dtype=torch.long)
    if bool((hi < lo).any()):
        raise ValueError(f"widths {widths!r} do not fit in half of a {size}-pixel image for location={location!r}")
    offset = _uniform_int(lo, hi, generator)
    background = torch.rand(n, generator=generator)
    # stripe intensity uniform on [0, b - c] U [b + c, 1]: never closer than min_contrast to the background
    below = (background - min_contrast).clamp(min=0)
    above = (1 - background - min_contrast).clamp(min=0)
    u = torch.rand(n, generator=generator) * (below + above)
    intensity = torch.where(u < below, u, background + min_contrast + (u - below))
    x = background.view(n, 1, 1).expand(n, size, size).clone()
    for c, kind in enumerate(CLASSES[1:n_classes], start=1):
        sel = y == c
        mask = _stripe_masks(kind, width[sel], offset[sel], size)
        x[sel] = torch.where(mask, intensity[sel].view(-1, 1, 1), x[sel])
    if noise > 0:
        x = (x + noise * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    order = torch.randperm(n, generator=generator)
    width = torch.where(y == 0, 0, width)
    offset = torch.where(y == 0, 0, offset)
    x, y = x[order].unsqueeze(1).float(), y[order]
    if not return_info:
        return x, y
    info = {"width": width[order], "offset": offset[order], "background": background[order], "intensity": intensity[order]}
    return x, y, info


def pixel_permutation(size: int = 28, *, generator: torch.Generator) -> torch.Tensor:
    """A fixed random permutation (size*size,) of pixel indices."""
    checks.positive_int("size", size)
    return torch.randperm(size * size, generator=generator)


def permute_pixels(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Images (..., H, W) with their H*W pixels reordered by `perm` (H*W,)."""
    h, w = x.shape[-2:]
    if perm.shape != (h * w,):
        raise ValueError(f"perm must have shape ({h * w},) for {h}x{w} images, got {tuple(perm.shape)}")
    return x.flatten(-2)[..., perm.to(x.device)].reshape(x.shape)


def edge_split(n_per_class: int, *, seed: int, n_val_per_class: int = 100, train_location: str = "any",
               val_location: str = "any", perm: torch.Tensor | None = None, return_info: bool = False, **kwargs):
    """Training then validation images from one seeded stream: (x, y, x_val, y_val) [+ (info, info_val)].

    `train_location` / `val_location` give a domain shift; `perm` (H*W,) scrambles the pixels of both;
    other keyword arguments go to edge_images.
    """
    g = torch_generator(seed)
    x, y, info = edge_images(n_per_class, generator=g, location=train_location, return_info=True, **kwargs)
    xv, yv, info_v = edge_images(n_val_per_class, generator=g, location=val_location, return_info=True, **kwargs)
    if perm is not None:
        x, xv = permute_pixels(x, perm), permute_pixels(xv, perm)
    return (x, y, xv, yv, info, info_v) if return_info else (x, y, xv, yv)


def seen_geometry(y: torch.Tensor, info: dict, y_val: torch.Tensor, info_val: dict) -> torch.Tensor:
    """Bool (M,): does validation image m have a (class, width, offset) that some training image has?"""
    keys = {(int(c), int(w), int(d)) for c, w, d in zip(y, info["width"], info["offset"])}
    return torch.tensor([(int(c), int(w), int(d)) in keys for c, w, d in zip(y_val, info_val["width"], info_val["offset"])])


@dataclass
class LabRun:
    """One stacked run of the lab: history, trained models and the data each model saw (K, ...)."""

    hist: dict
    models: list
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    info: list
    info_val: list

    def final(self, key: str = "val_acc") -> np.ndarray:
        """The last evaluation of `key` for each model (K,)."""
        return self.hist[key][:, -1]

    def val_probs(self, *, device) -> torch.Tensor:
        """Softmax probabilities (K, M, C) of each model on its own validation images."""
        return stacked_logits(self.models, self.x_val, device=device).softmax(-1).cpu()

    def val_confusion(self, *, device) -> torch.Tensor:
        """Confusion counts (C, C) on the validation images, summed over the K models."""
        pred = self.val_probs(device=device).argmax(-1)
        return confusion_matrix(self.y_val.flatten(), pred.flatten(), self.hist["n_classes"])


def wrong_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per model, the mean largest softmax probability on the misclassified images: logits (K, M, C),
    y (K, M) -> (K,), nan for a model that gets every image right."""
    conf, pred = logits.softmax(-1).max(-1)
    wrong = (pred != y).double()
    return (conf.double() * wrong).sum(-1) / wrong.sum(-1)  # 0 / 0 = nan


def run_lab(make_model, n_per_class: int, *, seeds, cfg, device, data_seed: int = 0,
            frozen=(), track_wrong: bool = False, **split_kwargs) -> LabRun:
    """Train make_model(seed=s) on edge_split(n_per_class, seed=data_seed + seed) for each seed, stacked.

    track_wrong: also record hist["val_wrong_conf"] (K, evaluations), the wrong_confidence on validation.
    """
    seeds = [checks.seed(s) for s in seeds]
    checks.boolean("track_wrong", track_wrong)
    splits = [edge_split(n_per_class, seed=data_seed + s, return_info=True, **split_kwargs) for s in seeds]
    x, y, x_val, y_val = (torch.stack([p[i] for p in splits]) for i in range(4))
    models = [make_model(seed=s) for s in seeds]
    record = None
    if track_wrong:
        xv, yv = x_val.to(device), y_val.to(device)
        record = lambda params: {"val_wrong_conf": wrong_confidence(models[0].stacked_forward(params, xv), yv)}
    hist = fit_stacked(models, x, y, cfg=cfg, seeds=seeds, device=device, x_val=x_val, y_val=y_val,
                       frozen=frozen, record=record)
    hist["n_classes"] = split_kwargs.get("n_classes", 3)
    return LabRun(hist, models, x, y, x_val, y_val, [p[4] for p in splits], [p[5] for p in splits])


def size_to_reach(sizes, acc, target: float) -> np.ndarray:
    """Per seed, the images per class at which accuracy acc (S sizes, K seeds) first reaches `target`.

    Linear interpolation in log(size) between the last size below and the first at or above the
    target; nan for a seed that never reaches it.
    """
    sizes, acc = np.log(np.asarray(sizes, dtype=float)), np.asarray(acc, dtype=float)
    out = np.full(acc.shape[1], np.nan)
    for k in range(acc.shape[1]):
        hit = np.nonzero(acc[:, k] >= target)[0]
        if hit.size == 0:
            continue
        i = hit[0]
        if i == 0:
            out[k] = np.exp(sizes[0])
            continue
        a0, a1 = acc[i - 1, k], acc[i, k]
        out[k] = np.exp(sizes[i - 1] + (target - a0) / (a1 - a0) * (sizes[i] - sizes[i - 1]))
    return out


def seen_share(run: LabRun) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per model (K,): share of validation edge images whose geometry occurs in training, and the
    validation accuracy on edge images with a seen and with an unseen geometry (nan if none)."""
    pred = stacked_logits(run.models, run.x_val, device="cpu").argmax(-1)
    share, acc_seen, acc_unseen = [], [], []
    for k in range(len(run.models)):
        seen = seen_geometry(run.y[k], run.info[k], run.y_val[k], run.info_val[k])
        edge, ok = run.y_val[k] > 0, (pred[k] == run.y_val[k]).double()
        share.append(seen[edge].double().mean().item())
        acc_seen.append(ok[edge & seen].mean().item() if (edge & seen).any() else np.nan)
        acc_unseen.append(ok[edge & ~seen].mean().item() if (edge & ~seen).any() else np.nan)
    return np.array(share), np.array(acc_seen), np.array(acc_unseen)


def lit_map(x: torch.Tensor, y: torch.Tensor, label: int) -> torch.Tensor:
    """Share (H, W) of the images of class `label` in which each pixel differs from the background.

    The background is each image's median: a stripe covers less than half of the pixels.
    """
    xs = x[y == label].flatten(0, -3)
    background = xs.flatten(-2).median(-1).values[:, None, None]
    return ((xs - background).abs() > 1e-6).double().mean(0)
