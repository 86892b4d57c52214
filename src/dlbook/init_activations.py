"""Initialization, activations and dead units: 2-D toy data, small MLPs, dead-unit counts, logic gates.

Topic module of chapter 1. Training goes through `dlbook.sweep.fit_stacked` / `dlbook.train.fit`;
this module only builds data and models and measures them. The logic-gate part is exact: inputs
are enumerated, weights are small integers, and a one-unit impossibility comes with a Farkas
certificate that integer arithmetic verifies.

Used by chapters: 1.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks
from .metrics import evaluate
from .runtime import seeded, torch_generator
from .sweep import fit_stacked
from .train import TrainConfig

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid}
INITS = ("random", "zero")


def moons(n: int, *, seed: int, noise: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles: x (n, 2) float32, labels y (n,) int64, n // 2 of class 1."""
    checks.positive_int("n", n)
    checks.nonnegative("noise", noise)
    g = torch_generator(seed)
    y = (torch.arange(n) < n // 2).long()[torch.randperm(n, generator=g)]
    t = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    upper = torch.stack([torch.cos(t), torch.sin(t)], 1)              # class 0
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)     # class 1
    x = torch.where(y[:, None] == 1, lower, upper)
    x = x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return (x - torch.tensor([0.5, 0.25], dtype=torch.float64)).float(), y


class MLP(nn.Module):
    """Fully connected net widths[0] -> ... -> widths[-1], one activation after each hidden layer."""

    def __init__(self, widths: tuple[int, ...], activation: str):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)

    def preactivations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activations (N, width) of each hidden layer on x (N, widths[0])."""
        out = []
        for layer in self.layers[:-1]:
            out.append(layer(x))
            x = self.act(out[-1])
        return out

    def stacked_forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        """Outputs (K, B, widths[-1]) of K stacked copies (torch.func.stack_module_state) on x (K, B, widths[0])."""
        last = len(self.layers) - 1
        for i in range(last + 1):
            w, b = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            x = self.act(x) if i < last else x
        return x


def mlp(*, widths: tuple[int, ...] = (2, 32, 2), activation: str = "relu",
        init: str = "random", seed: int) -> MLP:
    """An MLP with torch's default (uniform, fan-in scaled) init from `seed`, or every parameter zero."""
    if not isinstance(widths, tuple) or len(widths) < 2:
        raise TypeError(f"widths must be a tuple of at least two ints, got {widths!r}")
    for i, w in enumerate(widths):
        checks.positive_int(f"widths[{i}]", w)
    checks.choice("activation", activation, tuple(ACTIVATIONS))
    checks.choice("init", init, INITS)
    model = seeded(lambda: MLP(widths, activation), seed=seed)
    if init == "zero":
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    return model


