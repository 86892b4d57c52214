"""One optimizer constructor (SGD, momentum, Nesterov, Adam, AdamW) and learning-rate schedules.

Core module. Weight decay is either an L2 term in the loss (`decoupled=False`: torch's
`weight_decay` argument adds wd * w to the gradient, i.e. the gradient of (wd / 2) ||w||^2) or
decoupled from the gradient (`decoupled=True`: w <- (1 - lr * wd) w before the step, as AdamW
does). Used through `train.fit` and `sweep.fit_stacked`.

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import checks

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "plateau")


def make_optimizer(params, *, name: str, lr: float, momentum: float = 0.9,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                   weight_decay: float = 0.0, decoupled: bool = False,
                   fused: bool | None = None) -> torch.optim.Optimizer:
    """A torch optimizer over `params`; "adamw" is Adam with decoupled decay (decoupled=True implied)."""
    checks.choice("name", name, OPTIMIZERS)
    lr, wd = checks.positive("lr", lr), checks.nonnegative("weight_decay", weight_decay)
    momentum = checks.probability("momentum", momentum)
    decoupled = checks.boolean("decoupled", decoupled) or name == "adamw"
    params = list(params)
    if name in ("sgd", "momentum", "nesterov"):
        mom = 0.0 if name == "sgd" else momentum
        if name != "sgd" and mom == 0:
            raise ValueError(f"momentum must be > 0 for {name!r}")
        opt = torch.optim.SGD(params, lr=lr, momentum=mom, nesterov=name == "nesterov",
                              weight_decay=0.0 if decoupled else wd, fused=fused)
        if decoupled and wd > 0:
            _decouple(opt, wd)
        return opt
    for i, b in enumerate(betas):
        checks.probability(f"betas[{i}]", b)
    if decoupled:
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd, fused=fused)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=wd, fused=fused)


def _decouple(opt: torch.optim.Optimizer, wd: float) -> None:
    """Decoupled decay for SGD: w <- (1 - lr wd) w just before each step, with the group's current lr."""
    def shrink(optimizer, args=(), kwargs=None):
        with torch.no_grad():
            for group in optimizer.param_groups:
                torch._foreach_mul_(group["params"], 1 - group["lr"] * wd)

    opt.register_step_pre_hook(shrink)
    opt.decoupled_shrink = shrink


def fused_step(opt: torch.optim.Optimizer):
    """A function doing opt.step() for opt = make_optimizer(..., fused=True) with one parameter group.

    It calls torch's fused kernel directly, with the optimizer's own state and current lr: the
    same arithmetic (tested bit-equal) without the per-step Python bookkeeping of torch.optim,
    which dominates when one step updates a few large stacked tensors. A step where some
    gradient is None falls back to opt.step().
    """
    if len(opt.param_groups) != 1 or not opt.param_groups[0].get("fused"):
        raise ValueError("opt must come from make_optimizer(..., fused=True), with one parameter group")
    group, adam = opt.param_groups[0], isinstance(opt, torch.optim.Adam)
    params = group["params"]
    if not params or group.get("maximize") or group.get("amsgrad"):
        return opt.step
    if adam:  # the state torch.optim would create at its first step
        for p in params:
            opt.state[p] = {"step": torch.tensor(0.0, dtype=torch.float32, device=p.device),
                            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        steps, m, v = ([opt.state[p][key] for p in params] for key in ("step", "exp_avg", "exp_avg_sq"))
        kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_
    shrink = getattr(opt, "decoupled_shrink", None)
    slow = [False]  # once a gradient is None, torch.optim takes over (with the same state)

    @torch.no_grad()
    def step():
        grads = [p.grad for p in params]
        if slow[0] or any(g is None for g in grads):
            slow[0] = True
            return opt.step()
        if adam:
            torch._foreach_add_(steps, 1)
            kernel(params, grads, m, v, [], steps, amsgrad=False, lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1],
                   weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                   grad_scale=None, found_inf=None)
            return None
        if shrink is not None:
            shrink(opt)
        first = group["momentum"] and not opt.state[params[0]]
        if first:
            for p, g in zip(params, grads):
                opt.state[p]["momentum_buffer"] = torch.empty_like(g)
        bufs = [opt.state[p]["momentum_buffer"] for p in params] if group["momentum"] else []
        torch._fused_sgd_(params, grads, bufs, weight_decay=group["weight_decay"], momentum=group["momentum"],
                          lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
                          maximize=False, is_first_step=bool(first), grad_scale=None, found_inf=None)
        return None

    return step


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in opt.param_groups:
        group["lr"] = lr


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """The learning rate as a function of the step: lr * warm-up ramp * decay (a frozen config).

    kind "constant": no decay; "step": times `gamma` at each of `milestones` (steps);
    "cosine": half a cosine from 1 to `floor` over `total` steps; "plateau": times `gamma` each
    time the validation loss has not improved by `threshold` (relative) for `patience`
    evaluations (`fit` counts these cuts), never below `min_factor` (PyTorch's `min_lr` / lr:
    once there, no more cuts are counted). `warmup` > 0 ramps linearly from lr / warmup.
    """

    kind: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    total: int = 0
    floor: float = 0.0
    patience: int = 3
    threshold: float = 1e-3
    warmup: int = 0
    min_factor: float = 0.0

    def __post_init__(self):
        checks.choice("kind", self.kind, SCHEDULES)
        checks.real("gamma", self.gamma, low=0.0, high=1.0, low_open=True)
        checks.nonnegative_int("warmup", self.warmup)
        checks.positive_int("patience", self.patience)
        checks.nonnegative("threshold", self.threshold)
        checks.probability("floor", self.floor)
        checks.probability("min_factor", self.min_factor)
        if not isinstance(self.milestones, tuple):
            raise TypeError(f"milestones must be a tuple of ints, got {type(self.milestones).__name__}")
        for i, m in enumerate(self.milestones):
            checks.positive_int(f"milestones[{i}]", m)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be strictly increasing, got {self.milestones}")
        if self.kind == "step" and not self.milestones:
            raise ValueError("milestones must be given for kind='step'")
        if self.kind == "cosine":
            checks.positive_int("total", self.total)

    def factor(self, step: int, cuts: int = 0) -> float:
        """Multiplier of the base lr for the update at `step` (1-based), after `cuts` plateau cuts."""
        f = min(1.0, step / self.warmup) if self.warmup else 1.0
        if self.kind == "step":
            f *= self.gamma ** sum(step > m for m in self.milestones)
        elif self.kind == "cosine":
            t = min(step - 1, self.total) / self.total
            f *= self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))
        elif self.kind == "plateau":
            f *= max(self.gamma ** cuts, self.min_factor)
        return f


class Plateau:
    """Counts reduce-on-plateau cuts from the validation losses seen at each evaluation."""

    def __init__(self, schedule: Schedule):
        self.patience, self.threshold = schedule.patience, schedule.threshold
        self.gamma, self.min_factor = schedule.gamma, schedule.min_factor
        self.best, self.bad, self.cuts = math.inf, 0, 0

    def observe(self, loss: float) -> int:
        """Record one evaluation's loss; returns the number of cuts so far."""
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
            if self.bad >= self.patience and self.gamma ** self.cuts > self.min_factor * (1 + 1e-9):
                self.cuts, self.bad = self.cuts + 1, 0
        return self.cuts
