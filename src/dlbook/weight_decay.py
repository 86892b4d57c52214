"""Weight decay and L2 regularization (chapter 5): the decay factor, the models, and what to measure.

The penalty is lam * ||w||^2 (no 1/2). One SGD step on L + lam ||w||^2 is
w <- (1 - 2 lr lam) w - lr grad L(w): a multiplicative decay by 1 - 2 lr lam, then a plain step.
PyTorch's `weight_decay` argument adds wd * w to the gradient, so it is the penalty
lam = wd / 2, and its per-step decay factor is 1 - lr * wd.

Used by chapters: 5.
"""

from __future__ import annotations

import torch
from torch import nn

from . import checks
from .data import stratified_split
from .runtime import seeded, torch_generator

IMAGE_PIXELS = 28 * 28
N_CLASSES = 10


def torch_weight_decay(lam: float) -> float:
    """PyTorch's `weight_decay` argument for the penalty lam ||w||^2: wd = 2 lam."""
    return 2 * checks.nonnegative("lam", lam)


def decay_factor(*, lr: float, lam: float) -> float:
    """The factor 1 - 2 lr lam that one SGD step on L + lam ||w||^2 multiplies w by."""
    return 1 - 2 * checks.positive("lr", lr) * checks.nonnegative("lam", lam)


def regression_data(n: int, d: int, *, seed: int, noise: float = 0.1, max_scale: float = 3.0,
                    dtype=torch.float64):
    """X (n, d) with column scales from 1 to max_scale, and y = X w_true + noise (n,)."""
    checks.positive_int("n", n)
    checks.positive_int("d", d)
    g = torch_generator(seed)
    scales = torch.logspace(0, 1, d, dtype=dtype) ** torch.log10(torch.tensor(
        checks.real("max_scale", max_scale, low=1.0), dtype=dtype))
    X = torch.randn(n, d, generator=g, dtype=dtype) * scales
    w_true = torch.randn(d, generator=g, dtype=dtype)
    return X, X @ w_true + checks.nonnegative("noise", noise) * torch.randn(n, generator=g, dtype=dtype)


def linear_model(d: int, *, dtype=torch.float64) -> nn.Linear:
    """A bias-free linear model (d,) -> (1,) started at w = 0."""
    model = nn.Linear(checks.positive_int("d", d), 1, bias=False).to(dtype)
    nn.init.zeros_(model.weight)
    return model


def softmax_regression(*, seed: int) -> nn.Sequential:
    """Multinomial logistic regression on MNIST: (N, 1, 28, 28) -> logits (N, 10)."""
    return seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(IMAGE_PIXELS, N_CLASSES)), seed=seed)


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each row of weight (..., rows, cols) -> (..., rows)."""
    return checks.tensor("weight", weight).norm(dim=-1)


def scale_invariance(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, *, c: float) -> dict:
    """For the first layer's rows: loss change when scaled by c, and max |cos(row, its gradient)|.

    Scale invariance L(c w) = L(w) implies <w, grad L(w)> = 0 for every row w (Euler).
    """
    checks.positive("c", c)
    weight = model[1].weight
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    base = loss_fn(model(x), y)
    (grad,) = torch.autograd.grad(base, weight)
    with torch.no_grad():
        weight.mul_(c)
        scaled = loss_fn(model(x), y)
        weight.div_(c)
    cos = (weight * grad).sum(1) / (row_norms(weight) * row_norms(grad)).clamp_min(1e-300)
    return {"loss": base.item(), "loss change": (scaled - base).item(), "max |cos|": cos.abs().max().item()}


def blank_pixels(x: torch.Tensor) -> torch.Tensor:
    """Bool (784,): pixels that are 0 in every image of x (N, 1, 28, 28); their weights get no data gradient."""
    return checks.tensor("x", x, ndim=4).flatten(1).eq(0).all(0)


def pixel_weight_norms(weight: torch.Tensor) -> torch.Tensor:
    """Norm over the classes of each pixel's weights: weight (..., 10, 784) -> (..., 28, 28)."""
    w = checks.tensor("weight", weight)
    return w.norm(dim=-2).reshape(*w.shape[:-2], 28, 28)


