"""The two models of the inductive-bias lab: a tiny CNN with global pooling and an MLP, plus edge-detector kernels."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import vmap

POOLS = ("max", "avg")


class EdgeCNN(nn.Module):
    """conv(1 -> n_filters, k x k, no padding) -> ReLU -> global max/avg pool -> linear; (N, 1, H, W) -> (N, n_classes)."""

    def __init__(self, *, n_filters: int = 8, kernel_size: int = 3, pool: str = "max", n_classes: int = 3):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.conv = nn.Conv2d(1, n_filters, kernel_size)
        self.head = nn.Linear(n_filters, n_classes)

    def forward(self, x):
        # pooling over the whole map makes the features independent of where the stripe is
        if self.pool == "avg":
            return self.head(F.relu(self.conv(x)).mean(dim=(-2, -1)))
        return self.head(F.relu(global_max_conv(x, self.conv.weight, self.conv.bias)))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, C) of K models, params stacked as by torch.func.stack_module_state, on their own x (K, B, 1, H, W)."""
        w, b = params["conv.weight"], params["conv.bias"]
        if self.pool == "avg":
            feats = vmap(lambda xi, wi, bi: F.relu(F.conv2d(xi, wi, bi)).mean(dim=(-2, -1)))(x, w, b)
        else:
            feats = F.relu(stacked_global_max_conv(x, w, b))
        return torch.baddbmm(params["head.bias"].unsqueeze(1), feats, params["head.weight"].transpose(1, 2))


def global_max_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """max over positions of conv2d(x, weight, bias): (B, 1, H, W) -> (B, C); backward touches only the winning patches.

    The gradient of a max flows to one arg-max (chapter 11), so the full map is computed without
    autograd and the convolution is redone with autograd only at the winning position of each
    (image, filter): same value as conv2d(...).amax((-2, -1)), a fraction of the backward cost.
    """
    b, c = x.shape[0], weight.shape[0]
    k, (h, w) = weight.shape[-1], x.shape[-2:]
    with torch.no_grad():
        # the bias does not move the arg-max; a contiguous map makes the reduction much faster under vmap
        pos = F.conv2d(x, weight).contiguous().flatten(-2).argmax(-1)  # (B, C)
    row, col = pos // (w - k + 1), pos % (w - k + 1)
    d = torch.arange(k, device=x.device)
    idx = ((row[..., None, None] + d[:, None]) * w + col[..., None, None] + d[None, :]).flatten(-2)
    patches = torch.gather(x.flatten(-3).unsqueeze(1).expand(b, c, h * w), 2, idx)  # (B, C, k*k)
    return (patches * weight.flatten(1)).sum(-1) + bias


def stacked_global_max_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """global_max_conv for K models at once: x (K, B, 1, H, W), weight (K, F, 1, k, k), bias (K, F) -> (K, B, F)."""
    (n_models, b), (c, k), (h, w) = x.shape[:2], weight.shape[1::2], x.shape[-2:]
    wo = w - k + 1
    with torch.no_grad():
        # the models as groups of a grouped conv in channels-last layout: several times faster on the CPU
        # than vmap's grouped conv in the default layout, and the maps come out as (B, H', W', K*F)
        xc = x.reshape(n_models, b, h, w).transpose(0, 1).contiguous(memory_format=torch.channels_last)
        maps = F.conv2d(xc, weight.reshape(n_models * c, 1, k, k), groups=n_models).permute(0, 2, 3, 1)
        # first arg-max in row-major order in two cheap steps: the first row holding the maximum,
        # then the first column of that row; exactly argmax over the flattened map
        row = maps.amax(dim=2).argmax(dim=1)  # (B, K*F)
        col = maps.gather(1, row[:, None, None].expand(b, 1, wo, n_models * c)).squeeze(1).argmax(dim=1)
        row, col = row.view(b, n_models, c).transpose(0, 1), col.view(b, n_models, c).transpose(0, 1)
    d = torch.arange(k, device=x.device)
    idx = ((row[..., None, None] + d[:, None]) * w + col[..., None, None] + d[None, :]).flatten(-2)  # (K, B, F, k*k)
    patches = torch.gather(x.reshape(n_models, b, 1, h * w).expand(n_models, b, c, h * w), 3, idx)
    return (patches * weight.reshape(n_models, 1, c, k * k)).sum(-1) + bias.unsqueeze(1)


