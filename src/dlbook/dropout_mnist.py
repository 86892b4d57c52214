"""Dropout on real digits (chapter 8): a cheat pixel, dense nets, the ensemble view.

Models, the cheat pattern, the thinned-ensemble checks and the chapter's experiments (all seeds
of one shape trained at once with `sweep.fit_stacked`); the CNN and the choice of its dropout
rate are in `dropout_cnn`. Images are (N, 1, 28, 28) in [0, 1].

Used by chapters: 8.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import checks
from .metrics import predictions
from .runtime import global_seed, numpy_rng, seeded, torch_generator
from .sweep import fit_stacked
from .train import TrainConfig

N_CLASSES = 10
IMAGE_SIDE = 28

# Three dense ReLU nets: hidden widths, and the drop rate after each hidden layer.
NETS = {
    "narrow 60-40": ((60, 40), (0.1, 0.0)),
    "wide 120-80": ((120, 80), (0.2, 0.1)),
    "deep 400-400-100": ((400, 400, 100), (0.5, 0.3, 0.1)),
}


def _images(x):
    checks.tensor("x", x, ndim=4)
    if tuple(x.shape[1:]) != (1, IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"x must have shape (N, 1, 28, 28), got {tuple(x.shape)}")


def _labels(name, y, n):
    checks.tensor(name, y, ndim=1, dtype=torch.int64)
    if len(y) != n:
        raise ValueError(f"{name} must have length {n}, got {len(y)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= N_CLASSES):
        raise ValueError(f"{name} must hold labels in [0, {N_CLASSES - 1}]")


def cheat_columns(label: int, *, size: int = 1) -> slice:
    """Columns of the top-row square that encodes `label` (0-9): ten squares side by side."""
    checks.integer("size", size, low=1, high=2)  # ten squares must fit in 28 columns
    checks.integer("label", label, low=0, high=N_CLASSES - 1)
    start = (IMAGE_SIDE - N_CLASSES * size) // 2 + label * size
    return slice(start, start + size)


def add_cheat(x: torch.Tensor, shown: torch.Tensor, *, size: int = 1) -> torch.Tensor:
    """Copy of x (N, 1, 28, 28) with a white size x size square at the column of `shown` (N,)."""
    _images(x)
    _labels("shown", shown, len(x))
    out = x.clone()
    for k in range(N_CLASSES):
        rows = (shown == k).nonzero().flatten()
        # the top rows of centred MNIST digits are (almost) blank: the square hides no ink
        out[rows, 0, :size, cheat_columns(k, size=size)] = 1.0
    return out


def wrong_labels(y: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Labels (N,) uniform over the nine classes that differ from y (N,)."""
    _labels("y", y, len(y))
    shift = torch.randint(1, N_CLASSES, y.shape, generator=torch_generator(seed))
    return (y + shift) % N_CLASSES


def conflict_set(x, y, *, size: int = 1, seed: int):
    """Images x (N, 1, 28, 28) whose cheat shows a wrong label: (images, shown labels (N,))."""
    shown = wrong_labels(y, seed=seed)
    return add_cheat(x, shown, size=size), shown


def reliance(model, x, y, shown, *, size: int = 1, device) -> dict:
    """Accuracy on x (N, 1, 28, 28) without the cheat ("clean"), with it
    showing y ("consistent") or `shown` ("flipped"); and the follow rate:
    the fraction of flipped images predicted as the label they show."""
    _labels("shown", shown, len(y))
    pred = {k: predictions(model, xs, device=device) for k, xs in (
        ("clean", x), ("consistent", add_cheat(x, y, size=size)),
        ("flipped", add_cheat(x, shown, size=size)))}
    out = {k: (v == y).double().mean().item() for k, v in pred.items()}
    follows = (pred["flipped"] == shown).double().mean().item()
    return out | {"follows": follows}


def mlp(*, hidden: int = 64, p_input: float = 0.0, p_hidden: float = 0.0, seed: int):
    """784 -> hidden -> 10 ReLU net; drop rate p_input on the pixels, p_hidden on the units."""
    checks.positive_int("hidden", hidden)
    p_input = checks.probability("p_input", p_input)
    p_hidden = checks.probability("p_hidden", p_hidden)
    return seeded(lambda: StackedNet(
        nn.Flatten(), nn.Dropout(p_input), nn.Linear(IMAGE_SIDE**2, hidden), nn.ReLU(),
        nn.Dropout(p_hidden), nn.Linear(hidden, N_CLASSES)), seed=seed)


def dense_net(widths, drops, *, seed: int) -> nn.Sequential:
    """784 -> widths[0] -> ... -> 10 ReLU net with drop rate drops[i] after hidden layer i."""
    if not widths or len(widths) != len(drops):
        raise ValueError(f"widths and drops must be non-empty and of equal length, "
                         f"got {widths!r}, {drops!r}")
    for i, (w, p) in enumerate(zip(widths, drops)):
        checks.positive_int(f"widths[{i}]", w)
        checks.probability(f"drops[{i}]", p)

    def build():
        layers, n_in = [nn.Flatten()], IMAGE_SIDE**2
        for w, p in zip(widths, drops):
            # a Dropout(0) layer is kept so that nets with and without dropout share their shapes
            layers += [nn.Linear(n_in, w), nn.ReLU(), nn.Dropout(p)]
            n_in = w
        return StackedNet(*layers, nn.Linear(n_in, N_CLASSES))

    return seeded(build, seed=seed)


