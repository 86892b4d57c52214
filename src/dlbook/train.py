"""The book's one training loop: `fit` trains a model for a budget of minibatch steps.

Core module; every chapter that trains a network uses it (directly or through `sweep`, which is
tested equal to it). The loop in `fit` is meant to be read; the bookkeeping around it (when to
evaluate, wall-clock and CPU time, norms, early stopping) lives in `Recorder`.

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import torch

from . import checks
from .metrics import LOSSES, evaluate, global_norm, loss_fn
from .optim import OPTIMIZERS, Plateau, Schedule, make_optimizer, set_lr
from .runtime import global_seed, torch_generator

SAMPLING = ("shuffle", "replacement")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that defines a training run except model, data and seed (frozen: a typo raises).

    The budget is `steps` minibatch updates. `penalty` = lam adds lam * ||theta||^2 (all
    parameters) to the training loss, computed by autograd; `weight_decay` is the optimizer's. `eval_every` = 0 evaluates once, after the last step.
    `patience` > 0 stops early after that many evaluations without a lower validation loss and
    restores the best weights. `sampling`: "shuffle" (a new order each epoch) or "replacement".
    """

    steps: int
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False
    penalty: float = 0.0
    schedule: Schedule = field(default_factory=Schedule)
    loss: str = "cross_entropy"
    sampling: str = "shuffle"
    eval_every: int = 0
    patience: int = 0
    log_norms: bool = False

    def __post_init__(self):
        checks.positive_int("steps", self.steps)
        checks.positive_int("batch_size", self.batch_size)
        checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        checks.positive("lr", self.lr)
        checks.probability("momentum", self.momentum)
        checks.nonnegative("weight_decay", self.weight_decay)
        checks.boolean("decoupled", self.decoupled)
        checks.nonnegative("penalty", self.penalty)
        checks.choice("loss", self.loss, LOSSES)
        checks.choice("sampling", self.sampling, SAMPLING)
        checks.nonnegative_int("eval_every", self.eval_every)
        checks.nonnegative_int("patience", self.patience)
        checks.boolean("log_norms", self.log_norms)
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got {type(self.schedule).__name__}")

    def optimizer_kwargs(self) -> dict:
        """Keyword arguments of optim.make_optimizer for this config."""
        return dict(name=self.optimizer, lr=self.lr, momentum=self.momentum, betas=self.betas,
                    eps=self.eps, weight_decay=self.weight_decay, decoupled=self.decoupled)

    def eval_steps(self) -> list[int]:
        """Steps (1-based, after the update) at which the model is evaluated; always ends at `steps`."""
        if self.eval_every == 0:
            return [self.steps]
        steps = list(range(self.eval_every, self.steps + 1, self.eval_every))
        return steps if steps and steps[-1] == self.steps else steps + [self.steps]

    def as_dict(self) -> dict:
        return asdict(self)


def batch_indices(n: int, *, steps: int, batch_size: int, seed: int, sampling: str = "shuffle"):
    """Index tensors (batch_size,) of `steps` minibatches of n examples, drawn from `seed` alone.

    "shuffle": a fresh random order each epoch, the last partial batch of an epoch kept;
    "replacement": rows drawn uniformly with replacement.
    """
    checks.positive_int("n", n)
    checks.choice("sampling", sampling, SAMPLING)
    g = torch_generator(seed)
    if sampling == "replacement":
        return list(torch.randint(n, (steps, batch_size), generator=g))
    out, order, pos = [], torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos >= n:
            order, pos = torch.randperm(n, generator=g), 0
        out.append(order[pos:pos + batch_size])
        pos += batch_size
    return out


def fit(model, x, y, *, cfg: TrainConfig, seed: int, device, x_val=None, y_val=None,
        record=None) -> dict:
    """Train `model` in place on (x (N, ...), y (N,)) for cfg.steps steps; the history, with cfg in it.

    `record(model) -> {name: float}`, if given, adds its values to the history at each evaluation.
    """
    _check_data(cfg, x, y, x_val, y_val)
    model.to(device)
    x, y = x.to(device), y.to(device)
    opt = make_optimizer(model.parameters(), **cfg.optimizer_kwargs())
    batches = batch_indices(len(y), steps=cfg.steps, batch_size=cfg.batch_size,
                            seed=seed, sampling=cfg.sampling)
    rec = Recorder(model, cfg, seed=seed, device=device, x=x, y=y, x_val=x_val, y_val=y_val,
                   record=record)
    with global_seed(seed, device):  # dropout masks: a function of the seed alone
        for step, idx in enumerate(batches, start=1):
            set_lr(opt, cfg.lr * cfg.schedule.factor(step, rec.cuts))
            model.train()
            loss = loss_fn(cfg.loss, model(x[idx]), y[idx])
            if cfg.penalty:
                loss = loss + cfg.penalty * sum(p.pow(2).sum() for p in model.parameters())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rec.batch_loss.append(loss.detach())
            if rec.due(step) and rec.record(step, opt):
                break  # early stopping
    return rec.finish()


