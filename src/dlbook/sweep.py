"""Train many small models of one architecture at once on stacked parameters, and the plain loop it must match."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from .runtime import torch_generator

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Hyper-parameters shared by every model of a sweep; a budget in steps, not epochs, so data sizes compare fairly."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 0.01
    optimizer: str = "adam"
    weight_decay: float = 0.0
    eval_every: int = 0  # 0: evaluate once, after the last step

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name, low in (("steps", 1), ("batch_size", 1), ("eval_every", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")

    def eval_steps(self) -> list[int]:
        """Steps (1-based, after the update) at which the models are evaluated."""
        if self.eval_every == 0:
            return [self.steps]
        steps = list(range(self.eval_every, self.steps + 1, self.eval_every))
        return steps if steps[-1] == self.steps else steps + [self.steps]


def batch_indices(n: int, *, steps: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index tensors for `steps` minibatches: a fresh random order per epoch, last partial batch kept."""
    out, order, pos = [], torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos >= n:
            order, pos = torch.randperm(n, generator=generator), 0
        out.append(order[pos:pos + batch_size])
        pos += batch_size
    return out


def _optimizer(params, cfg: SweepConfig):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def _check(models, x, y, seeds, x_val, y_val):
    k = len(models)
    if k == 0 or len(seeds) != k:
        raise ValueError(f"need one seed per model: {k} models, {len(seeds)} seeds")
    if x.shape[0] != k or y.shape[:2] != x.shape[:2]:
        raise ValueError(f"x must be (K={k}, N, ...) and y (K, N); got {tuple(x.shape)} and {tuple(y.shape)}")
    if (x_val is None) != (y_val is None) or (x_val is not None and (x_val.shape[0] != k or y_val.shape[:2] != x_val.shape[:2])):
        raise ValueError("x_val (K, M, ...) and y_val (K, M) must both be given, with K = number of models")


def stacked_forward(base):
    """(params, buffers, x (K, B, ...)) -> logits (K, B, C): the model class's own stacked_forward if it has one, else vmap."""
    if hasattr(base, "stacked_forward"):
        return lambda p, b, xb: base.stacked_forward(p, xb)
    return vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)))


def stacked_logits(models, x: torch.Tensor, *, device, chunk: int = 2048) -> torch.Tensor:
    """Logits (K, M, C) of K same-shaped models on their own inputs x (K, M, ...), one vectorized call per chunk."""
    params, buffers = stack_module_state([m.to(device) for m in models])
    fwd = stacked_forward(copy.deepcopy(models[0]).to("meta"))
    with torch.no_grad():
        return torch.cat([fwd(params, buffers, x[:, i:i + chunk].to(device)) for i in range(0, x.shape[1], chunk)], dim=1)


def _metrics(logits: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy per model from logits (K, M, C) and labels (K, M)."""
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
    acc = (logits.argmax(-1) == y).float().mean(1)
    return loss.double().cpu().numpy(), acc.double().cpu().numpy()


def train_vectorized(models, x, y, *, cfg: SweepConfig, seeds, device, x_val=None, y_val=None, frozen=()) -> dict:
    """Train K same-shaped models at once on their own data x (K, N, ...), y (K, N); writes weights back; history (K, evals)."""
    _check(models, x, y, seeds, x_val, y_val)
    k, n = x.shape[:2]
    models = [m.to(device) for m in models]
    stacked, buffers = stack_module_state(models)
    params = {name: p.detach().clone().requires_grad_(name not in frozen) for name, p in stacked.items()}
    opt = _optimizer([p for name, p in params.items() if name not in frozen], cfg)
    fwd = stacked_forward(copy.deepcopy(models[0]).to("meta"))
    orders = [batch_indices(n, steps=cfg.steps, batch_size=cfg.batch_size, generator=torch_generator(s)) for s in seeds]
    rows = torch.arange(k, device=device).unsqueeze(1)
    x, y = x.to(device), y.to(device)
    splits = {"train": (x, y)} | ({"val": (x_val.to(device), y_val.to(device))} if x_val is not None else {})
    hist = {f"{s}_{m}": [] for s in splits for m in ("loss", "acc")}
    evals = set(cfg.eval_steps())
    for step in range(1, cfg.steps + 1):
        idx = torch.stack([o[step - 1] for o in orders]).to(device)
        # every model's loss depends only on its own slice of params, so the sum separates their gradients
        yb = y[rows, idx]
        loss = F.cross_entropy(fwd(params, buffers, x[rows, idx]).flatten(0, 1), yb.flatten(), reduction="none")
        loss = loss.view(yb.shape).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in evals:
            with torch.no_grad():
                for s, (xs, ys) in splits.items():
                    l, a = _metrics(fwd(params, buffers, xs), ys)
                    hist[f"{s}_loss"].append(l)
                    hist[f"{s}_acc"].append(a)
    with torch.no_grad():
        for i, m in enumerate(models):
            for name, p in m.named_parameters():
                p.copy_(params[name][i])
    out = {key: np.stack(v, axis=1) for key, v in hist.items()}
    out["step"] = np.array(sorted(evals))
    return out


def train_looped(models, x, y, *, cfg: SweepConfig, seeds, device, x_val=None, y_val=None, frozen=()) -> dict:
    """Reference for train_vectorized: the same runs one model at a time with the same orders and optimizer."""
    _check(models, x, y, seeds, x_val, y_val)
    k, n = x.shape[:2]
    evals = cfg.eval_steps()
    hist = {f"{s}_{m}": np.zeros((k, len(evals))) for s in ("train", "val") for m in ("loss", "acc")}
    for i, (model, seed) in enumerate(zip(models, seeds)):
        model.to(device)
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
        opt = _optimizer([p for p in model.parameters() if p.requires_grad], cfg)
        order = batch_indices(n, steps=cfg.steps, batch_size=cfg.batch_size, generator=torch_generator(seed))
        xi, yi = x[i].to(device), y[i].to(device)
        splits = {"train": (xi, yi)} | ({"val": (x_val[i].to(device), y_val[i].to(device))} if x_val is not None else {})
        e = 0
        for step in range(1, cfg.steps + 1):
            idx = order[step - 1].to(device)
            loss = F.cross_entropy(model(xi[idx]), yi[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step == evals[e]:
                with torch.no_grad():
                    for s, (xs, ys) in splits.items():
                        l, a = _metrics(model(xs).unsqueeze(0), ys.unsqueeze(0))
                        hist[f"{s}_loss"][i, e], hist[f"{s}_acc"][i, e] = l[0], a[0]
                e += 1
        for p in model.parameters():
            p.requires_grad_(True)
    if x_val is None:
        hist = {key: v for key, v in hist.items() if key.startswith("train")}
    hist["step"] = np.array(evals)
    return hist


def seed_sweep(make_model, make_data, *, seeds, cfg: SweepConfig, device, frozen=()) -> tuple[dict, list]:
    """One vectorized group: model make_model(seed) on data make_data(seed) -> (x, y, x_val, y_val) for each seed; (history, models)."""
    seeds = [int(s) for s in seeds]
    models = [make_model(s) for s in seeds]
    parts = list(zip(*(make_data(s) for s in seeds)))
    if len(parts) != 4:
        raise ValueError("make_data(seed) must return (x, y, x_val, y_val)")
    x, y, x_val, y_val = (torch.stack(p) for p in parts)
    hist = train_vectorized(models, x, y, cfg=cfg, seeds=seeds, device=device, x_val=x_val, y_val=y_val, frozen=frozen)
    return hist, models
