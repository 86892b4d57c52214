"""Dropout on MNIST: a label-revealing cheat pattern, dense nets of several shapes, a small CNN, selection bias."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .runtime import numpy_rng, torch_generator

N_CLASSES = 10
IMAGE_SIDE = 28

# the three dense nets of the seed problem set (hidden widths, drop probability after each hidden layer)
DENSE_SHAPES = {
    "2D": ((60, 40), (0.1, 0.0)),
    "2E": ((120, 80), (0.2, 0.1)),
    "2F": ((400, 400, 100), (0.5, 0.3, 0.1)),
}


def _check_prob(name, p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


def _check_images(x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"x must have shape (N, 1, 28, 28), got {tuple(x.shape)}")


def _check_labels(name, y, n):
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 torch.Tensor")
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= N_CLASSES):
        raise ValueError(f"{name} must hold labels in [0, {N_CLASSES - 1}]")


def cheat_columns(label: int, *, size: int = 1) -> slice:
    """Columns of the top-row square that encodes `label` (0-9): ten squares side by side, centred."""
    if size not in (1, 2):
        raise ValueError(f"size must be 1 or 2 (ten squares must fit in 28 columns), got {size!r}")
    if not 0 <= label < N_CLASSES:
        raise ValueError(f"label must be in [0, 9], got {label!r}")
    start = (IMAGE_SIDE - N_CLASSES * size) // 2 + label * size
    return slice(start, start + size)


def add_cheat(x: torch.Tensor, shown: torch.Tensor, *, size: int = 1, value: float = 1.0) -> torch.Tensor:
    """Copy of images x (N, 1, 28, 28) with a bright size x size square in the top rows at the position of `shown` (N,)."""
    _check_images(x)
    _check_labels("shown", shown, len(x))
    out = x.clone()
    for k in range(N_CLASSES):
        rows = (shown == k).nonzero().flatten()
        # the top rows of centred MNIST digits are (almost always) blank, so the square hides no ink
        out[rows, 0, :size, cheat_columns(k, size=size)] = value
    return out


def wrong_labels(y: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Labels (N,) uniform over the nine classes that differ from y (N,)."""
    _check_labels("y", y, len(y))
    shift = torch.randint(1, N_CLASSES, y.shape, generator=torch_generator(seed))
    return (y + shift) % N_CLASSES


def conflict_set(x: torch.Tensor, y: torch.Tensor, *, size: int = 1, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images x (N, 1, 28, 28) whose cheat shows a wrong label; returns (images, shown labels (N,))."""
    shown = wrong_labels(y, seed=seed)
    return add_cheat(x, shown, size=size), shown


def _seeded(build, seed: int) -> nn.Sequential:
    """build() with torch's default initialization drawn from `seed` (the caller's global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_check_seed(seed))
        return build()


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


def mlp(*, hidden: int = 256, p_input: float = 0.0, p_hidden: float = 0.0, seed: int) -> nn.Sequential:
    """784 -> hidden -> 10 ReLU net, dropout p_input on the pixels and p_hidden on the hidden units."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be a positive int, got {hidden!r}")
    p_input, p_hidden = _check_prob("p_input", p_input), _check_prob("p_hidden", p_hidden)
    return _seeded(lambda: nn.Sequential(nn.Flatten(), nn.Dropout(p_input), nn.Linear(IMAGE_SIDE**2, hidden),
                                         nn.ReLU(), nn.Dropout(p_hidden), nn.Linear(hidden, N_CLASSES)), seed)


def dense_net(widths: tuple[int, ...], drops: tuple[float, ...], *, seed: int) -> nn.Sequential:
    """784 -> widths[0] -> ... -> 10 ReLU net with dropout drops[i] after hidden layer i."""
    if not widths or len(widths) != len(drops):
        raise ValueError(f"widths and drops must be non-empty and of equal length, got {widths!r}, {drops!r}")
    for i, (w, p) in enumerate(zip(widths, drops)):
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"widths[{i}] must be a positive int, got {w!r}")
        _check_prob(f"drops[{i}]", p)

    def build():
        layers, n_in = [nn.Flatten()], IMAGE_SIDE**2
        for w, p in zip(widths, drops):
            layers += [nn.Linear(n_in, w), nn.ReLU()] + ([nn.Dropout(p)] if p > 0 else [])
            n_in = w
        return nn.Sequential(*layers, nn.Linear(n_in, N_CLASSES))

    return _seeded(build, seed)


def dense_param_count(widths: tuple[int, ...], *, n_in: int = IMAGE_SIDE**2, n_out: int = N_CLASSES) -> int:
    """Weights plus biases of the dense net n_in -> widths -> n_out: sum of (fan_in + 1) * fan_out."""
    sizes = (n_in, *widths, n_out)
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def param_count(model: nn.Module) -> int:
    """Number of trainable parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def small_cnn(*, p: float = 0.0, batch_norm: bool = False, width: int = 8, seed: int) -> nn.Sequential:
    """(N, 1, 28, 28) -> logits (N, 10): two stride-2 convs (width, 2 width channels), dropout p after each block."""
    p = _check_prob("p", p)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")

    def block(c_in, c_out, k):
        conv = nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2, bias=not batch_norm)
        norm = [nn.BatchNorm2d(c_out)] if batch_norm else []  # BN's shift makes the conv bias redundant
        return [conv, *norm, nn.ReLU(), nn.Dropout(p)]

    return _seeded(lambda: nn.Sequential(*block(1, width, 5), *block(width, 2 * width, 3), nn.Flatten(),
                                         nn.Linear(2 * width * 7 * 7, N_CLASSES)), seed)


