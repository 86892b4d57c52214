"""Exact memory accounting for training: parameters, gradients, optimizer state, saved activations.

Topic module. Every count is an integer number of bytes, read from the tensors themselves, and
every function works on the `meta` device (shapes and dtypes, no storage), so a ResNet-152 at
batch 256 is accounted for in seconds on a CPU. One unit system: KiB = 2**10, MiB = 2**20,
GiB = 2**30 bytes (binary units; MB = 10**6 bytes is a different, smaller unit). The last part
trains one small network per batch size through `train.fit` and times its epochs.

Used by chapters: 15.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import checks
from .optim import make_optimizer
from .runtime import seeded
from .train import TrainConfig, fit

KiB, MiB, GiB = 2**10, 2**20, 2**30


def fmt_bytes(n: int) -> str:
    """The book's one memory formatter: bytes -> "12.34 MiB" (binary)."""
    n = checks.nonnegative_int("n", n)
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def storage_key(t: torch.Tensor) -> int:
    """Identity of the storage under `t` (views share it); works on meta, where data_ptr is 0."""
    return t.untyped_storage()._cdata


def storage_nbytes(t: torch.Tensor) -> int:
    """Bytes of the whole storage under `t` (a view keeps all of it alive)."""
    return int(t.untyped_storage().nbytes())


def unique_bytes(tensors) -> int:
    """Bytes of the distinct storages under `tensors`, each storage counted once."""
    seen = {}
    for t in tensors:
        if t is not None:
            seen[storage_key(t)] = storage_nbytes(t)
    return sum(seen.values())


def param_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters (shared parameters counted once)."""
    return unique_bytes(model.parameters())


def buffer_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's buffers: persistent state such as BatchNorm's running statistics."""
    return unique_bytes(model.buffers())