def dense_param_count(widths, *, n_in: int = 784, n_out: int = 10) -> int:
    """Weights and biases of the net n_in -> widths -> n_out."""
    sizes = (n_in, *widths, n_out)
    # a layer with a inputs and b outputs: a * b weights and b biases
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def inverted_dropout(h: torch.Tensor, p: float) -> torch.Tensor:
    """h (any shape) with each entry zeroed with probability p, survivors times 1 / (1 - p)."""
    # uniform draws compared with p: on a CPU faster than nn.Dropout's Bernoulli sampler
    # one mask of 0 and 1 / (1 - p), then one product: the same values as (h * keep) / (1 - p)
    # with one pass over h fewer
    return h * (torch.rand_like(h) >= p).to(h.dtype).mul_(1 / (1 - p)) if p > 0 else h


class StackedNet(nn.Sequential):
    """nn.Sequential (Flatten, Linear, Conv2d, ReLU, Dropout) with a stacked forward for
    `sweep.fit_stacked`: K copies run with batched products, each with its own masks."""

    @property
    def stacked_chunk(self):
        """Evaluation rows per stacked call: whole splits for dense nets (their cost is reading the
        weights: about 2x faster), the sweep's small cache-sized chunks for convolutional ones."""
        return None if any(isinstance(m, nn.Conv2d) for m in self) else 2048

    def stacked_forward(self, params, x):
        """Outputs (K, B, 10) of K models, params {name: (K, ...)}, on x (K, B, 1, 28, 28)."""
        h = x
        for i, layer in enumerate(self):
            w, b = params.get(f"{i}.weight"), params.get(f"{i}.bias")
            if isinstance(layer, nn.Conv2d):  # K small convolutions beat one grouped one
                h = torch.stack([nn.functional.conv2d(
                    h[k], w[k], None if b is None else b[k], stride=layer.stride,
                    padding=layer.padding) for k in range(len(h))])
            elif isinstance(layer, nn.Linear):
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            elif isinstance(layer, nn.Dropout):
                h = inverted_dropout(h, layer.p) if layer.training else h
            elif isinstance(layer, nn.ReLU):
                h = torch.relu(h)
            elif isinstance(layer, nn.Flatten):
                h = h.flatten(2)  # (K, B, C, H, W) -> (K, B, C * H * W)
            else:
                raise TypeError(f"stacked_forward: no stacked rule for {type(layer).__name__}")
        return h


def validation_split(x, y, *, n_val: int, seed: int):
    """Stratified split of (x (N, ...), y (N,)) into (x_fit, y_fit, x_val, y_val)."""
    checks.integer("n_val", n_val, low=1, high=len(y) - 1)
    rng = numpy_rng(seed)
    labels = y.numpy()
    per_class = np.bincount(labels, minlength=N_CLASSES)
    share = per_class * n_val / len(y)
    quota = np.floor(share).astype(int)
    # hand the rounding remainder to the classes with the largest fractional parts
    quota[np.argsort(-(share - quota), kind="stable")[: n_val - quota.sum()]] += 1
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: quota[c]]
                          for c in range(N_CLASSES)])
    keep = torch.from_numpy(np.setdiff1d(np.arange(len(y)), val))
    val = torch.from_numpy(np.sort(val))
    return x[keep], y[keep], x[val], y[val]


def stratified_subset(x, y, *, n: int, seed: int):
    """n examples (x (n, ...), y (n,)) of (x (N, ...), y (N,)), class proportions kept."""
    *_, x_sub, y_sub = validation_split(x, y, n_val=n, seed=seed)
    return x_sub, y_sub


@torch.no_grad()
def mc_dropout_probs(model, x, *, n_masks: int, seed: int, device):
    """Running averages (n_masks, N, 10): row k-1 holds the class probabilities on x (N, ...)
    averaged over the first k thinned nets (dropout on, everything else in evaluation mode)."""
    checks.positive_int("n_masks", n_masks)
    was_training = model.training
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()  # sample masks; batch-norm statistics stay frozen
    total = torch.zeros(len(x), N_CLASSES, dtype=torch.float64)
    out = torch.empty(n_masks, len(x), N_CLASSES, dtype=torch.float64)
    with global_seed(seed, device):
        for k in range(n_masks):
            total += torch.softmax(model(x.to(device)), 1).double().cpu()
            out[k] = total / (k + 1)
    model.train(was_training)
    return out


