"""Convolution arithmetic: output sizes, parameter and multiply-add counts, and the networks of chapter 9.

Topic module of chapter 9; imports only the core (checks, runtime, train, metrics).

Used by chapters: 9.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from . import checks
from .metrics import param_count
from .runtime import seeded
from .train import TrainConfig, fit

SHORTCUTS = ("none", "A", "B")
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
RESNET34_BLOCKS = (3, 4, 6, 3)
RESNET_WIDTHS = (64, 128, 256, 512)


def _int(name, value, minimum):
    return checks.integer(name, value, low=minimum)


def conv_output_size(n: int, *, kernel: int, stride: int = 1,
                     padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length along one axis when a window of `kernel` taps sweeps
    a length-`n` axis (PyTorch's rule)."""
    n, kernel = _int("n", n, 1), _int("kernel", kernel, 1)
    stride = _int("stride", stride, 1)
    padding = _int("padding", padding, 0)
    dilation = _int("dilation", dilation, 1)
    span = dilation * (kernel - 1) + 1  # the dilated kernel's extent
    room = n + 2 * padding - span
    if ceil_mode:
        out = -(-room // stride) + 1
        # a window starting in the right padding sees no input
        if (out - 1) * stride >= n + padding:
            out -= 1
    else:
        out = room // stride + 1
    if out < 1:
        raise ValueError(
            f"kernel: a window of extent {span} (kernel {kernel}, "
            f"dilation {dilation}) does not fit an input of length {n} "
            f"padded by {padding} on each side")
    return out


def pool_output_size(n: int, *, kernel: int, stride: int | None = None,
                     padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length of max/average pooling (stride defaults to the
    kernel; padding at most kernel // 2)."""
    kernel = _int("kernel", kernel, 1)
    stride = kernel if stride is None else stride
    if _int("padding", padding, 0) > kernel // 2:
        raise ValueError(f"padding must be in [0, kernel // 2 = "
                         f"{kernel // 2}] for pooling, got {padding}")
    return conv_output_size(n, kernel=kernel, stride=stride,
                            padding=padding, dilation=dilation,
                            ceil_mode=ceil_mode)


def same_padding(kernel: int, *, dilation: int = 1) -> int:
    """Padding that keeps the size at stride 1: (dilation * (kernel - 1)) / 2, defined for odd extents only."""
    span = _int("dilation", dilation, 1) * (_int("kernel", kernel, 1) - 1)
    if span % 2:
        raise ValueError(f"kernel: the extent {span + 1} is even, so no symmetric padding keeps the size")
    return span // 2


def conv_params(c_in: int, c_out: int, kernel: int | tuple[int, int], *, bias: bool = True, groups: int = 1) -> int:
    """Learnable parameters of a 2-D convolution: c_out * (c_in / groups) * kh * kw weights (+ c_out biases)."""
    c_in, c_out, groups = _int("c_in", c_in, 1), _int("c_out", c_out, 1), _int("groups", groups, 1)
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups must divide c_in={c_in} and c_out={c_out}, got {groups}")
    kh, kw = (kernel, kernel) if not isinstance(kernel, (tuple, list)) else kernel
    return c_out * (c_in // groups) * _int("kernel", kh, 1) * _int("kernel", kw, 1) + (c_out if bias else 0)


def input_coverage(n: int, *, kernel: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """(n, n) int array: how many output windows read each input pixel of an n x n image."""
    m = conv_output_size(n, kernel=kernel, stride=stride, padding=padding)
    hits = np.zeros(n + 2 * padding, dtype=np.int64)
    for i in range(m):
        hits[i * stride: i * stride + kernel] += 1
    one = hits[padding: padding + n]
    return np.outer(one, one)


@dataclass(frozen=True)
class ParamCount:
    """Parameters by kind (total = their sum) and the multiply-accumulates of one forward pass on one image."""

    conv_weight: int = 0
    conv_bias: int = 0
    bn: int = 0
    fc_weight: int = 0
    fc_bias: int = 0
    macs: int = 0

    @property
    def total(self) -> int:
        return self.conv_weight + self.conv_bias + self.bn + self.fc_weight + self.fc_bias

    def __add__(self, other: "ParamCount") -> "ParamCount":
        return ParamCount(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self, *, macs: bool = False) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "macs"}
        d["total"] = self.total
        if macs:
            d["macs"] = self.macs
        return d


def _conv(c_in, c_out, k, n_out, *, bias, bn):
    return ParamCount(conv_weight=c_out * c_in * k * k, conv_bias=c_out if bias else 0, bn=2 * c_out if bn else 0,
                      macs=n_out * n_out * c_out * c_in * k * k)


def _fc(n_in, n_out):
    return ParamCount(fc_weight=n_in * n_out, fc_bias=n_out, macs=n_in * n_out)


def vgg19_count(*, num_classes: int = 1000, batch_norm: bool = False, image: int = 224) -> ParamCount:
    """VGG-19 by formula: 16 3x3 convs (with biases, optionally batch norm) and the 25088-4096-4096-classes head."""
    n, c, total = _int("image", image, 32), 3, ParamCount()
    for v in VGG19_CFG:
        if v == "M":
            n = pool_output_size(n, kernel=2)
        else:
            total += _conv(c, v, 3, n, bias=True, bn=batch_norm)
            c = v
    # torchvision pools adaptively to 7 x 7, so the head is the same for any image size
    for a, b in ((512 * 7 * 7, 4096), (4096, 4096), (4096, _int("num_classes", num_classes, 1))):
        total += _fc(a, b)
    return total


def resnet34_count(*, shortcut: str = "B", batch_norm: bool = True,
                   conv_bias: bool = False, num_classes: int = 1000,
                   image: int = 224,
                   blocks: tuple = RESNET34_BLOCKS) -> ParamCount:
    """34-layer net of He et al. by formula; shortcut 'none' (plain),
    'A' (identity/zero-pad) or 'B' (1x1 projection)."""
    checks.choice("shortcut", shortcut, SHORTCUTS)
    if (not isinstance(blocks, (tuple, list))
            or len(blocks) != len(RESNET_WIDTHS)):
        raise ValueError(f"blocks must give the number of blocks of each "
                         f"of the 4 stages, got {blocks!r}")
    blocks = [_int("blocks", b, 1) for b in blocks]
    kw = dict(bias=conv_bias, bn=batch_norm)
    n = conv_output_size(_int("image", image, 32), kernel=7, stride=2,
                         padding=3)
    total = _conv(3, 64, 7, n, **kw)
    n = pool_output_size(n, kernel=3, stride=2, padding=1)
    c = 64
    for stage, (nblocks, width) in enumerate(zip(blocks, RESNET_WIDTHS)):
        for b in range(nblocks):
            stride = 2 if stage > 0 and b == 0 else 1
            n = conv_output_size(n, kernel=3, stride=stride, padding=1)
            total += _conv(c, width, 3, n, **kw)
            total += _conv(width, width, 3, n, **kw)
            if shortcut == "B" and (stride != 1 or c != width):
                total += _conv(c, width, 1, n, **kw)
            c = width
    return total + _fc(c, _int("num_classes", num_classes, 1))


def module_param_count(model: nn.Module) -> ParamCount:
    """Parameters of a torch model sorted into the kinds of ParamCount (macs left 0); any other kind raises."""
    kinds = {nn.Conv2d: ("conv_weight", "conv_bias"), nn.BatchNorm2d: ("bn", "bn"), nn.Linear: ("fc_weight", "fc_bias")}
    counts = dict.fromkeys(("conv_weight", "conv_bias", "bn", "fc_weight", "fc_bias"), 0)
    for m in model.modules():
        if type(m) in kinds:
            for pname, kind in zip(("weight", "bias"), kinds[type(m)]):
                p = getattr(m, pname)
                counts[kind] += p.numel() if p is not None else 0
    if sum(counts.values()) != param_count(model):
        raise ValueError("model has parameters outside Conv2d, BatchNorm2d and Linear layers")
    return ParamCount(**counts)


def _build_device(device) -> str:
    # initialise on the CPU generator so a seed gives the same weights on every device; "meta" skips the work
    return "meta" if torch.device(device).type == "meta" else "cpu"


def plain34(*, num_classes: int = 1000, batch_norm: bool = True, seed: int = 0, device="cpu") -> nn.Sequential:
    """The 34-layer plain net of He et al. (no shortcuts); convs carry a bias only when there is no batch norm."""
    def conv(c_in, c_out, k, stride):
        layers = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=not batch_norm)]
        return layers + ([nn.BatchNorm2d(c_out)] if batch_norm else []) + [nn.ReLU(inplace=True)]

    def build():
        with torch.device(_build_device(device)):
            layers = conv(3, 64, 7, 2) + [nn.MaxPool2d(3, stride=2, padding=1)]
            c = 64
            for stage, (nblocks, width) in enumerate(zip(RESNET34_BLOCKS, RESNET_WIDTHS)):
                for b in range(2 * nblocks):  # two 3x3 convs per (absent) residual block
                    layers += conv(c, width, 3, 2 if stage > 0 and b == 0 else 1)
                    c = width
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, _int("num_classes", num_classes, 1))]
            return nn.Sequential(*layers)

    return seeded(build, seed=checks.seed(seed)).to(device)


