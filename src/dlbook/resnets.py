"""Grouped convolutions, the two-GPU AlexNet, and plain versus residual networks (the degradation problem).

Topic module of chapter 14; imports only the core (checks, optim, train, sweep).

Used by chapters: 14.
"""

from __future__ import annotations

from dataclasses import replace
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .optim import Schedule
from .sweep import fit_stacked
from .train import TrainConfig

SHORTCUTS = ("none", "A", "B")
ALEXNET_GROUPS = {"conv2": 2, "conv4": 2, "conv5": 2}  # Krizhevsky et al. 2012, sec. 3.5

# Top-5 error (%) on ILSVRC classification: humans (Russakovsky et al. 2015, sec. 6.4) and
# machines; "images" is the number of test images a human error rate was measured on.
IMAGENET_TOP5 = (
    dict(year=2012, entry="SuperVision (AlexNet), 7 CNNs, extra data", kind="winner", error=15.3,
         images=None, source="krizhevsky2012imagenet"),
    dict(year=2012, entry="SuperVision (AlexNet), 5 CNNs, challenge data only", kind="other", error=16.4,
         images=None, source="krizhevsky2012imagenet"),
    dict(year=2013, entry="Clarifai", kind="winner", error=11.7, images=None, source="russakovsky2015imagenet"),
    dict(year=2014, entry="GoogLeNet", kind="winner", error=6.7, images=None, source="szegedy2015going"),
    dict(year=2015, entry="PReLU-net (February 2015)", kind="other", error=4.94, images=None,
         source="he2015delving"),
    dict(year=2015, entry="ResNet ensemble", kind="winner", error=3.57, images=None, source="he2016deep"),
    dict(year=2014, entry="human A1: trained on 500 images", kind="human", error=5.1, images=1500,
         source="russakovsky2015imagenet"),
    dict(year=2014, entry="human A2: trained on 100 images", kind="human", error=12.0, images=258,
         source="russakovsky2015imagenet"),
    dict(year=2014, entry="GoogLeNet on A1's 1500 images", kind="other", error=6.8, images=1500,
         source="russakovsky2015imagenet"),
)


def binomial_interval(error: float, n: int, *, z: float = NormalDist().inv_cdf(0.975)) -> tuple[float, float]:
    """Wilson score interval (%) of an error rate `error` (%) measured on n images."""
    checks.real("error", error, low=0.0, high=100.0)
    checks.positive_int("n", n)
    p = error / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)


