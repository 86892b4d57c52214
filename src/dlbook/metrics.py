"""Metrics of classifiers and regressors: losses, accuracy, batched evaluation, confusion, calibration.

Core module; used by `train`, `sweep` and the chapters that evaluate models (8, 9, 12, ...).

Used by chapters: 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import checks

LOSSES = ("cross_entropy", "mse")


def loss_fn(name: str, output: torch.Tensor, y: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits (B, C) against labels (B,), or MSE of outputs (B,) / (B, 1) against targets (B,)."""
    checks.choice("loss", name, LOSSES)
    if name == "cross_entropy":
        return F.cross_entropy(output, y, reduction=reduction)
    return F.mse_loss(output.reshape(y.shape), y, reduction=reduction)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of logits (N, C) whose arg-max equals y (N,)."""
    checks.same_length(logits=logits, y=y)
    return (logits.argmax(-1) == y).double().mean().item()


def uses_batch_statistics(model) -> bool:
    """True when `model` normalises with the statistics of its input batch even in eval mode.

    Such a model (batch norm without running statistics) gives answers that depend on how a split
    is cut into batches, so every evaluation here feeds it the whole split as one batch.
    """
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is None
               for m in model.modules())


@torch.no_grad()
def outputs(model, x: torch.Tensor, *, device, batch_size: int = 1000) -> torch.Tensor:
    """model(x) in eval mode, in batches (one, for batch-statistics models), on the CPU: (N, ...) -> (N, C)."""
    checks.positive_int("batch_size", batch_size)
    if uses_batch_statistics(model):
        batch_size = max(len(x), 1)  # chunking would change the normalisation, hence the answer
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def predictions(model, x: torch.Tensor, *, device, batch_size: int = 1000) -> torch.Tensor:
    """Arg-max class (N,) of `model` in eval mode on x (N, ...)."""
    return outputs(model, x, device=device, batch_size=batch_size).argmax(-1)


def evaluate(model, x: torch.Tensor, y: torch.Tensor, *, device, loss: str = "cross_entropy",
             batch_size: int = 1000) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` in eval mode on (x (N, ...), y (N,)); accuracy is nan for MSE."""
    checks.same_length(x=x, y=y)
    out = outputs(model, x, device=device, batch_size=batch_size)
    value = loss_fn(loss, out, y.cpu()).item()
    return value, (accuracy(out, y.cpu()) if loss == "cross_entropy" else float("nan"))


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    checks.positive_int("n_classes", n_classes)
    checks.same_length(y_true=y_true, y_pred=y_pred)
    idx = y_true.long().cpu() * n_classes + y_pred.long().cpu()
    return torch.bincount(idx, minlength=n_classes * n_classes).view(n_classes, n_classes)


def calibration(probs: torch.Tensor, y: torch.Tensor, *, n_bins: int = 10) -> dict:
    """Reliability data of softmax `probs` (N, C) against y (N,): per-bin confidence, accuracy, count; and the ECE."""
    checks.positive_int("n_bins", n_bins)
    checks.same_length(probs=probs, y=y)
    conf, pred = probs.max(dim=1)
    correct = (pred == y).double()
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    count = torch.bincount(bins, minlength=n_bins).double()
    conf_sum = torch.bincount(bins, weights=conf.double(), minlength=n_bins)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    safe = count.clamp(min=1)
    ece = ((conf_sum - acc_sum).abs().sum() / len(y)).item()
    return {"confidence": conf_sum / safe, "accuracy": acc_sum / safe, "count": count, "ece": ece}


def param_count(model, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of `model` (only those with requires_grad if `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def global_norm(tensors) -> float:
    """Euclidean norm of all entries of `tensors` together (None entries skipped)."""
    sq = [t.detach().double().pow(2).sum() for t in tensors if t is not None]
    return float(torch.stack(sq).sum().sqrt()) if sq else 0.0