def mnist_cnn(*, kernel: int = 5, stride: int = 1, padding: int = 0,
              channels: tuple = (10, 20), hidden: int = 100,
              image: int = 28, seed: int = 0,
              device="cpu") -> nn.Sequential:
    """Two (conv, 2x2 max-pool, ReLU) stages, then fc(hidden)-ReLU-fc(10)
    logits, for (N, 1, image, image) input."""
    if not isinstance(channels, (tuple, list)) or len(channels) != 2:
        raise ValueError(f"channels must be a pair (c1, c2), "
                         f"got {channels!r}")
    c1, c2 = (_int("channels", c, 1) for c in channels)
    hidden, n = _int("hidden", hidden, 1), _int("image", image, 1)
    conv = dict(kernel_size=kernel, stride=stride, padding=padding)
    # fail here, naming the argument, not inside the first forward pass
    for _ in channels:
        n = conv_output_size(n, kernel=kernel, stride=stride,
                             padding=padding)
        n = pool_output_size(n, kernel=2)

    def build():
        with torch.device(_build_device(device)):
            return nn.Sequential(
                nn.Conv2d(1, c1, **conv), nn.MaxPool2d(2), nn.ReLU(),
                nn.Conv2d(c1, c2, **conv), nn.MaxPool2d(2), nn.ReLU(),
                nn.Flatten(), nn.Linear(c2 * n * n, hidden), nn.ReLU(),
                nn.Linear(hidden, 10))

    model = seeded(build, seed=checks.seed(seed))
    # channels-last: CPU max-pooling about 3x faster, the same arithmetic
    return model.to(device, memory_format=torch.channels_last)