def grouped_conv_params(c_in: int, c_out: int, kernel: int, *, groups: int = 1, bias: bool = True) -> int:
    """Parameters of a k x k convolution c_in -> c_out split into `groups`: c_out (c_in / g) k^2 (+ c_out)."""
    for name, v in (("c_in", c_in), ("c_out", c_out), ("kernel", kernel), ("groups", groups)):
        checks.positive_int(name, v)
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups: {groups} must divide c_in={c_in} and c_out={c_out}")
    return c_out * (c_in // groups) * kernel * kernel + (c_out if bias else 0)


def grouped_conv_macs(c_in: int, c_out: int, kernel: int, *, out_size: int, groups: int = 1) -> int:
    """Multiply-adds of one image through the convolution: out_size^2 outputs x c_out x (c_in / g) k^2."""
    checks.positive_int("out_size", out_size)
    return out_size * out_size * grouped_conv_params(c_in, c_out, kernel, groups=groups, bias=False)


def block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Dense weight (c_out, c_in, k, k) of a grouped conv weight (c_out, c_in / g, k, k): zeros off the blocks."""
    checks.tensor("weight", weight, ndim=4)
    checks.positive_int("groups", groups)
    c_out, c_per, kh, kw = weight.shape
    if c_out % groups:
        raise ValueError(f"groups: {groups} does not divide the {c_out} output channels")
    dense = weight.new_zeros(c_out, c_per * groups, kh, kw)
    rows = c_out // groups
    for g in range(groups):
        dense[g * rows:(g + 1) * rows, g * c_per:(g + 1) * c_per] = weight[g * rows:(g + 1) * rows]
    return dense


def alexnet(*, grouped: bool = True, num_classes: int = 1000):
    """AlexNet's layers and widths, input (N, 3, 227, 227); grouped=True
    splits conv2, conv4 and conv5 into 2 groups.

    Two departures from the paper: dropout sits before fc6 and fc7
    (torchvision's order; the paper drops the outputs of fc6 and fc7), and
    LocalResponseNorm divides alpha by the size (Caffe's convention; the
    paper's alpha = 1e-4 multiplies the plain sum of squares).
    """
    checks.boolean("grouped", grouped)
    checks.positive_int("num_classes", num_classes)
    g = {k: (v if grouped else 1) for k, v in ALEXNET_GROUPS.items()}

    def lrn():
        return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

    def conv(c_in, c_out, k, name=None, **kw):
        return nn.Conv2d(c_in, c_out, k, groups=g.get(name, 1), **kw)

    return nn.Sequential(
        conv(3, 96, 11, stride=4), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        conv(96, 256, 5, "conv2", padding=2), nn.ReLU(), lrn(),
        nn.MaxPool2d(3, 2),
        conv(256, 384, 3, padding=1), nn.ReLU(),
        conv(384, 384, 3, "conv4", padding=1), nn.ReLU(),
        conv(384, 256, 3, "conv5", padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, num_classes))


def alexnet_params(*, grouped: bool = True, num_classes: int = 1000) -> dict:
    """Parameters per layer of `alexnet` by formula: {layer name: count}."""
    g = {k: (v if grouped else 1) for k, v in ALEXNET_GROUPS.items()}
    convs = {"conv1": (3, 96, 11, 1), "conv2": (96, 256, 5, g["conv2"]), "conv3": (256, 384, 3, 1),
             "conv4": (384, 384, 3, g["conv4"]), "conv5": (384, 256, 3, g["conv5"])}
    out = {name: grouped_conv_params(ci, co, k, groups=gr) for name, (ci, co, k, gr) in convs.items()}
    for name, (n_in, n_out) in {"fc6": (9216, 4096), "fc7": (4096, 4096), "fc8": (4096, num_classes)}.items():
        out[name] = (n_in + 1) * n_out
    return out


class Block(nn.Module):
    """Two 3 x 3 conv-BN layers; with a shortcut ("A": identity, zero-padded; "B": 1 x 1 projection) it is residual."""

    def __init__(self, c_in: int, c_out: int, *, stride: int, shortcut: str, track_stats: bool):
        super().__init__()
        self.shortcut, self.stride, self.extra = shortcut, stride, c_out - c_in
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out, track_running_stats=track_stats)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, track_running_stats=track_stats)
        if shortcut == "B" and (stride != 1 or c_in != c_out):
            self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(c_out, track_running_stats=track_stats))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut == "none":
            return F.relu(out)
        if hasattr(self, "proj"):
            skip = self.proj(x)
        else:  # option A: subsample, then pad the new channels with zeros (no parameters)
            skip = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra)) if self.extra else skip
        return F.relu(out + skip)


class Net(nn.Module):
    """A CIFAR-style (3 x 3 stem) or ImageNet-style (7 x 7 stem, max pool) network of `Block`s, global pool, linear."""

    def __init__(self, *, blocks=(1, 1, 1), widths=(8, 16, 32), shortcut: str = "A", in_channels: int = 1,
                 num_classes: int = 10, stem: str = "cifar", track_stats: bool = False):
        super().__init__()
        checks.choice("shortcut", shortcut, SHORTCUTS)
        checks.choice("stem", stem, ("cifar", "imagenet"))
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"blocks and widths must have one entry per stage, got {blocks} and {widths}")
        for i, b in enumerate(blocks):
            checks.positive_int(f"blocks[{i}]", b)
        k, s = (3, 1) if stem == "cifar" else (7, 2)
        layers = [nn.Conv2d(in_channels, widths[0], k, stride=s, padding=k // 2, bias=False),
                  nn.BatchNorm2d(widths[0], track_running_stats=track_stats), nn.ReLU()]
        if stem == "imagenet":
            layers.append(nn.MaxPool2d(3, 2, padding=1))
        c = widths[0]
        for stage, (n, w) in enumerate(zip(blocks, widths)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(Block(c, w, stride=stride, shortcut=shortcut, track_stats=track_stats))
                c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)
        self.depth = 2 + 2 * sum(blocks)  # weighted layers: stem conv, 2 per block, linear
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, classes) of K copies with stacked params on their own images x (K, B, C, H, W).

        The K models' channels side by side, (B, K * C, H, W) in channels-last layout: each
        convolution is one grouped convolution (groups = K), each batch norm one F.batch_norm
        over the K * C channels (batch statistics, per model and channel). About 1.7x faster on a
        CPU than vmap of the module for chapter 14's networks; tested equal to each model's forward.
        """
        if any(isinstance(m, nn.BatchNorm2d) and m.track_running_stats for m in self.modules()):
            raise ValueError("stacked_forward uses batch statistics: build the Net with track_stats=False")
        k, b = x.shape[:2]
        h = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:]).contiguous(memory_format=torch.channels_last)

        def conv(name, m, h):
            w = params[name + ".weight"]
            return F.conv2d(h, w.reshape(-1, *w.shape[2:]), None, stride=m.stride, padding=m.padding, groups=k)

        def bn(name, m, h):
            return F.batch_norm(h, None, None, params[name + ".weight"].reshape(-1),
                                params[name + ".bias"].reshape(-1), True, 0.0, m.eps)

        def layer(name, m, h):
            if isinstance(m, nn.Conv2d):
                return conv(name, m, h)
            if isinstance(m, nn.BatchNorm2d):
                return bn(name, m, h)
            if isinstance(m, nn.ReLU):
                return F.relu(h)
            if isinstance(m, nn.MaxPool2d):
                return F.max_pool2d(h, m.kernel_size, m.stride, m.padding)
            if isinstance(m, nn.Sequential):
                for i, sub in enumerate(m):
                    h = layer(f"{name}.{i}", sub, h)
                return h
            if not isinstance(m, Block):
                raise TypeError(f"stacked_forward: no stacked version of {type(m).__name__}")
            out = F.relu(bn(name + ".bn1", m.bn1, conv(name + ".conv1", m.conv1, h)))
            out = bn(name + ".bn2", m.bn2, conv(name + ".conv2", m.conv2, out))
            if m.shortcut == "none":
                return F.relu(out)
            if hasattr(m, "proj"):
                skip = layer(name + ".proj", m.proj, h)
            else:  # option A, per model: subsample, then pad its new channels with zeros
                skip = h[:, :, ::m.stride, ::m.stride] if m.stride > 1 else h
                if m.extra:
                    skip = F.pad(skip.reshape(b, k, -1, *skip.shape[2:]), (0, 0, 0, 0, 0, m.extra))
                    skip = skip.reshape(b, -1, *skip.shape[3:])
            return F.relu(out + skip)

        h = layer("features", self.features, h)
        feat = h.mean((2, 3)).view(b, k, -1).transpose(0, 1)  # (K, B, C)
        return torch.baddbmm(params["fc.bias"].unsqueeze(1), feat, params["fc.weight"].transpose(1, 2))


def cifar_net(*, depth: int, residual: bool, seed: int, widths=(8, 16, 32), in_channels: int = 1,
              num_classes: int = 10) -> Net:
    """The depth = 6n + 2 network of He et al. (sec. 4.2), widths per stage, option-A shortcuts if residual."""
    checks.integer("depth", depth, low=8)
    if (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 32, ...), got {depth}")
    checks.boolean("residual", residual)
    torch.manual_seed(checks.seed(seed))
    n = (depth - 2) // 6
    return Net(blocks=(n, n, n), widths=widths, shortcut="A" if residual else "none",
               in_channels=in_channels, num_classes=num_classes)


def net_params(*, blocks, widths, shortcut: str = "A", in_channels: int = 1, num_classes: int = 10,
               stem: str = "cifar") -> int:
    """Parameters of `Net` by formula: bias-free convs, 2 per BatchNorm channel, projections for "B", linear."""
    checks.choice("shortcut", shortcut, SHORTCUTS)
    k = 3 if stem == "cifar" else 7
    total = in_channels * widths[0] * k * k + 2 * widths[0]
    c = widths[0]
    for stage, (n, w) in enumerate(zip(blocks, widths)):
        for i in range(n):
            total += 9 * c * w + 2 * w + 9 * w * w + 2 * w
            if shortcut == "B" and (c != w or (stage > 0 and i == 0)):
                total += c * w + 2 * w
            c = w
    return total + (c + 1) * num_classes


VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M")  # configuration E of Simonyan and Zisserman (Table 1)


def vgg_params(cfg=VGG19_CFG, *, in_channels: int = 3, num_classes: int = 1000) -> int:
    """Parameters of a VGG net by formula: 3 x 3 convs with biases, then 7 x 7 x 512 -> 4096 -> 4096 -> classes."""
    total, c = 0, in_channels
    for v in cfg:
        if v != "M":
            total, c = total + grouped_conv_params(c, v, 3), v
    return total + (c * 7 * 7 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * num_classes


def layer_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Norm of the cross-entropy gradient of each conv/linear weight, in forward order: (layers,)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               and m.weight.shape[-1] != 1]  # 1 x 1 projections are not layers of the chain
    return torch.stack([w.grad.norm() for w in weights]).detach()


# He et al. (sec. 4.2) at small scale: SGD with momentum, lr / 10 at two milestones, weight decay 1e-4
DEGRADATION_CFG = TrainConfig(steps=200, batch_size=32, optimizer="momentum", lr=0.05, momentum=0.9,
                              weight_decay=1e-4, schedule=Schedule(kind="step", milestones=(100, 150)),
                              eval_every=25)
DEGRADATION_WIDTHS = (4, 8, 16)  # filters per stage: a quarter of the paper's 16, 32, 64 (CPU budget)


def scaled_cfg(cfg: TrainConfig, factor: int) -> TrainConfig:
    """The same recipe `factor` times longer: steps, milestones and evaluation grid all scaled."""
    checks.positive_int("factor", factor)
    sched = cfg.schedule
    if sched.kind == "step":
        sched = replace(sched, milestones=tuple(factor * m for m in sched.milestones))
    return replace(cfg, steps=factor * cfg.steps, schedule=sched, eval_every=factor * cfg.eval_every)


def without_cuts(cfg: TrainConfig) -> TrainConfig:
    """The same recipe at its initial learning rate throughout: the control for the drops at the cuts."""
    return replace(cfg, schedule=Schedule(kind="constant"))


def digits14(x: torch.Tensor) -> torch.Tensor:
    """Digits (N, 1, 28, 28) averaged down to (N, 1, 14, 14), standardized by their own mean and sd."""
    checks.tensor("x", x, ndim=4)
    x = F.avg_pool2d(x, 2)
    return (x - x.mean()) / x.std()


def train_nets(*, depth: int, residual: bool, seeds, x: torch.Tensor, y: torch.Tensor,
               cfg: TrainConfig = DEGRADATION_CFG, widths=DEGRADATION_WIDTHS, device="cpu") -> dict:
    """Train cifar_net(depth, residual) for each seed on the same (x (N, 1, H, W), y (N,)); fit_stacked's history."""
    seeds = [checks.seed(s) for s in seeds]
    models = [cifar_net(depth=depth, residual=residual, seed=s, widths=widths) for s in seeds]
    k = len(seeds)
    return fit_stacked(models, x.expand(k, *x.shape), y.expand(k, *y.shape), cfg=cfg, seeds=seeds, device=device)
