"""Memorization: randomized labels and pixels, small MLP/CNN models, and the finite-sample fit.

Topic module; imports only the core. The models have a `stacked_forward(params, x)` so that
`sweep.fit_stacked` trains many seeds and tasks at once. `interpolating_net` builds, without
training, a two-layer ReLU network with 2n + d weights that fits any n labels exactly.

Used by chapters: 13.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .runtime import seeded, torch_generator
from .sweep import fit_stacked, stacked_forward, stacked_outputs

N_CLASSES = 10


def _relabelling(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows (k,) that corrupt_labels re-labels and the permutation (k,) it applies among them."""
    g = torch_generator(seed)
    rows = torch.randperm(n, generator=g)[:round(fraction * n)]
    return rows, torch.randperm(len(rows), generator=g)


def corrupt_labels(y: torch.Tensor, *, fraction: float, seed: int) -> torch.Tensor:
    """Labels (N,) with a random `fraction` of the rows given a random permutation of their labels.

    fraction = 1 shuffles every label; the class counts never change. A permuted label can land
    on its own class by chance, so about 0.9 * fraction of the labels end up wrong.
    """
    checks.tensor("y", y, ndim=1, dtype=torch.int64)
    fraction = checks.real("fraction", fraction, low=0.0, high=1.0)
    rows, perm = _relabelling(len(y), fraction, checks.seed(seed))
    out = y.clone()
    out[rows] = y[rows[perm]]
    return out