@torch.no_grad()
def dead_units(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden layer, a bool mask (width,): the unit's pre-activation is <= 0 on every row of x."""
    checks.tensor("x", x, ndim=2)
    return [(z <= 0).all(0).cpu() for z in model.preactivations(x.to(_device(model)))]


def unit_gradients(model: MLP, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden layer, the norm (width,) of the cross-entropy gradient on (x, y) w.r.t. each unit's
    incoming weights and bias, and its outgoing weights."""
    checks.same_length(x=x, y=y)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x.to(_device(model))), y.to(_device(model))).backward()
    out = []
    for layer, nxt in zip(model.layers[:-1], model.layers[1:]):
        g = torch.cat([layer.weight.grad, layer.bias.grad[:, None], nxt.weight.grad.T], 1)
        out.append(g.norm(dim=1).cpu())
    model.zero_grad(set_to_none=True)
    return out


def fit_seeds(models, x, y, *, cfg: TrainConfig, seeds, device, x_val=None, y_val=None) -> dict:
    """fit_stacked of K models on one shared data set x (N, ...), y (N,) (and validation set)."""
    k = len(models)
    val = {} if x_val is None else {"x_val": x_val.expand(k, *x_val.shape),
                                    "y_val": y_val.expand(k, *y_val.shape)}
    return fit_stacked(models, x.expand(k, *x.shape), y.expand(k, *y.shape), cfg=cfg,
                       seeds=seeds, device=device, **val)


def sgd_in_order(models, x, y, *, lr: float, seeds, device) -> list[list[torch.Tensor]]:
    """Plain SGD, batch size 1: one pass over the class-0 examples, then one over the class-1
    examples. Trains `models` in place; returns each model's dead masks after the first pass."""
    after_first = []
    for label in (0, 1):
        part = x[y == label]
        if len(part) == 0:
            raise ValueError(f"y has no examples of class {label}")
        cfg = TrainConfig(steps=len(part), batch_size=1, optimizer="sgd", lr=lr)
        fit_seeds(models, part, y[y == label], cfg=cfg, seeds=seeds, device=device)
        if label == 0:
            after_first = [dead_units(m, x) for m in models]
    return after_first


def dead_unit_experiment(x, y, *, lr: float, seeds, device) -> list[dict]:
    """Per seed: dead first-layer units of a 2-32-2 ReLU net at init, after SGD on class 0,
    after class 1 (ordered), and after one shuffled pass of the same length; accuracies on (x, y)."""
    ordered = [mlp(seed=s) for s in seeds]
    shuffled = [mlp(seed=s) for s in seeds]
    at_init = [dead_units(m, x)[0] for m in ordered]
    after_class0 = sgd_in_order(ordered, x, y, lr=lr, seeds=seeds, device=device)
    cfg = TrainConfig(steps=len(y), batch_size=1, optimizer="sgd", lr=lr)
    fit_seeds(shuffled, x, y, cfg=cfg, seeds=seeds, device=device)
    rows = []
    for i, s in enumerate(seeds):
        rows.append({"lr": lr, "seed": s, "dead at init": int(at_init[i].sum()),
                     "dead after class 0": int(after_class0[i][0].sum()),
                     "dead, ordered": int(dead_units(ordered[i], x)[0].sum()),
                     "dead, shuffled": int(dead_units(shuffled[i], x)[0].sum()),
                     "acc, ordered": evaluate(ordered[i], x, y, device=device)[1],
                     "acc, shuffled": evaluate(shuffled[i], x, y, device=device)[1],
                     "model, shuffled": shuffled[i]})
    return rows


@torch.no_grad()
def class1_probability(model: nn.Module, *, lim: float = 2.0, n: int = 101):
    """Softmax probability of class 1 on an n x n grid of [-lim, lim]^2: (xs (n,), ys (n,), p (n, n))."""
    checks.positive("lim", lim)
    checks.positive_int("n", n)
    xs = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    grid = torch.stack([gx.ravel(), gy.ravel()], 1).to(_device(model))
    p = torch.softmax(model(grid), -1)[:, 1].cpu()
    return xs, xs, p.view(n, n)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ----- logic gates: one ReLU unit relu(w . x + b) "fires" (means true) when its output is > 0

def inputs(n_inputs: int) -> torch.Tensor:
    """All 2^n binary inputs, rows in counting order: (2^n, n) float64."""
    checks.positive_int("n_inputs", n_inputs)
    return torch.tensor(list(itertools.product((0, 1), repeat=n_inputs)), dtype=torch.float64)


GATES = {  # name -> (truth table over inputs(n) in counting order, hand-made weights w, bias b)
    "NOT": ((1, 0), (-1,), 1),
    "AND": ((0, 0, 0, 1), (1, 1), -1),
    "OR": ((0, 1, 1, 1), (1, 1), 0),
    "NAND": ((1, 1, 1, 0), (-1, -1), 2),
    "NOR": ((1, 0, 0, 0), (-1, -1), 1),
}


def relu_unit(w, b, x: torch.Tensor) -> torch.Tensor:
    """relu(x @ w + b) for x (N, n): (N,)."""
    return torch.relu(x @ torch.as_tensor(w, dtype=x.dtype) + b)


def xor_network() -> nn.Sequential:
    """2 -> 2 ReLU -> 1 ReLU with hand-set weights: h1 = relu(x1 + x2), h2 = relu(x1 + x2 - 1),
    out = relu(h1 - 2 h2), which is exactly XOR on {0, 1}^2."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -2.0]]))
        net[2].bias.zero_()
    return net


def one_unit_weights(table, *, values=range(-2, 3)):
    """Integer (w1, ..., wn, b) from `values` with relu(w . x + b) > 0 exactly where `table` is 1, else None.

    Exhaustive: every function one threshold unit computes on {0,1}^2 has such weights in -2..2.
    """
    table = tuple(int(t) for t in table)
    n = round(math.log2(len(table)))
    if 2 ** n != len(table) or set(table) - {0, 1}:
        raise ValueError(f"table must hold 2^n zeros and ones, got {table!r}")
    x = inputs(n)
    for wb in itertools.product(values, repeat=n + 1):
        fires = relu_unit(wb[:n], wb[n], x) > 0
        if tuple(fires.long().tolist()) == table:
            return wb
    return None


def farkas_certificate(table, *, values=range(3)):
    """Multipliers y >= 0 (one per input) proving no (w, b) has w . x + b >= 1 where `table` is 1
    and <= 0 where it is 0, or None. See `certificate_holds` for what they prove."""
    table = tuple(int(t) for t in table)
    rows, c = _system(table)
    for y in itertools.product(values, repeat=len(rows)):
        if any(y) and certificate_holds(table, y):
            return y
    return None


def _system(table):
    """The system A z <= c in z = (w, b): -(x, 1) . z <= -1 for true rows, (x, 1) . z <= 0 for false rows."""
    n = round(math.log2(len(table)))
    rows, c = [], []
    for x, t in zip(itertools.product((0, 1), repeat=n), table):
        a = list(x) + [1]
        rows.append([-v for v in a] if t else a)
        c.append(-1 if t else 0)
    return rows, c


def certificate_holds(table, y) -> bool:
    """Exact integer check of Farkas' lemma (easy direction): y >= 0, y^T A = 0 and y^T c < 0.

    Then any z with A z <= c would give 0 = y^T A z <= y^T c < 0, a contradiction. Scaling (w, b)
    turns "> 0" into ">= 1", so no single threshold unit computes `table`.
    """
    rows, c = _system(tuple(table))
    if len(y) != len(rows) or any(v < 0 for v in y):
        return False
    combo = [sum(yi * r[j] for yi, r in zip(y, rows)) for j in range(len(rows[0]))]
    return all(v == 0 for v in combo) and sum(yi * ci for yi, ci in zip(y, c)) < 0