def _check_data(cfg, x, y, x_val, y_val):
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    checks.tensor("x", x)
    checks.tensor("y", y)
    checks.same_length(x=x, y=y)
    if (x_val is None) != (y_val is None):
        raise ValueError("x_val and y_val must be given together")
    if x_val is not None:
        checks.same_length(x_val=x_val, y_val=y_val)
    if (cfg.patience or cfg.schedule.kind == "plateau") and x_val is None:
        raise ValueError("early stopping (patience) and schedule kind 'plateau' need x_val and y_val")


class Recorder:
    """What `fit` records at each evaluation: losses, accuracies, lr, training time, norms; early stopping.

    "time" is wall-clock seconds and "cpu_time" this process's CPU seconds (time.process_time),
    both of training only (evaluations excluded) and cumulative.
    """

    def __init__(self, model, cfg: TrainConfig, *, seed, device, x, y, x_val, y_val, record=None):
        if record is not None and not callable(record):
            raise TypeError(f"record must be callable, got {type(record).__name__}")
        self.model, self.cfg, self.device, self.extra = model, cfg, device, record
        self.splits = {"train": (x, y)} | ({"val": (x_val, y_val)} if x_val is not None else {})
        self.evals = set(cfg.eval_steps())
        self.hist = {"config": cfg, "seed": seed, "step": [], "time": [], "cpu_time": [], "lr": []}
        for s in self.splits:
            self.hist |= {f"{s}_loss": [], f"{s}_acc": []}
        if cfg.log_norms:
            self.hist |= {"grad_norm": [], "weight_norm": []}
        self.batch_loss, self.elapsed, self.start = [], 0.0, time.perf_counter()
        self.cpu, self.cpu_start = 0.0, time.process_time()
        self.plateau = Plateau(cfg.schedule)
        self.best_loss, self.best_step, self.best_state, self.bad = float("inf"), 0, None, 0

    @property
    def cuts(self) -> int:
        return self.plateau.cuts

    def due(self, step: int) -> bool:
        return step in self.evals

    def record(self, step: int, opt) -> bool:
        """Evaluate after `step`; True when early stopping says stop."""
        self.elapsed += time.perf_counter() - self.start  # training time only, evaluation excluded
        self.cpu += time.process_time() - self.cpu_start
        h = self.hist
        h["step"].append(step)
        h["time"].append(self.elapsed)
        h["cpu_time"].append(self.cpu)
        h["lr"].append(opt.param_groups[0]["lr"])
        if self.cfg.log_norms:
            h["grad_norm"].append(global_norm(p.grad for p in self.model.parameters()))
            h["weight_norm"].append(global_norm(self.model.parameters()))
        if self.extra is not None:
            with torch.no_grad():
                for key, value in self.extra(self.model).items():
                    h.setdefault(key, []).append(float(value))
        for s, (xs, ys) in self.splits.items():
            loss, acc = evaluate(self.model, xs, ys, device=self.device, loss=self.cfg.loss)
            h[f"{s}_loss"].append(loss)
            h[f"{s}_acc"].append(acc)
        stop = False
        if "val" in self.splits:
            val = h["val_loss"][-1]
            self.plateau.observe(val)
            if val < self.best_loss:
                self.best_loss, self.best_step, self.bad = val, step, 0
                if self.cfg.patience:
                    self.best_state = copy.deepcopy(self.model.state_dict())
            else:
                self.bad += 1
            stop = bool(self.cfg.patience) and self.bad >= self.cfg.patience
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return stop

    def finish(self) -> dict:
        """The history; with early stopping, the model is restored to its best evaluation."""
        h = self.hist
        h["batch_loss"] = torch.stack(self.batch_loss).double().cpu().numpy()
        if "val" in self.splits:
            h["best_step"] = self.best_step
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return h