def grad_bytes(model: torch.nn.Module) -> int:
    """Bytes of the gradients that exist now (p.grad), each storage once."""
    return unique_bytes(p.grad for p in model.parameters())


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's per-parameter tensors (Adam's scalar step counters excluded)."""
    tensors = []
    for state in opt.state.values():
        # "step" is one 4-byte scalar per parameter tensor, kept on the host by default
        tensors += [t for k, t in state.items() if torch.is_tensor(t) and k != "step"]
    return unique_bytes(tensors)


def state_multiplier(name: str) -> int:
    """Optimizer state per parameter byte (0, 1, 2), measured by one step on a real tensor."""
    p = torch.nn.Parameter(torch.zeros(6))
    opt = make_optimizer([p], name=name, lr=0.1)
    p.grad = torch.ones(6)
    opt.step()
    ratio, rest = divmod(optimizer_state_bytes(opt), storage_nbytes(p))
    assert rest == 0, "optimizer state is not a whole multiple of the parameter"
    return ratio


@dataclass(frozen=True, kw_only=True)
class Saved:
    """What autograd saved for the backward pass: activation, parameter and buffer bytes, count."""

    activations: int
    parameters: int
    count: int
    buffers: int = 0


def saved_tensors(fn, params=(), buffers=()) -> Saved:
    """Run fn() under saved-tensor hooks; bytes saved for backward,
    each storage once.

    Tensors whose storage is one of `params` count as parameters, those
    of `buffers` (BatchNorm's running statistics) as buffers: both are
    persistent state, in memory anyway. All others are activations.
    """
    seen = {}

    def pack(t):
        # keep t: while it lives, its storage key stays unique
        seen[storage_key(t)] = (storage_nbytes(t), t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    pkeys = {storage_key(p) for p in params}
    bkeys = {storage_key(b) for b in buffers} - pkeys
    nbytes = {k: n for k, (n, _) in seen.items()}
    par = sum(n for k, n in nbytes.items() if k in pkeys)
    buf = sum(n for k, n in nbytes.items() if k in bkeys)
    act = sum(nbytes.values()) - par - buf
    return Saved(activations=act, parameters=par, count=len(seen),
                 buffers=buf)


def training_loss(model, x: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `model(x)` against class 0 (the labels' values do not change memory)."""
    out = model(x)
    y = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
    return F.cross_entropy(out, y)


def saved_for_training(model, x: torch.Tensor) -> Saved:
    """Saved tensors of one training forward pass (train mode) of `model` on batch `x`."""
    checks.tensor("x", x)
    model.train()
    return saved_tensors(lambda: training_loss(model, x), model.parameters(), model.buffers())


@dataclass(frozen=True, kw_only=True)
class Memory:
    """The terms of training memory, in bytes (buffers: BatchNorm's running statistics)."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    buffers: int = 0

    @property
    def total(self) -> int:
        """Sum of the terms (what must fit if nothing is freed early)."""
        return (self.parameters + self.buffers + self.gradients + self.optimizer_state
                + self.activations)


def training_memory(model, x: torch.Tensor, *, optimizer: str) -> Memory:
    """Memory of one training step on batch x: gradients are shaped like the trainable
    parameters, optimizer state is state_multiplier(optimizer) times them."""
    trainable = unique_bytes(p for p in model.parameters() if p.requires_grad)
    return Memory(parameters=param_bytes(model), buffers=buffer_bytes(model), gradients=trainable,
                  optimizer_state=state_multiplier(optimizer) * trainable,
                  activations=saved_for_training(model, x).activations)


def batch_line(batches, nbytes) -> tuple[int, int]:
    """(intercept, per-sample) bytes of an exactly affine bytes(batch); raises if not affine."""
    checks.same_length(batches=batches, nbytes=nbytes)
    if len(batches) < 3:
        raise ValueError("batches must hold at least 3 sizes (2 fit the line, 1 checks it)")
    (b0, n0), (b1, n1) = (batches[0], nbytes[0]), (batches[1], nbytes[1])
    slope, rest = divmod(n1 - n0, b1 - b0)
    if rest:
        raise ValueError("nbytes is not affine in the batch size")
    c = n0 - slope * b0
    for b, n in zip(batches, nbytes):
        if c + slope * b != n:
            raise ValueError(f"nbytes is not affine in the batch size (batch {b})")
    return c, slope


def largest_batch(*, fixed: int, per_sample: int, budget: int) -> int:
    """Largest batch B with fixed + B * per_sample <= budget (0 if even B = 1 does not fit)."""
    checks.nonnegative_int("fixed", fixed)
    checks.positive_int("per_sample", per_sample)
    checks.positive_int("budget", budget)
    return max(0, (budget - fixed) // per_sample)


class Checkpointed(torch.nn.Module):
    """A block whose activations are recomputed in the backward pass instead of saved."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x):
        # reentrant: the block's input is saved through ctx.save_for_backward, so the
        # saved-tensor hooks see it, and nothing inside the block is saved
        return checkpoint(self.block, x, use_reentrant=True)


def checkpoint_blocks(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap each residual block of a torchvision ResNet (layer1..layer4) in Checkpointed."""
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, name, None)
        if not isinstance(stage, torch.nn.Sequential):
            raise TypeError("model must be a torchvision ResNet (layer1..layer4)")
        for i, block in enumerate(stage):
            stage[i] = Checkpointed(block)
    return model


def step_times(models, x: torch.Tensor, *, repeats: int = 3,
               backward: bool = True) -> list[float]:
    """Fastest wall time (s) per model of `repeats` forward (and backward) passes."""
    checks.positive_int("repeats", repeats)
    checks.boolean("backward", backward)
    times = [[] for _ in models]
    # round-robin, so that load on a shared machine hits every model alike; the first
    # round allocates (warm-up), and the minimum is the least disturbed measurement
    for _ in range(repeats + 1):
        for model, ts in zip(models, times):
            model.train()
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = training_loss(model, x)
            if backward:
                loss.backward()
            ts.append(time.perf_counter() - t0)
    return [min(ts[1:]) for ts in times]


def measure_cuda(model, x: torch.Tensor, *, optimizer: str, steps: int = 2) -> dict:
    """Peak allocated and reserved bytes of `steps` training steps on CUDA (model, x there)."""
    if x.device.type != "cuda":
        raise ValueError("x must be on a CUDA device")
    opt = make_optimizer(model.parameters(), name=optimizer, lr=0.01)
    model.train()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(checks.positive_int("steps", steps)):
        opt.zero_grad(set_to_none=True)
        training_loss(model, x).backward()
        opt.step()
    torch.cuda.synchronize()
    return {"max_allocated": int(torch.cuda.max_memory_allocated()),
            "reserved": int(torch.cuda.memory_reserved())}


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Minibatch steps in one epoch of n examples, the last partial batch kept: ceil(n / B)."""
    checks.positive_int("n", n)
    checks.positive_int("batch_size", batch_size)
    return -(-n // batch_size)


def scaled_lr(batch_size: int, *, base_lr: float, base_batch: int) -> float:
    """The linear scaling rule: base_lr * batch_size / base_batch."""
    checks.positive_int("batch_size", batch_size)
    checks.positive_int("base_batch", base_batch)
    return checks.positive("base_lr", base_lr) * batch_size / base_batch


def batch_size_run(make_model, x, y, x_test, y_test, *, batch_size: int, base_lr: float,
                   base_batch: int, epochs: int, seed: int, device) -> dict:
    """SGD on (x (N, ...), y (N,)) for `epochs` epochs at the scaled lr, evaluated after each.

    {"batch_size", "seed", "lr", "steps" (epochs,), "cpu_time", "time" (cumulative training
    seconds, (epochs,)), "train_acc", "test_acc" (epochs,)}; the model is make_model() under `seed`.
    """
    spe = steps_per_epoch(len(y), batch_size)
    lr = scaled_lr(batch_size, base_lr=base_lr, base_batch=base_batch)
    cfg = TrainConfig(steps=spe * checks.positive_int("epochs", epochs), batch_size=batch_size,
                      optimizer="sgd", lr=lr, eval_every=spe)
    h = fit(seeded(make_model, seed=seed), x, y, cfg=cfg, seed=seed, device=device,
            x_val=x_test, y_val=y_test)
    return {"batch_size": batch_size, "seed": seed, "lr": lr, "steps": np.array(h["step"]),
            "cpu_time": np.array(h["cpu_time"]), "time": np.array(h["time"]),
            "train_acc": np.array(h["train_acc"]), "test_acc": np.array(h["val_acc"])}


def epoch_cost(n: int, batch_sizes, epoch_seconds) -> tuple[float, float]:
    """Least-squares (per-step, per-example) seconds of t(B) = a * ceil(n / B) + b * n."""
    checks.same_length(batch_sizes=batch_sizes, epoch_seconds=epoch_seconds)
    a = np.array([[steps_per_epoch(n, b), n] for b in batch_sizes], dtype=float)
    if len(set(a[:, 0])) < 2:
        raise ValueError("batch_sizes must give at least 2 different numbers of steps per epoch")
    (per_step, per_example), *_ = np.linalg.lstsq(a, np.asarray(epoch_seconds, float), rcond=None)
    return float(per_step), float(per_example)
