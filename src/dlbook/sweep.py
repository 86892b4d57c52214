"""Train K same-shaped models at once on stacked parameters (torch.func): the book's sweep engine.

Core module. `fit_stacked` takes the same `TrainConfig` as `train.fit` and is tested equal to
`fit` run model by model (same minibatch orders, same optimizer arithmetic). Speed tricks live
here and in a model's optional `stacked_forward(params, x)`, which can be written with
`stacked_linear` and `stacked_conv2d`; see the appendix page on sweeps.

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from . import checks
from .metrics import loss_fn, uses_batch_statistics
from .optim import fused_step, make_optimizer, set_lr
from .runtime import global_seed
from .train import TrainConfig, batch_indices


def stacked_forward(model, *, train: bool):
    """(params, buffers, x (K, B, ...)) -> outputs (K, B, ...) for K stacked copies of `model`'s class.

    The model's own `stacked_forward(params, x)` if it has one, else functional_call under vmap
    (dropout masks then differ per model, randomness="different").
    """
    base = copy.deepcopy(model).to("meta").train(train)
    if hasattr(base, "stacked_forward"):
        return lambda p, b, xb: base.stacked_forward(p, xb)
    return vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), randomness="different")


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """K linear layers at once: x (K, B, in), weight (K, out, in), bias (K, out) -> (K, B, out)."""
    # W x^T rather than x W^T: the weights' gradient comes out in their own (K, out, in) layout
    # (x W^T would give it transposed: a copy of all K weight matrices at every step)
    out = torch.bmm(weight, x.transpose(1, 2)).transpose(1, 2)
    return out if bias is None else out + bias.unsqueeze(1)


def stacked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                   stride: int = 1, padding: int = 0) -> torch.Tensor:
    """K conv2d layers at once: x (K, B, C, H, W), weight (K, F, C, k, k), bias (K, F) -> (K, B, F, H', W').

    One grouped convolution (groups = K) over the K models' channels side by side, in
    channels-last layout: about 1.4x faster on a CPU than vmap of conv2d on chapter 8's CNN.
    """
    k, b = x.shape[:2]
    xc = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:]).contiguous(memory_format=torch.channels_last)
    out = F.conv2d(xc, weight.reshape(-1, *weight.shape[2:]), None if bias is None else bias.reshape(-1),
                   stride=stride, padding=padding, groups=k)
    return out.view(b, k, -1, *out.shape[-2:]).transpose(0, 1)


def _check(models, x, y, seeds, x_val, y_val, cfg):
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    k = len(models)
    if k == 0 or len(seeds) != k:
        raise ValueError(f"seeds: need one seed per model, got {k} models and {len(seeds)} seeds")
    for s in seeds:
        checks.seed(s)
    if x.shape[0] != k or y.shape[:2] != x.shape[:2]:
        raise ValueError(f"x must be (K={k}, N, ...) and y (K, N); got {tuple(x.shape)} and {tuple(y.shape)}")
    if (x_val is None) != (y_val is None) or (
            x_val is not None and (x_val.shape[0] != k or y_val.shape[:2] != x_val.shape[:2])):
        raise ValueError("x_val (K, M, ...) and y_val (K, M) must both be given, with K = number of models")
    if cfg.patience or cfg.schedule.kind == "plateau":
        raise ValueError("cfg: early stopping and reduce-on-plateau act per model; use train.fit")


def _per_model(name, outputs, y):
    """Mean loss (K,) and accuracy (K,) of stacked outputs (K, M, ...) against y (K, M)."""
    k, m = y.shape[:2]
    loss = loss_fn(name, outputs.flatten(0, 1), y.flatten(0, 1), reduction="none").view(k, m, -1).mean((1, 2))
    acc = ((outputs.argmax(-1) == y).double().mean(1) if name == "cross_entropy"
           else torch.full((k,), float("nan"), dtype=torch.float64))
    return loss.double().cpu().numpy(), acc.cpu().numpy()


def fit_stacked(models, x, y, *, cfg: TrainConfig, seeds, device, x_val=None, y_val=None,
                frozen=(), record=None) -> dict:
    """Train K same-shaped models at once, model k on x[k] (N, ...), y[k] (N,) with seeds[k].

    Writes the trained weights back into `models`. History: arrays (K, evaluations) per metric,
    plus "step", "time" (training seconds), "lr", "config" and "seeds". Parameters named in
    `frozen` are not trained. `record(params) -> {name: tensor (K,)}`, given the stacked
    parameters {name: (K, ...)}, adds its values to the history at each evaluation; a `record`
    with the attribute `takes_train_loss` is called as record(params, train_loss=(K,)), with the
    mean training loss of each model just evaluated.
    """
    _check(models, x, y, seeds, x_val, y_val, cfg)
    k, n = x.shape[:2]
    models = [m.to(device) for m in models]
    stacked, buffers = stack_module_state(models)
    params = {name: p.detach().clone().requires_grad_(name not in frozen) for name, p in stacked.items()}
    trained = [p for name, p in params.items() if name not in frozen]
    opt = make_optimizer(trained, **cfg.optimizer_kwargs(), fused=True)
    opt_step = fused_step(opt)  # opt.step() without torch.optim's per-step Python bookkeeping
    fwd, fwd_eval = stacked_forward(models[0], train=True), stacked_forward(models[0], train=False)
    # batch-statistics models are evaluated on each whole split at once (see metrics.outputs)
    whole = uses_batch_statistics(models[0])
    chunk = getattr(models[0], "stacked_chunk", None)  # a model may ask for larger evaluation chunks
    batches = _stacked_orders(n, cfg, seeds, device)
    x_rows, y_rows = _rows(x.to(device), k, n), _rows(y.to(device), k, n)
    splits = {"train": (x, y)} | ({"val": (x_val, y_val)} if x_val is not None else {})
    splits = {s: (a.to(device), b.to(device)) for s, (a, b) in splits.items()}
    hist = {f"{s}_{m}": [] for s in splits for m in ("loss", "acc")} | {"step": [], "time": [], "lr": []}
    evals, elapsed, start = set(cfg.eval_steps()), 0.0, time.perf_counter()
    # dropout masks under vmap come from the global generator: a function of the seeds alone
    with global_seed(seeds[0], device):
        lr = None
        for step, idx in enumerate(batches, start=1):
            if lr != (lr := cfg.lr * cfg.schedule.factor(step)):
                set_lr(opt, lr)
            yb = y_rows(idx)
            # the sum over models of each model's mean loss: model k's loss depends only on
            # its slice of params, so the sum separates their gradients (each equal to fit's)
            loss = loss_fn(cfg.loss, fwd(params, buffers, x_rows(idx)).flatten(0, 1), yb.flatten(0, 1),
                           reduction="sum") / (yb.numel() // k)
            if cfg.penalty:  # sum over models of each model's lam ||theta_k||^2
                loss = loss + cfg.penalty * sum(p.pow(2).sum() for p in params.values())
            for p in trained:
                p.grad = None
            loss.backward()
            opt_step()
            if step in evals:
                elapsed += time.perf_counter() - start
                hist["step"].append(step)
                hist["time"].append(elapsed)
                hist["lr"].append(opt.param_groups[0]["lr"])
                with torch.no_grad():
                    for s, (xs, ys) in splits.items():
                        values, acc = _per_model(cfg.loss, stacked_outputs(fwd_eval, params, buffers, xs,
                                                                            chunk=chunk, whole=whole), ys)
                        hist[f"{s}_loss"].append(values)
                        hist[f"{s}_acc"].append(acc)
                    if record is not None:
                        # a record that takes the training losses just computed need not compute them again
                        given = ({"train_loss": torch.from_numpy(hist["train_loss"][-1]).float()}
                                 if getattr(record, "takes_train_loss", False) else {})
                        for key, value in record(params, **given).items():
                            hist.setdefault(key, []).append(torch.as_tensor(value).double().cpu().numpy())
                start = time.perf_counter()
    with torch.no_grad():
        for i, m in enumerate(models):
            for name, p in m.named_parameters():
                p.copy_(params[name][i])
    out = {key: np.stack(v, axis=1) for key, v in hist.items() if key not in ("step", "time", "lr")}
    return out | {"step": np.array(hist["step"]), "time": np.array(hist["time"]),
                  "lr": np.array(hist["lr"]), "config": cfg, "seeds": [int(s) for s in seeds]}


def _stacked_orders(n: int, cfg: TrainConfig, seeds, device) -> list[torch.Tensor]:
    """Per step, the (K, B) minibatch indices of the K models: model k's are those `fit` draws with seeds[k]."""
    per_model = [batch_indices(n, steps=cfg.steps, batch_size=cfg.batch_size, seed=s, sampling=cfg.sampling)
                 for s in seeds]
    # every model has n examples, so step t's batches have one length and stack to (K, B_t)
    return [torch.stack(batch).to(device) for batch in zip(*per_model)]


