"""Max, average and min pooling by hand (any kernel and stride, no padding): forward, backward,
stacked routing, and robustness measurements of one pooling layer.

Topic module of chapter 11; imports only the core.

Used by chapters: 11.
"""

from __future__ import annotations

import torch

from . import checks


def _pair(name: str, v) -> tuple[int, int]:
    if isinstance(v, tuple) and len(v) == 2:
        return checks.positive_int(name, v[0]), checks.positive_int(name, v[1])
    v = checks.positive_int(name, v)
    return v, v


def pool_geometry(shape, kernel, stride=None) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """((kh, kw), (sh, sw), (oh, ow)) for an input of spatial shape (..., H, W); stride defaults to the kernel."""
    kh, kw = _pair("kernel", kernel)
    sh, sw = _pair("stride", kernel if stride is None else stride)
    if len(shape) < 2:
        raise ValueError(f"input must have shape (..., H, W), got {tuple(shape)}")
    H, W = shape[-2:]
    if kh > H or kw > W:
        raise ValueError(f"kernel {(kh, kw)} must fit in the input's spatial shape {(H, W)}")
    return (kh, kw), (sh, sw), ((H - kh) // sh + 1, (W - kw) // sw + 1)


def windows(x: torch.Tensor, kernel, stride=None) -> torch.Tensor:
    """The pooling windows of x as a view: (..., H, W) -> (..., oh, ow, kh, kw)."""
    checks.tensor("x", x)
    (kh, kw), (sh, sw), _ = pool_geometry(x.shape, kernel, stride)
    return x.unfold(-2, kh, sh).unfold(-2, kw, sw)


def maxpool_forward(x: torch.Tensor, *, kernel,
                    stride=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over each window and the flat index h*W + w of the winner, like
    PyTorch: (..., H, W) -> (..., oh, ow) twice."""
    (kh, kw), (sh, sw), (oh, ow) = pool_geometry(x.shape, kernel, stride)
    win = windows(x, kernel, stride).reshape(*x.shape[:-2], oh, ow,
                                             kh * kw)
    # argmax returns the first maximal entry in row-major window order:
    # PyTorch's tie rule on the CPU
    pos = win.argmax(dim=-1)
    y = win.gather(-1, pos[..., None]).squeeze(-1)
    rows = torch.arange(oh, device=x.device)[:, None] * sh + pos // kw
    cols = torch.arange(ow, device=x.device)[None, :] * sw + pos % kw
    return y, rows * x.shape[-1] + cols


def maxpool_backward(dy: torch.Tensor, index: torch.Tensor,
                     input_shape) -> torch.Tensor:
    """dx: each dy entry is added to the input position that won its
    window (overlaps accumulate): -> input_shape."""
    if dy.shape != index.shape:
        raise ValueError(f"dy {tuple(dy.shape)} and index "
                         f"{tuple(index.shape)} must have the same shape")
    H, W = input_shape[-2:]
    dx = torch.zeros(*input_shape[:-2], H * W, dtype=dy.dtype,
                     device=dy.device)
    dx.scatter_add_(-1, index.flatten(-2), dy.flatten(-2))
    return dx.reshape(input_shape)


def avgpool_forward(x: torch.Tensor, *, kernel,
                    stride=None) -> torch.Tensor:
    """Mean over each window: (..., H, W) -> (..., oh, ow)."""
    return windows(x, kernel, stride).mean(dim=(-2, -1))


def avgpool_backward(dy: torch.Tensor, input_shape, *, kernel,
                     stride=None) -> torch.Tensor:
    """dx: each dy entry is spread evenly, dy/(kh*kw), over its window
    (overlaps accumulate): -> input_shape."""
    (kh, kw), (sh, sw), (oh, ow) = pool_geometry(input_shape, kernel,
                                                 stride)
    if tuple(dy.shape[-2:]) != (oh, ow):
        raise ValueError(f"dy's spatial shape {tuple(dy.shape[-2:])} must "
                         f"be {(oh, ow)} for this input, kernel and stride")
    dx = torch.zeros(input_shape, dtype=dy.dtype, device=dy.device)
    share = dy / (kh * kw)
    # offset (a, b) inside the window: one strided slice of dx per offset
    for a in range(kh):
        for b in range(kw):
            rows = slice(a, a + sh * (oh - 1) + 1, sh)
            dx[..., rows, b:b + sw * (ow - 1) + 1:sw] += share
    return dx


def minpool_forward(x: torch.Tensor, *, kernel, stride=None) -> torch.Tensor:
    """Min over each window: (..., H, W) -> (..., oh, ow)."""
    return windows(x, kernel, stride).amin(dim=(-2, -1))


def pool(x: torch.Tensor, kind: str, *, kernel, stride=None) -> torch.Tensor:
    """Pool with kind in {"max", "avg", "min", "none"} ("none" returns x): (..., H, W) -> (..., oh, ow)."""
    checks.choice("kind", kind, ("max", "avg", "min", "none"))
    if kind == "max":
        return maxpool_forward(x, kernel=kernel, stride=stride)[0]
    if kind == "avg":
        return avgpool_forward(x, kernel=kernel, stride=stride)
    if kind == "min":
        return minpool_forward(x, kernel=kernel, stride=stride)
    if kind == "none":
        return x


def stacked_max_backward(x: torch.Tensor, dy: torch.Tensor, kernels) -> torch.Tensor:
    """dX of max pools applied in turn with the given kernels (stride = kernel), each routing by
    the first-maximum rule: (..., H, W) -> (..., H, W)."""
    shapes, indices = [], []
    for k in kernels:
        shapes.append(x.shape)
        x, idx = maxpool_forward(x, kernel=k)
        indices.append(idx)
    for shape, idx in zip(reversed(shapes), reversed(indices)):
        dy = maxpool_backward(dy, idx, shape)
    return dy


NOISES = ("gaussian", "salt", "pepper")


def corrupt(x: torch.Tensor, noise: str, *, level: float, generator: torch.Generator) -> torch.Tensor:
    """Pixel noise: "gaussian" adds N(0, level^2); "salt"/"pepper" set a fraction `level` of pixels to 1/0."""
    checks.choice("noise", noise, NOISES)
    if noise == "gaussian":
        checks.nonnegative("level", level)
    else:
        checks.probability("level", level, allow_one=True)
    if noise == "gaussian":
        return x + level * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    hit = torch.rand(x.shape, generator=generator, device=x.device) < level
    return torch.where(hit, 1.0 if noise == "salt" else 0.0, x).to(x.dtype)


def relative_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example ||b - a|| / ||a|| over the last two dims: (N, ..., H, W) -> (N,)."""
    dims = tuple(range(1, a.ndim))
    return (b - a).norm(dim=dims) / a.norm(dim=dims).clamp_min(1e-12)


def noise_sensitivity(x: torch.Tensor, *, kind: str, noise: str, level: float, kernel=2, stride=None,
                      seed: int) -> float:
    """Mean relative change of the pooled map when pixels of x (N, H, W) are corrupted by `noise`."""
    g = torch.Generator(device=x.device)
    g.manual_seed(checks.seed(seed))
    noisy = corrupt(x, noise, level=level, generator=g)
    return float(relative_change(pool(x, kind, kernel=kernel, stride=stride),
                                 pool(noisy, kind, kernel=kernel, stride=stride)).mean())


def shift(x: torch.Tensor, dx: int, dy: int = 0) -> torch.Tensor:
    """Translate images (..., H, W) by dx columns right and dy rows down, filling with zeros."""
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    if abs(dx) >= W or abs(dy) >= H:
        return out
    src = x[..., max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
    out[..., max(0, dy):H - max(0, -dy), max(0, dx):W - max(0, -dx)] = src
    return out


def shift_sensitivity(x: torch.Tensor, *, kind: str, shifts, kernel=2, stride=None) -> list[dict]:
    """For each shift s: mean relative change of pool(shift(x, s)) vs pool(x), and the fraction of non-blank outputs unchanged."""
    base = pool(x, kind, kernel=kernel, stride=stride)
    rows = []
    for s in shifts:
        moved = pool(shift(x, s), kind, kernel=kernel, stride=stride)
        live = (base != 0) | (moved != 0)  # blank background would count as "unchanged" trivially
        same = (moved - base).abs().le(1e-6) & live
        rows.append({"shift": int(s), "relative change": float(relative_change(base, moved).mean()),
                     "unchanged": float(same.sum() / live.sum())})
    return rows


def relu_feature_maps(x: torch.Tensor, *, filters: int, seed: int, k: int = 5) -> torch.Tensor:
    """ReLU responses of `filters` random k x k filters (N(0, 1/k^2) weights): (N, 1, H, W) ->
    (N * filters, H-k+1, W-k+1), float-valued maps without the plateaus of 8-bit pixels."""
    checks.tensor("x", x, ndim=4)
    g = torch.Generator()
    g.manual_seed(checks.seed(seed))
    w = torch.randn(checks.positive_int("filters", filters), 1, k, k, generator=g) / k
    return torch.relu(torch.nn.functional.conv2d(x, w.to(x.device, x.dtype))).flatten(0, 1)
