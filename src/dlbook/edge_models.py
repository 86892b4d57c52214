"""The two models of the edge lab (chapter 12): a tiny CNN and an MLP, plus edge-detector kernels.

Topic module; imports only the core. Both models have a `stacked_forward(params, x)` that
`sweep.fit_stacked` uses to train K copies at once (see the appendix page on sweeps).

Used by chapters: 12.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks
from .runtime import seeded

POOLS = ("max", "avg")
LOCAL_POOLS = (None, "max", "avg")


class EdgeCNN(nn.Module):
    """conv(1 -> F, k x k) -> ReLU -> [2x2 pool] -> global max/avg pool -> linear; (N, 1, H, W) -> (N, C)."""

    def __init__(self, *, n_filters: int = 8, kernel_size: int = 3, pool: str = "max",
                 local_pool: str | None = None, n_classes: int = 3):
        super().__init__()
        self.pool = checks.choice("pool", pool, POOLS)
        self.local_pool = checks.choice("local_pool", local_pool, LOCAL_POOLS)
        self.conv = nn.Conv2d(1, n_filters, kernel_size)
        self.head = nn.Linear(n_filters, n_classes)

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """Pooled features (..., F) of pre-activation response maps (..., F, H', W')."""
        h = F.relu(maps)
        if self.local_pool is not None:
            pool2 = F.max_pool2d if self.local_pool == "max" else F.avg_pool2d
            h = pool2(h.flatten(0, -4), 2).unflatten(0, h.shape[:-3])
        # pooling over the whole map makes the features independent of where the stripe is
        return h.amax(dim=(-2, -1)) if self.pool == "max" else h.mean(dim=(-2, -1))

    def forward(self, x):
        if self.pool == "max" and self.local_pool is None:
            return self.head(F.relu(global_max_conv(x, self.conv.weight, self.conv.bias)))
        return self.head(self.features(self.conv(x)))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, C) of K models with stacked `params` on their own images x (K, B, 1, H, W)."""
        w, b = params["conv.weight"], params["conv.bias"]
        if self.pool == "max" and self.local_pool is None:
            feats = F.relu(stacked_global_max_conv(x, w, b))
        else:
            feats = self.features(stacked_conv(x, w, b))
        return torch.baddbmm(params["head.bias"].unsqueeze(1), feats,
                             params["head.weight"].transpose(1, 2))


def stacked_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """conv2d of K models at once: x (K, B, 1, H, W), weight (K, F, 1, k, k) -> (K, B, F, H', W')."""
    (k_models, b), (c, k), (h, w) = x.shape[:2], weight.shape[1::2], x.shape[-2:]
    # the models as groups of one grouped conv in channels-last layout (fast on the CPU)
    xc = x.reshape(k_models, b, h, w).transpose(0, 1).contiguous(memory_format=torch.channels_last)
    maps = F.conv2d(xc, weight.reshape(k_models * c, 1, k, k), bias.reshape(-1), groups=k_models)
    return maps.unflatten(1, (k_models, c)).transpose(0, 1)


def global_max_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """max over positions of conv2d(x, weight, bias): (B, 1, H, W) -> (B, F).

    The gradient of a max flows to one arg-max (chapter 11), so the full map is computed without
    autograd and the convolution is redone with autograd only at the winning position of each
    (image, filter): the value of conv2d(...).amax((-2, -1)) at a fraction of the backward cost.
    """
    b, c = x.shape[0], weight.shape[0]
    k, (h, w) = weight.shape[-1], x.shape[-2:]
    with torch.no_grad():
        # the bias does not move the arg-max
        pos = F.conv2d(x, weight).contiguous().flatten(-2).argmax(-1)  # (B, F)
    row, col = pos // (w - k + 1), pos % (w - k + 1)
    d = torch.arange(k, device=x.device)
    idx = ((row[..., None, None] + d[:, None]) * w + col[..., None, None] + d[None, :]).flatten(-2)
    patches = torch.gather(x.flatten(-3).unsqueeze(1).expand(b, c, h * w), 2, idx)  # (B, F, k*k)
    return (patches * weight.flatten(1)).sum(-1) + bias