class EdgeMLP(nn.Module):
    """flatten -> linear(H*W -> hidden) -> ReLU -> linear(hidden -> n_classes); (N, 1, H, W) -> (N, n_classes)."""

    def __init__(self, *, size: int = 28, hidden: int = 64, n_classes: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(size * size, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x):
        # W @ x^T rather than fc1(x): same numbers, but under vmap it avoids copying the weights
        # into the layout x @ W^T wants, which halves the cost of a stacked sweep on the CPU
        h = (self.fc1.weight @ x.flatten(-3).T).T + self.fc1.bias
        return self.fc2(F.relu(h))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, C) of K models, params stacked as by torch.func.stack_module_state, on their own x (K, B, 1, H, W)."""
        h = torch.bmm(params["fc1.weight"], x.flatten(2).transpose(1, 2)).transpose(1, 2) + params["fc1.bias"].unsqueeze(1)
        return torch.baddbmm(params["fc2.bias"].unsqueeze(1), F.relu(h), params["fc2.weight"].transpose(1, 2))


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _check_positive(**values):
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def make_cnn(*, seed: int, n_filters: int = 8, kernel_size: int = 3, pool: str = "max", n_classes: int = 3,
             edge_init: str | None = None) -> EdgeCNN:
    """An EdgeCNN initialised from `seed` (torch's default init); edge_init "hv" or "hvd" sets the conv to edge_kernels."""
    _check_seed(seed)
    _check_positive(n_filters=n_filters, kernel_size=kernel_size, n_classes=n_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EdgeCNN(n_filters=n_filters, kernel_size=kernel_size, pool=pool, n_classes=n_classes)
    if edge_init not in (None, "hv", "hvd"):
        raise ValueError(f"edge_init must be None, 'hv' or 'hvd', got {edge_init!r}")
    if edge_init is not None:
        bank = edge_kernels(kernel_size, diagonals=edge_init == "hvd")
        if n_filters != len(bank):
            raise ValueError(f"edge_init needs n_filters={len(bank)}, got {n_filters}")
        with torch.no_grad():
            model.conv.weight.copy_(bank)
            model.conv.bias.zero_()
    return model


def make_mlp(*, seed: int, size: int = 28, hidden: int = 64, n_classes: int = 3) -> EdgeMLP:
    """An EdgeMLP initialised from `seed` (torch's default init)."""
    _check_seed(seed)
    _check_positive(size=size, hidden=hidden, n_classes=n_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EdgeMLP(size=size, hidden=hidden, n_classes=n_classes)


def _binomial(n: int) -> torch.Tensor:
    row = torch.ones(1)
    for _ in range(n - 1):
        row = torch.cat([row, torch.zeros(1)]) + torch.cat([torch.zeros(1), row])
    return row


def edge_kernels(kernel_size: int = 3, *, diagonals: bool = True) -> torch.Tensor:
    """Sobel-type bank (8 or 4, 1, k, k): horizontal, vertical, [two diagonals,] then their negatives; unit step -> 1."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 3, got {kernel_size!r}")
    smooth = _binomial(kernel_size)
    lower = _binomial(kernel_size - 1)
    diff = torch.cat([lower, torch.zeros(1)]) - torch.cat([torch.zeros(1), lower])
    horizontal = torch.outer(diff, smooth)  # varies down the rows: fires on horizontal stripes
    vertical = horizontal.T
    # the sum and difference of the two Sobel kernels are the diagonal Sobel kernels
    bank = torch.stack([horizontal, vertical, horizontal + vertical, horizontal - vertical][:4 if diagonals else 2])
    bank = bank / bank.clamp(min=0).sum(dim=(1, 2), keepdim=True)
    return torch.cat([bank, -bank]).unsqueeze(1)


def parameter_count(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of `model` (only those with requires_grad if `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def cnn_parameter_formula(*, n_filters: int, kernel_size: int, n_classes: int) -> int:
    """Parameters of EdgeCNN by hand: filters k*k plus bias each, then a (n_filters + 1) x n_classes head."""
    return n_filters * (kernel_size**2 + 1) + (n_filters + 1) * n_classes


def mlp_parameter_formula(*, size: int, hidden: int, n_classes: int) -> int:
    """Parameters of EdgeMLP by hand: (size^2 + 1) x hidden plus (hidden + 1) x n_classes."""
    return (size * size + 1) * hidden + (hidden + 1) * n_classes


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    idx = y_true.long().cpu() * n_classes + y_pred.long().cpu()
    return torch.bincount(idx, minlength=n_classes * n_classes).view(n_classes, n_classes)


def calibration(probs: torch.Tensor, y: torch.Tensor, *, n_bins: int = 10) -> dict:
    """Reliability data for softmax `probs` (N, C): per-bin confidence, accuracy, count, and the ECE."""
    _check_positive(n_bins=n_bins)
    conf, pred = probs.max(dim=1)
    correct = (pred == y).float()
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    count = torch.bincount(bins, minlength=n_bins).float()
    conf_sum = torch.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    safe = count.clamp(min=1)
    ece = ((conf_sum - acc_sum).abs().sum() / len(y)).item()
    return {"confidence": conf_sum / safe, "accuracy": acc_sum / safe, "count": count, "ece": ece}