def thinned_ensemble(weight, bias, h, *, p: float):
    """Softmax layer weight (C, d), bias (C,) on inputs h (d,), drop rate p on h, no rescaling:
    (arithmetic, normalized geometric) mean over all 2**d masks of the probabilities (C,)."""
    p = checks.probability("p", p)
    d = h.shape[0]
    if weight.shape[1] != d or bias.shape != (weight.shape[0],) or not 1 <= d <= 16:
        raise ValueError(f"need weight (C, d), bias (C,), h (d,) with 1 <= d <= 16, got "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}, {tuple(h.shape)}")
    masks = ((torch.arange(2**d).unsqueeze(1) >> torch.arange(d)) & 1).to(h.dtype)
    kept = masks.sum(1)
    prob = (1 - p) ** kept * p ** (d - kept)  # (2**d,) probability of each mask
    log_p = torch.log_softmax((masks * h) @ weight.T + bias, dim=1)  # (2**d, C)
    arithmetic = (prob.unsqueeze(1) * log_p.exp()).sum(0)
    geometric = torch.softmax((prob.unsqueeze(1) * log_p).sum(0), dim=0)
    return arithmetic, geometric


# The chapter's experiments: all seeds of one shape trained at once (sweep.fit_stacked).

def _rep(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.unsqueeze(0).expand(k, *t.shape)


def cheat_experiment(x, y, x_test, y_test, *, seeds, cfg: TrainConfig, hidden: int = 64,
                     rate: float = 0.5, size: int = 1, device):
    """The design {clean, cheat} training images x {no, input, hidden dropout at `rate`}.

    Returns (rows: one dict per run with `reliance`, curves: {(data, dropout): follow rate
    on the flipped test images (seeds, evaluations)} and "step").
    """
    seeds = [checks.seed(s) for s in seeds]
    x_flip, shown = conflict_set(x_test, y_test, size=size, seed=2024)
    x_cheat = add_cheat(x, y, size=size)
    drops = {"no dropout": {}, "input dropout": {"p_input": rate},
             "hidden dropout": {"p_hidden": rate}}
    k, rows, curves = len(seeds), [], {}
    # clean and cheat runs of one kind of dropout share a shape: one stacked run of 2k nets
    x_fit = torch.cat([_rep(x, k), _rep(x_cheat, k)])
    for drop_name, kw in drops.items():
        models = [mlp(hidden=hidden, seed=s, **kw) for s in seeds + seeds]
        # validation labels are the labels the pixel shows: "val_acc" is the follow rate
        with global_seed(seeds[0], device):  # stacked dropout masks: global generator
            hist = fit_stacked(models, x_fit, _rep(y, 2 * k), cfg=cfg, seeds=seeds + seeds,
                               device=device, x_val=_rep(x_flip, 2 * k),
                               y_val=_rep(shown, 2 * k))
        for j, data_name in enumerate(("clean", "cheat")):
            curves[data_name, drop_name] = hist["val_acc"][j * k:(j + 1) * k]
            for s, m in zip(seeds, models[j * k:(j + 1) * k]):
                rows.append({"training images": data_name, "dropout": drop_name, "seed": s}
                            | reliance(m, x_test, y_test, shown, size=size, device=device))
    return rows, curves | {"step": hist["step"]}


def dense_experiment(x, y, x_test, y_test, *, seeds, cfg, nets=None, device):
    """Each net of `nets` (default NETS) with its drop rates and with none, over `seeds`;
    `cfg` is one TrainConfig or {net name: TrainConfig} (budgets per net).

    Returns (rows: net, dropout, seed, final train/test accuracy; curves {(net, dropout):
    {"train", "test", "train loss": (seeds, evaluations), "step"}}; models {(net, dropout): [...]}).
    """
    seeds = [checks.seed(s) for s in seeds]
    nets = nets or NETS
    cfgs = cfg if isinstance(cfg, dict) else {name: cfg for name in nets}
    if set(cfgs) != set(nets) or not all(isinstance(c, TrainConfig) for c in cfgs.values()):
        raise TypeError(f"cfg must be a TrainConfig or a dict of one per net {sorted(nets)}")
    k, rows, curves, models = len(seeds), [], {}, {}
    for name, (widths, drops) in nets.items():
        for dropout in (False, True):
            ms = [dense_net(widths, drops if dropout else (0.0,) * len(drops), seed=s)
                  for s in seeds]
            with global_seed(seeds[0], device):  # stacked dropout masks: global generator
                hist = fit_stacked(ms, _rep(x, k), _rep(y, k), cfg=cfgs[name], seeds=seeds,
                                   device=device, x_val=_rep(x_test, k), y_val=_rep(y_test, k))
            curves[name, dropout] = {"train": hist["train_acc"], "test": hist["val_acc"],
                                     "train loss": hist["train_loss"], "step": hist["step"]}
            models[name, dropout] = ms
            rows += [{"net": name, "dropout": dropout, "seed": s, "train acc": tr, "test acc": te}
                     for s, tr, te in zip(seeds, hist["train_acc"][:, -1], hist["val_acc"][:, -1])]
    return rows, curves, models