def small_mnist(data, *, n_train: int, factor: int = 2):
    """(x, y, x_test, y_test): n_train training digits (the first n_train / 10 of each class) and all
    test digits, average-pooled by `factor`.

    Pooling 28x28 to 14x14 cuts the cost of a sweep fourfold and keeps the digits legible.
    """
    checks.integer("n_train", n_train, low=N_CLASSES, high=len(data.y_train))
    if n_train % N_CLASSES:
        raise ValueError(f"n_train must be a multiple of {N_CLASSES}, got {n_train}")
    checks.positive_int("factor", factor)
    # the stored digits may be sorted by class: take the same number of each class
    idx = torch.cat([(data.y_train == c).nonzero().flatten()[: n_train // N_CLASSES] for c in range(N_CLASSES)])
    if len(idx) != n_train:
        raise ValueError(f"n_train: fewer than {n_train // N_CLASSES} training digits in some class")
    pool = lambda x: nn.functional.avg_pool2d(x, factor)
    return pool(data.x_train[idx]), data.y_train[idx], pool(data.x_test), data.y_test


def mlp(*, inputs: int = IMAGE_PIXELS, hidden: int = 64, batch_norm: bool = False, bn_eps: float = 1e-5,
        seed: int) -> nn.Sequential:
    """inputs -> hidden -> 10 ReLU net; with batch_norm, BN (batch statistics only) after a bias-free first layer.

    With batch norm and a negligible bn_eps every row of the first weight matrix is exactly scale-invariant:
    the loss does not change when a row is multiplied by c > 0 (PyTorch's eps = 1e-5 breaks this
    by a relative amount of order eps / variance).
    """
    checks.positive("bn_eps", bn_eps)
    inputs, hidden = checks.positive_int("inputs", inputs), checks.positive_int("hidden", hidden)
    checks.boolean("batch_norm", batch_norm)

    def build():
        norm = [nn.BatchNorm1d(hidden, eps=bn_eps, track_running_stats=False)] if batch_norm else []
        return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden, bias=not batch_norm), *norm,
                             nn.ReLU(), nn.Linear(hidden, N_CLASSES))

    return seeded(build, seed=seed)


def adamw_step(w, grad, m, v, t: int, *, lr: float, wd: float,
               betas=(0.9, 0.999), eps: float = 1e-8):
    """One AdamW step: shrink w by 1 - lr wd, then Adam's step on grad.

    Returns (w, m, v), each of the shape of w; wd = 0 is plain Adam.
    """
    b1, b2 = betas
    w = w * (1 - lr * wd)  # decoupled: the decay never enters m or v
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


def holdout(x: torch.Tensor, y: torch.Tensor, *, n_val_per_class: int, seed: int):
    """(x_fit, y_fit, x_val, y_val): n_val_per_class digits of each class held out, both parts shuffled."""
    checks.positive_int("n_val_per_class", n_val_per_class)
    if int(torch.bincount(checks.tensor("y", y)).min()) <= n_val_per_class:
        raise ValueError(f"n_val_per_class: some class has at most {n_val_per_class} examples")
    idx = torch.arange(len(y)).numpy()
    fit_idx, _, val_idx, _ = stratified_split(idx, y.numpy(), n_test_per_class=n_val_per_class, seed=seed)
    fit_idx, val_idx = torch.from_numpy(fit_idx), torch.from_numpy(val_idx)
    return x[fit_idx], y[fit_idx], x[val_idx], y[val_idx]


def softmax_accuracy(params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy (K,) of K stacked softmax regressions {"1.weight": (K, 10, 784), "1.bias": (K, 10)} on x (N, ...)."""
    weight, bias = params["1.weight"], params["1.bias"]
    logits = torch.einsum("nd,kcd->knc", x.flatten(1).to(weight), weight) + bias[:, None]
    return (logits.argmax(-1) == y.to(weight.device)).double().mean(1)


def pixel_gradient_rms(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *,
                       batch_size: int) -> torch.Tensor:
    """Gradient scale per pixel of a softmax regression weight (10, 784), bias (10,), shape (28, 28).

    Root-mean-square over the consecutive minibatches of x (N, 1, 28, 28) of the norm over the
    classes of the mean cross-entropy gradient of that pixel's weights: X_b^T (softmax - onehot) / B.
    """
    checks.positive_int("batch_size", batch_size)
    xf = checks.tensor("x", x, ndim=4).flatten(1).to(weight)
    if len(xf) % batch_size:
        raise ValueError(f"batch_size must divide the {len(xf)} examples, got {batch_size}")
    err = torch.softmax(xf @ weight.T + bias, dim=1) - nn.functional.one_hot(y, N_CLASSES).to(weight)
    xb, eb = xf.reshape(-1, batch_size, xf.shape[1]), err.reshape(-1, batch_size, N_CLASSES)
    grads = torch.einsum("bnd,bnc->bdc", xb, eb) / batch_size  # (batches, 784, 10)
    return grads.norm(dim=-1).pow(2).mean(0).sqrt().reshape(28, 28)
