"""The book's plain training loop for classifiers: minibatch SGD/Adam on tensors, history returned."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .runtime import progress, torch_generator

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters of one run (frozen: a typo in a field name raises)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(model, x, y, *, device, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x (N, ...), y (N,)), in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        logits = model(xb)
        loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train(was_training)
    return loss / len(y), correct / len(y)


def fit(model, x_train, y_train, *, cfg: TrainConfig, seed: int, device, x_val=None, y_val=None) -> dict:
    """Train `model` in place; returns a history dict (per epoch) with the config stored beside it."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if len(x_train) != len(y_train):
        raise ValueError(f"x_train and y_train differ in length: {len(x_train)} vs {len(y_train)}")
    model.to(device)
    opt = make_optimizer(model.parameters(), cfg)
    gen = torch_generator(seed)  # shuffling order
    hist = {"config": cfg.as_dict(), "seed": seed, "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    # dropout masks come from torch's global generator: seed it inside a fork so the caller's state is untouched
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for _ in progress(range(cfg.epochs), desc="epochs"):
            model.train()
            order = torch.randperm(len(y_train), generator=gen)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                xb, yb = x_train[idx].to(device), y_train[idx].to(device)
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            for split, (x, y) in {"train": (x_train, y_train), "val": (x_val, y_val)}.items():
                if x is not None:
                    l, a = evaluate(model, x, y, device=device)
                    hist[f"{split}_loss"].append(l)
                    hist[f"{split}_acc"].append(a)
    return hist