def validation_split(x: torch.Tensor, y: torch.Tensor, *, n_val: int, seed: int):
    """Stratified split of (x (N, ...), y (N,)) into (x_fit, y_fit, x_val, y_val) with n_val validation rows."""
    if isinstance(n_val, bool) or not isinstance(n_val, int) or not 0 < n_val < len(y):
        raise ValueError(f"n_val must be an int in [1, {len(y) - 1}], got {n_val!r}")
    rng = numpy_rng(seed)
    labels = y.numpy()
    per_class = np.bincount(labels, minlength=N_CLASSES)
    quota = np.floor(per_class * n_val / len(y)).astype(int)
    # hand the rounding remainder to the classes with the largest fractional parts
    rest = np.argsort(-(per_class * n_val / len(y) - quota), kind="stable")[: n_val - quota.sum()]
    quota[rest] += 1
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: quota[c]] for c in range(N_CLASSES)])
    mask = np.zeros(len(y), bool)
    mask[val] = True
    keep, val = torch.from_numpy(np.flatnonzero(~mask)), torch.from_numpy(np.sort(val))
    return x[keep], y[keep], x[val], y[val]


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, *, device, batch_size: int = 1000) -> torch.Tensor:
    """Arg-max class (N,) of `model` in eval mode on x (N, ...), on the CPU."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def cheat_reliance(model: nn.Module, x_conflict: torch.Tensor, y: torch.Tensor, shown: torch.Tensor, *,
                   device) -> dict[str, float]:
    """On images whose cheat shows a wrong label: accuracy (true label) and follow rate (prediction == shown)."""
    pred = predictions(model, x_conflict, device=device)
    return {"accuracy": (pred == y).double().mean().item(), "follows": (pred == shown).double().mean().item()}


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, x: torch.Tensor, *, n_masks: int, seed: int, device) -> torch.Tensor:
    """Class probabilities (N, 10) averaged over n_masks sampled thinned networks (dropout on, all else eval)."""
    if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 1:
        raise ValueError(f"n_masks must be a positive int, got {n_masks!r}")
    was_training = model.training
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()  # only the masks are sampled; batch-norm statistics stay frozen
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    total = torch.zeros(len(x), N_CLASSES)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for _ in range(n_masks):
            total += torch.softmax(model(x.to(device)), 1).cpu()
    model.train(was_training)
    return total / n_masks


def thinned_ensemble(weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, *, q: float):
    """Softmax layer (C, d) on inputs h (d,) with dropout q on h, no rescaling: (arithmetic, geometric) mean
    over all 2**d masks of the class probabilities (C,), each mask weighted by its probability."""
    q = _check_prob("q", q)
    d = h.shape[0]
    if weight.shape[1] != d or bias.shape != (weight.shape[0],) or not 1 <= d <= 16:
        raise ValueError(f"need weight (C, d), bias (C,), h (d,) with 1 <= d <= 16, got "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}, {tuple(h.shape)}")
    masks = ((torch.arange(2**d).unsqueeze(1) >> torch.arange(d)) & 1).to(h.dtype)  # (2**d, d)
    prob = ((1 - q) ** masks.sum(1)) * (q ** (d - masks.sum(1)))
    log_p = torch.log_softmax((masks * h) @ weight.T + bias, dim=1)  # (2**d, C)
    arithmetic = (prob.unsqueeze(1) * log_p.exp()).sum(0)
    geometric = torch.softmax((prob.unsqueeze(1) * log_p).sum(0), dim=0)  # renormalized
    return arithmetic, geometric


def selection_optimism(correct: np.ndarray, *, m: int, n_draws: int, seed: int) -> float:
    """Mean over n_draws random m-subsets of (subset accuracy - pool accuracy) of the candidate best on the subset.

    `correct` (K candidates, N examples) is 0/1. By Jensen, the expectation is >= 0: picking the best of
    noisy scores inflates the winner's score.
    """
    correct = np.asarray(correct, dtype=float)
    if correct.ndim != 2 or not np.isin(correct, (0.0, 1.0)).all():
        raise ValueError("correct must be a 0/1 array of shape (K candidates, N examples)")
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= correct.shape[1]:
        raise ValueError(f"m must be an int in [1, {correct.shape[1]}], got {m!r}")
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive int, got {n_draws!r}")
    rng = numpy_rng(seed)
    pool = correct.mean(1)
    gaps = np.empty(n_draws)
    for i in range(n_draws):
        sub = correct[:, rng.choice(correct.shape[1], m, replace=False)].mean(1)
        best = int(np.argmax(sub))
        gaps[i] = sub[best] - pool[best]
    return float(gaps.mean())