def clean_rows(n: int, *, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices (n - round(fraction n),) of the rows that corrupt_labels leaves untouched."""
    checks.positive_int("n", n)
    fraction = checks.real("fraction", fraction, low=0.0, high=1.0)
    keep = torch.ones(n, dtype=torch.bool)
    keep[_relabelling(n, fraction, checks.seed(seed))[0]] = False
    return keep.nonzero().flatten()


def shuffle_pixels(x: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Images (N, C, H, W) with one fixed random permutation of the H*W pixel positions applied to all."""
    checks.tensor("x", x, ndim=4)
    perm = torch.randperm(x.shape[-2] * x.shape[-1], generator=torch_generator(seed))
    return x.flatten(-2)[..., perm].view_as(x)


def make_task(x, y, x_val, y_val, *, labels: float = 0.0, pixels: bool = False, clean_only: bool = False,
              seed: int):
    """(x, y, x_val, y_val) of one randomized task: a `labels` fraction of training labels shuffled
    (corrupt_labels), and with `pixels` one pixel permutation applied to training and validation images.

    With `clean_only` the task is the control: only the training rows that the same `labels`
    corruption would leave untouched, with their true labels. Validation labels are never
    changed: validation accuracy measures what was learned about digits.
    """
    checks.boolean("pixels", pixels)
    checks.boolean("clean_only", clean_only)
    if pixels:
        x, x_val = shuffle_pixels(x, seed=seed), shuffle_pixels(x_val, seed=seed)
    if clean_only:
        keep = clean_rows(len(y), fraction=labels, seed=seed)
        return x[keep], y[keep], x_val, y_val
    return x, corrupt_labels(y, fraction=labels, seed=seed), x_val, y_val


def train_tasks(make_model, tasks: dict, data, *, seeds, cfg, device, target: float | None = None,
                val_every: int | None = None) -> dict:
    """One model make_model(seed=s) per (task, seed), all trained in one fit_stacked run.

    tasks: {name: make_task keywords}; data: (x, y, x_val, y_val). Returns the history (rows in
    task-major order), the trained models, each row's task and seed, the stacked data, and with
    `target` the LossSnapshot of each model's parameters when its training loss first fell to it.
    With `val_every` (a multiple of cfg.eval_every) the validation split is evaluated only every
    that many steps and after the last: history "val_step" (V,), "val_loss" and "val_acc" (K, V).
    """
    rows = [(name, checks.seed(s)) for name in tasks for s in seeds]
    if not rows:
        raise ValueError("tasks and seeds must not be empty")
    parts = [make_task(*data, **tasks[name], seed=s) for name, s in rows]
    x, y, x_val, y_val = (torch.stack(p) for p in zip(*parts))
    models = [make_model(seed=s) for _, s in rows]
    fwd = stacked_forward(models[0], train=False)
    snap = None if target is None else LossSnapshot(fwd, x.to(device), y.to(device), target=target)
    record, val = snap, dict(x_val=x_val, y_val=y_val)
    if val_every is not None:
        checks.positive_int("val_every", val_every)
        if cfg.eval_every == 0 or val_every % cfg.eval_every:
            raise ValueError(f"val_every must be a multiple of cfg.eval_every = {cfg.eval_every}, got {val_every}")
        val_steps = [s for s in cfg.eval_steps() if s % val_every == 0 or s == cfg.steps]
        record = _SparseValidation(fwd, x_val.to(device), y_val.to(device), cfg.eval_steps(), val_steps, snap,
                                   chunk=getattr(models[0], "stacked_chunk", None))
        val = {}
    hist = fit_stacked(models, x, y, cfg=cfg, seeds=[s for _, s in rows], device=device, record=record, **val)
    if val_every is not None:
        hist["val_step"] = np.array(val_steps)
    return {"hist": hist, "models": models, "task": [n for n, _ in rows], "seed": [s for _, s in rows],
            "data": (x, y, x_val, y_val), "snapshot": snap}


class _SparseValidation:
    """A fit_stacked `record`: validation loss and accuracy at `val_steps` only, plus an optional snapshot."""

    takes_train_loss = True  # passed on to the snapshot

    def __init__(self, forward, x_val, y_val, eval_steps, val_steps, snap, *, chunk=None):
        self.forward, self.x, self.y, self.snap, self.chunk = forward, x_val, y_val, snap, chunk
        self.eval_steps, self.val_steps, self.calls = list(eval_steps), set(val_steps), 0

    def __call__(self, params: dict, train_loss=None) -> dict:
        step, self.calls = self.eval_steps[self.calls], self.calls + 1
        out = {} if self.snap is None else self.snap(params, train_loss=train_loss)
        if step in self.val_steps:
            logits = stacked_outputs(self.forward, params, {}, self.x, chunk=self.chunk)
            loss = F.cross_entropy(logits.flatten(0, 1), self.y.flatten(), reduction="none")
            out["val_loss"] = loss.view(self.y.shape).mean(1)
            out["val_acc"] = (logits.argmax(-1) == self.y).double().mean(1)
        return out


class MLP(nn.Module):
    """flatten -> linear(d -> hidden) -> ReLU -> [dropout] -> linear(hidden -> 10); (N, 1, H, W) -> (N, 10)."""

    stacked_chunk = 2048  # evaluation rows per stacked call: whole splits (see sweep.stacked_outputs)

    def __init__(self, *, inputs: int = 784, hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        self.p = checks.probability("dropout", dropout)
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.fc1(x.flatten(1))), self.p, self.training)
        return self.fc2(h)

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, 10) of K models with stacked params on their own images x (K, B, 1, H, W)."""
        h = torch.bmm(params["fc1.weight"], x.flatten(2).transpose(1, 2)).transpose(1, 2)
        h = F.dropout(F.relu(h + params["fc1.bias"].unsqueeze(1)), self.p, self.training)
        return torch.baddbmm(params["fc2.bias"].unsqueeze(1), h, params["fc2.weight"].transpose(1, 2))


class CNN(nn.Module):
    """conv(1 -> F, 6x6, stride 2, padding 2) -> ReLU -> linear(F*14*14 -> 10); (N, 1, 28, 28) -> (N, 10)."""

    def __init__(self, *, filters: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, 6, stride=2, padding=2)
        self.fc = nn.Linear(filters * 14 * 14, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1))

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, 10) of K models on their own images x (K, B, 1, 28, 28), one grouped conv."""
        w, b = params["conv.weight"], params["conv.bias"]
        k, n, f = x.shape[0], x.shape[1], w.shape[1]
        xs = x.reshape(k, n, 28, 28).transpose(0, 1)  # (B, K, 28, 28): model k is group k
        maps = F.conv2d(xs, w.reshape(k * f, 1, 6, 6), b.reshape(-1), stride=2, padding=2, groups=k)
        h = F.relu(maps).reshape(n, k, -1).transpose(0, 1)  # (K, B, F*14*14)
        return torch.baddbmm(params["fc.bias"].unsqueeze(1), h, params["fc.weight"].transpose(1, 2))


def make_mlp(*, seed: int, hidden: int = 128, dropout: float = 0.0, inputs: int = 784) -> MLP:
    """An MLP with torch's default initialization drawn from `seed`."""
    checks.positive_int("hidden", hidden)
    checks.positive_int("inputs", inputs)
    return seeded(lambda: MLP(inputs=inputs, hidden=hidden, dropout=dropout), seed=checks.seed(seed))


def make_cnn(*, seed: int, filters: int = 8) -> CNN:
    """A CNN with torch's default initialization drawn from `seed`."""
    checks.positive_int("filters", filters)
    return seeded(lambda: CNN(filters=filters), seed=checks.seed(seed))