def stacked_global_max_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """global_max_conv of K models: x (K, B, 1, H, W), weight (K, F, 1, k, k), bias (K, F) -> (K, B, F)."""
    (k_models, b), (c, k), (h, w) = x.shape[:2], weight.shape[1::2], x.shape[-2:]
    wo = w - k + 1
    with torch.no_grad():
        xc = x.reshape(k_models, b, h, w).transpose(0, 1).contiguous(memory_format=torch.channels_last)
        maps = F.conv2d(xc, weight.reshape(k_models * c, 1, k, k), groups=k_models)  # (B, K*F, H', W')
        # one max pool over the whole map gives the first arg-max in row-major order (a later
        # equal value does not replace the maximum): exactly argmax over the flattened map
        pos = F.max_pool2d(maps, maps.shape[-2:], return_indices=True)[1].view(b, k_models, c).transpose(0, 1)
    row, col = pos // wo, pos % wo
    d = torch.arange(k, device=x.device)
    idx = ((row[..., None, None] + d[:, None]) * w + col[..., None, None] + d[None, :]).flatten(-2)
    patches = torch.gather(x.reshape(k_models, b, 1, h * w).expand(k_models, b, c, h * w), 3, idx)
    return (patches * weight.reshape(k_models, 1, c, k * k)).sum(-1) + bias.unsqueeze(1)