def _rows(t: torch.Tensor, k: int, n: int):
    """A function idx (K, B) -> t[k, idx[k]] stacked to (K, B, ...), for t (K, N, ...).

    Each batch length gets one buffer, refilled in place at every step. One data set shared by
    all models (an expanded view, stride 0 over K) is gathered from t[0] without a K-fold copy.
    """
    shared = t.stride(0) == 0
    src = (t[0] if shared else t.reshape(k * n, *t.shape[2:])).detach()
    offset = 0 if shared else torch.arange(k, device=t.device).unsqueeze(1) * n  # model k's row 0
    buffers = {}

    def gather(idx: torch.Tensor) -> torch.Tensor:
        flat = (idx + offset).flatten()
        if len(flat) not in buffers:
            buffers[len(flat)] = src.new_empty((len(flat), *src.shape[1:]))
        return torch.index_select(src, 0, flat, out=buffers[len(flat)]).view(k, -1, *src.shape[1:])

    return gather


def stacked_outputs(fwd, params, buffers, x: torch.Tensor, *, chunk: int | None = None,
                    whole: bool = False) -> torch.Tensor:
    """Outputs (K, M, ...) of a stacked forward on x (K, M, ...), one call per chunk of M.

    The default chunk, 512 // K rows (at least 8), keeps the K models' activations small enough
    to stay in cache (a 2x faster evaluation of the chapter 12 CNN than whole-split chunks).
    fit_stacked passes a model's `stacked_chunk` attribute when it has one: an MLP, whose cost
    is reading its weights, evaluates about 2x faster in chunks of a whole split.
    """
    if whole:  # batch-statistics models: one chunk, or the answer depends on the chunking
        return fwd(params, buffers, x)
    chunk = chunk or max(8, 512 // x.shape[0])
    return torch.cat([fwd(params, buffers, x[:, i:i + chunk]) for i in range(0, x.shape[1], chunk)], dim=1)


def stacked_logits(models, x: torch.Tensor, *, device) -> torch.Tensor:
    """Eval-mode outputs (K, M, C) of K same-shaped models on their own inputs x (K, M, ...)."""
    params, buffers = stack_module_state([m.to(device) for m in models])
    with torch.no_grad():
        return stacked_outputs(stacked_forward(models[0], train=False), params, buffers, x.to(device),
                               whole=uses_batch_statistics(models[0]))


def seed_sweep(make_model, make_data, *, seeds, cfg: TrainConfig, device, frozen=()) -> tuple[dict, list]:
    """One stacked run: model make_model(seed) on make_data(seed) -> (x, y, x_val, y_val), for each seed."""
    seeds = [checks.seed(s) for s in seeds]
    models = [make_model(s) for s in seeds]
    parts = list(zip(*(make_data(s) for s in seeds)))
    if len(parts) != 4:
        raise ValueError("make_data(seed) must return (x, y, x_val, y_val)")
    x, y, x_val, y_val = (torch.stack(p) for p in parts)
    hist = fit_stacked(models, x, y, cfg=cfg, seeds=seeds, device=device, x_val=x_val, y_val=y_val, frozen=frozen)
    return hist, models