def steps_to_fit(steps, acc, *, level: float = 1.0) -> np.ndarray:
    """First evaluation step (K,) at which accuracy acc (K, T) reaches `level`; nan if never."""
    steps, acc = np.asarray(steps), np.asarray(acc, dtype=float)
    if acc.ndim != 2 or acc.shape[1] != len(steps):
        raise ValueError(f"acc must be (K, T) with T = len(steps) = {len(steps)}, got {acc.shape}")
    checks.real("level", level, low=0.0, high=1.0)
    reached = acc >= level - 1e-12
    first = reached.argmax(1)
    return np.where(reached.any(1), steps[first], np.nan)


class LossSnapshot:
    """A `record` for fit_stacked: keeps each model's parameters the first time its training loss <= target.

    `forward` is sweep.stacked_forward(model, train=False); x (K, N, ...) and y (K, N) the training
    data. After training, `params[k]` is model k's {name: tensor} (None if never reached) and
    `step_loss[k]` its training loss there. Models past the target are not evaluated again
    (their recorded "snapshot_loss" is nan from then on). fit_stacked passes it the training
    losses it has just evaluated (cfg.loss: cross-entropy for the chapter's runs), which are then
    not computed again; called without them, it evaluates the models itself.
    """

    takes_train_loss = True

    def __init__(self, forward, x: torch.Tensor, y: torch.Tensor, *, target: float):
        self.forward, self.x, self.y = forward, x, y
        self.target = checks.positive("target", target)
        self.params = [None] * x.shape[0]
        self.step_loss = [float("nan")] * x.shape[0]

    def __call__(self, params: dict, train_loss: torch.Tensor | None = None) -> dict:
        todo = [k for k, p in enumerate(self.params) if p is None]  # only models still above the target
        loss = torch.full((len(self.params),), float("nan"))
        if todo and train_loss is not None:
            loss[todo] = train_loss.float().cpu()[todo]
        elif todo:
            idx = torch.tensor(todo, device=self.x.device)
            logits = self.forward({n: p[idx] for n, p in params.items()}, {}, self.x[idx])
            part = F.cross_entropy(logits.flatten(0, 1), self.y[idx].flatten(), reduction="none")
            loss[todo] = part.view(len(todo), -1).mean(1).cpu()
        for k in todo:
            if loss[k] <= self.target:
                self.params[k] = {n: p[k].detach().clone() for n, p in params.items()}
                self.step_loss[k] = float(loss[k])
        return {"snapshot_loss": loss}


def load_params(model: nn.Module, params: dict) -> nn.Module:
    """`model` with its parameters replaced by `params` {name: tensor}; returns the model."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model


def interpolating_net(x: torch.Tensor, y: torch.Tensor, *, seed: int) -> dict:
    """Weights a (d,), b (n,), w (n, ...) of f(x) = relu(x a - b) w that fits y (n, ...) on x (n, d) exactly.

    The finite-sample construction: project the points on a random direction a, put one bias
    between each pair of consecutive projections, and solve the lower-triangular system for w.
    """
    checks.tensor("x", x, ndim=2)
    checks.tensor("y", y)
    checks.same_length(x=x, y=y)
    x = x.double()
    a = torch.randn(x.shape[1], generator=torch_generator(seed), dtype=torch.float64)
    z = x @ a
    zs, order = torch.sort(z)
    if len(z) > 1 and (zs[1:] - zs[:-1]).min() <= 0:
        raise ValueError("x: two points have the same projection (are they duplicates?)")
    b = biases_below(zs)
    lower = torch.relu(zs[:, None] - b[None, :])  # (n, n), lower triangular: z_(i) > b_j iff j <= i
    target = y.double()[order]
    w = torch.linalg.solve_triangular(lower, target.reshape(len(z), -1), upper=False)
    return {"a": a, "b": b, "w": w.reshape(target.shape)}


def biases_below(zs: torch.Tensor) -> torch.Tensor:
    """Biases b (n,) with b_1 < z_1 < b_2 < z_2 < ... < b_n < z_n for sorted projections zs (n,)."""
    return torch.cat([zs[:1] - 1.0, (zs[1:] + zs[:-1]) / 2])


def interpolating_predict(net: dict, x: torch.Tensor) -> torch.Tensor:
    """Outputs (n, ...) of the network `interpolating_net` returned, on x (n, d)."""
    checks.tensor("x", x, ndim=2)
    h = torch.relu(x.double() @ net["a"][:, None] - net["b"][None, :])
    return (h @ net["w"].reshape(len(net["b"]), -1)).reshape(len(x), *net["w"].shape[1:])


def weight_count(net: dict) -> int:
    """Number of weights of an interpolating net with a scalar output: d + n + n = 2n + d."""
    return sum(v.numel() for v in net.values())