class EdgeMLP(nn.Module):
    """flatten -> linear(H*W -> hidden) -> ReLU -> linear(hidden -> C); (N, 1, H, W) -> (N, C)."""

    def __init__(self, *, size: int = 28, hidden: int = 64, n_classes: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(size * size, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(-3))))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, C) of K models with stacked `params` on their own images x (K, B, 1, H, W)."""
        # W x^T rather than x W^T: no copy of the (K, hidden, H*W) weights into another layout
        h = torch.bmm(params["fc1.weight"], x.flatten(2).transpose(1, 2)).transpose(1, 2)
        h = F.relu(h + params["fc1.bias"].unsqueeze(1))
        return torch.baddbmm(params["fc2.bias"].unsqueeze(1), h, params["fc2.weight"].transpose(1, 2))


def make_cnn(*, seed: int, n_filters: int = 8, kernel_size: int = 3, pool: str = "max",
             local_pool: str | None = None, n_classes: int = 3, edge_init: str | None = None,
             zero_sum: bool = False, bias: float | None = None) -> EdgeCNN:
    """An EdgeCNN with torch's default init from `seed`; edge_init "hv"/"hvd" sets the filters to edge_kernels.

    zero_sum: subtract each initial filter's mean, so that a uniform image gives the same response
    whatever its brightness (the edge kernels have this property). bias: a constant initial
    conv bias (with zero_sum and bias < 0, a uniform patch starts below the ReLU's threshold).
    """
    checks.seed(seed)
    checks.boolean("zero_sum", zero_sum)
    for name, v in (("n_filters", n_filters), ("kernel_size", kernel_size), ("n_classes", n_classes)):
        checks.positive_int(name, v)
    checks.choice("edge_init", edge_init, (None, "hv", "hvd"))
    model = seeded(lambda: EdgeCNN(n_filters=n_filters, kernel_size=kernel_size, pool=pool,
                                   local_pool=local_pool, n_classes=n_classes), seed=seed)
    if zero_sum:
        with torch.no_grad():
            model.conv.weight.sub_(model.conv.weight.mean(dim=(-2, -1), keepdim=True))
    if bias is not None:
        with torch.no_grad():
            model.conv.bias.fill_(checks.real("bias", bias))
    if edge_init is not None:
        bank = edge_kernels(kernel_size, diagonals=edge_init == "hvd")
        if n_filters != len(bank):
            raise ValueError(f"edge_init={edge_init!r} needs n_filters={len(bank)}, got {n_filters}")
        with torch.no_grad():
            model.conv.weight.copy_(bank)
            model.conv.bias.zero_()
    return model


def make_mlp(*, seed: int, size: int = 28, hidden: int = 64, n_classes: int = 3) -> EdgeMLP:
    """An EdgeMLP with torch's default init from `seed`."""
    checks.seed(seed)
    for name, v in (("size", size), ("hidden", hidden), ("n_classes", n_classes)):
        checks.positive_int(name, v)
    return seeded(lambda: EdgeMLP(size=size, hidden=hidden, n_classes=n_classes), seed=seed)


def _binomial(n: int) -> torch.Tensor:
    row = torch.ones(1)
    for _ in range(n - 1):
        row = torch.cat([row, torch.zeros(1)]) + torch.cat([torch.zeros(1), row])
    return row


def edge_kernels(kernel_size: int = 3, *, diagonals: bool = True) -> torch.Tensor:
    """Sobel-type bank (8 or 4, 1, k, k): horizontal, vertical, [two diagonals,] then their negatives."""
    checks.integer("kernel_size", kernel_size, low=3)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    smooth = _binomial(kernel_size)
    lower = _binomial(kernel_size - 1)
    diff = torch.cat([lower, torch.zeros(1)]) - torch.cat([torch.zeros(1), lower])
    horizontal = torch.outer(diff, smooth)  # varies down the rows: fires on horizontal stripes
    vertical = horizontal.T
    # the sum and difference of the two Sobel kernels are the diagonal Sobel kernels
    bank = torch.stack([horizontal, vertical, horizontal + vertical, horizontal - vertical][:4 if diagonals else 2])
    bank = bank / bank.clamp(min=0).sum(dim=(1, 2), keepdim=True)  # a unit step gives response 1
    return torch.cat([bank, -bank]).unsqueeze(1)


def cnn_parameter_formula(*, n_filters: int, kernel_size: int, n_classes: int) -> int:
    """Parameters of EdgeCNN by hand: F filters of k*k weights and a bias, then an (F + 1) x C head."""
    return n_filters * (kernel_size**2 + 1) + (n_filters + 1) * n_classes


def mlp_parameter_formula(*, size: int, hidden: int, n_classes: int) -> int:
    """Parameters of EdgeMLP by hand: (size^2 + 1) x hidden, then (hidden + 1) x C."""
    return (size * size + 1) * hidden + (hidden + 1) * n_classes


def edge_likeness(weight: torch.Tensor) -> float:
    """Mean over filters (F, 1, k, k) of the cosine to the closest kernel of edge_kernels(k)."""
    checks.tensor("weight", weight, ndim=4)
    unit = lambda w: F.normalize(w.detach().cpu().double().flatten(1), dim=1)
    return float((unit(weight) @ unit(edge_kernels(weight.shape[-1])).T).amax(1).mean())


def relu_maps(model: EdgeCNN, x: torch.Tensor) -> torch.Tensor:
    """ReLU responses (N, F, H', W') of an EdgeCNN's filters to images x (N, 1, H, W)."""
    if not isinstance(model, EdgeCNN):
        raise TypeError(f"model must be an EdgeCNN, got {type(model).__name__}")
    checks.tensor("x", x, ndim=4)
    with torch.no_grad():
        return F.relu(model.conv(x.to(model.conv.weight.device))).cpu()


def dead_filter_share(model: EdgeCNN, x: torch.Tensor) -> float:
    """Share of the filters whose ReLU response is 0 at every position of every image x (N, 1, H, W)."""
    return float((relu_maps(model, x).amax(dim=(0, 2, 3)) <= 0).double().mean())


def stripe_contribution(model: EdgeCNN, x: torch.Tensor, background: torch.Tensor, *,
                        pool: str) -> torch.Tensor:
    """Per image and filter (N, F): the globally pooled ("max"/"avg") ReLU response to x (N, 1, H, W)
    minus that to a flat image of its background intensity (N,)."""
    checks.choice("pool", pool, POOLS)
    if background.shape != x.shape[:1]:
        raise ValueError(f"background must have shape ({len(x)},), got {tuple(background.shape)}")
    flat = background.to(x.dtype).view(-1, 1, 1, 1).expand_as(x)
    reduce = (lambda h: h.amax(dim=(-2, -1))) if pool == "max" else (lambda h: h.mean(dim=(-2, -1)))
    return reduce(relu_maps(model, x)) - reduce(relu_maps(model, flat))