def _label(layer):
    if isinstance(layer, nn.Conv2d):
        return (f"Conv2d {layer.in_channels}→{layer.out_channels}, k={layer.kernel_size[0]}, "
                f"s={layer.stride[0]}, p={layer.padding[0]}")
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{type(layer).__name__} k={layer.kernel_size}, s={layer.stride}"
    if isinstance(layer, nn.Linear):
        return f"Linear {layer.in_features}→{layer.out_features}"
    return type(layer).__name__


def layer_table(model: nn.Sequential, x: torch.Tensor) -> list[dict]:
    """One row per layer of a Sequential run on x (N, C, H, W): layer, output shape (no N), parameters, MACs per image."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    rows = [{"layer": "input", "output shape": tuple(x.shape[1:]), "parameters": 0, "MACs": 0}]
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            macs = 0
            if isinstance(layer, nn.Conv2d):  # every output value is one dot product with a filter
                macs = x[0].numel() * layer.weight[0].numel()
            elif isinstance(layer, nn.Linear):
                macs = layer.weight.numel()
            rows.append({"layer": _label(layer), "output shape": tuple(x.shape[1:]),
                         "parameters": param_count(layer), "MACs": macs})
    return rows


# the chapter's training: 200 Adam steps of 64 images at a constant rate, evaluated every 50,
# so one run gives the accuracies after 100 and after 200 steps (800 steps would cost about
# 180 s of CPU time for the five versions and five seeds: more than the chapter's budget)
BUDGET = TrainConfig(steps=200, batch_size=64, optimizer="adam", lr=2e-3, eval_every=50)


def train_variant(*, kernel: int, stride: int, padding: int, seed: int, data, device,
                  cfg: TrainConfig = BUDGET) -> dict:
    """Train mnist_cnn(kernel, stride, padding) from `seed` on data.x_train for cfg.steps steps;
    the history of train.fit, evaluated on data.x_test."""
    model = mnist_cnn(kernel=kernel, stride=stride, padding=padding, seed=seed, device=device)
    return fit(model, data.x_train, data.y_train, cfg=cfg, seed=seed, device=device,
               x_val=data.x_test, y_val=data.y_test)
