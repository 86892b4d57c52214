"""Dropout on the inputs of a linear model: expected loss, its minimizer, and batched training runs."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .runtime import progress, torch_generator

CONVENTIONS = ("inverted", "none")
OPTIMIZERS = ("sgd", "adam")


def _data(X, y):
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got X {X.shape} and y {y.shape}")
    return X, y


def _rate(rate, *, allow_zero=True):
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)):
        raise TypeError(f"rate must be a float, got {type(rate).__name__}")
    lo = 0.0 if allow_zero else np.nextafter(0.0, 1.0)
    if not lo <= rate < 1:
        raise ValueError(f"rate must be in {'[0' if allow_zero else '(0'}, 1), got {rate}")
    return float(rate)


def _convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def min_norm_solution(X, y) -> np.ndarray:
    """Minimum-norm least-squares weights pinv(X) y, shape (d,), for X (n, d) and y (n,)."""
    X, y = _data(X, y)
    return np.linalg.pinv(X) @ y


def penalty_strength(rate: float) -> float:
    """lambda = rate / (1 - rate): the weight of the dropout penalty under inverted dropout."""
    rate = _rate(rate)
    return rate / (1 - rate)


def dropout_inputs(x, keep, *, rate: float, convention: str = "inverted"):
    """Dropped inputs: x * keep, divided by the keep probability 1 - rate when inverted (PyTorch)."""
    rate, convention = _rate(rate), _convention(convention)
    return x * keep / (1 - rate) if convention == "inverted" else x * keep


def expected_dropout_loss(w, X, y, *, rate: float, convention: str = "inverted") -> float:
    """Closed form of E_mask mean_i (y_i - dropped(x_i) . w)^2 for w (d,), X (n, d), y (n,)."""
    X, y = _data(X, y)
    rate, convention = _rate(rate), _convention(convention)
    w = np.asarray(w, dtype=np.float64)
    keep = 1 - rate
    scale = 1.0 if convention == "inverted" else keep
    var = rate / keep if convention == "inverted" else keep * rate
    return float(np.mean((y - scale * X @ w) ** 2) + var * np.mean(X**2, axis=0) @ w**2)


def enumerated_dropout_loss(w, X, y, *, rate: float, convention: str = "inverted") -> float:
    """The same expectation by summing over all 2^d keep masks of each row, weighted by their probability."""
    X, y = _data(X, y)
    rate, convention = _rate(rate), _convention(convention)
    d = X.shape[1]
    if d > 16:
        raise ValueError(f"X must have at most 16 columns to enumerate masks, got {d}")
    total = 0.0
    for keep in itertools.product((0.0, 1.0), repeat=d):
        keep = np.array(keep)
        prob = np.prod(np.where(keep == 1, 1 - rate, rate))
        pred = dropout_inputs(X, keep, rate=rate, convention=convention) @ np.asarray(w, dtype=np.float64)
        total += prob * np.mean((y - pred) ** 2)
    return float(total)


def dropout_minimizer(X, y, *, rate: float, convention: str = "inverted") -> np.ndarray:
    """argmin_w of the expected dropout loss, shape (d,); at rate 0 the minimum-norm solution."""
    X, y = _data(X, y)
    rate, convention = _rate(rate), _convention(convention)
    if rate == 0:
        return min_norm_solution(X, y)
    G = X.T @ X
    # inverted dropout: ridge-like system (X^T X + lambda diag(X^T X)) w = X^T y
    w = np.linalg.solve(G + penalty_strength(rate) * np.diag(np.diag(G)), X.T @ y)
    return w if convention == "inverted" else w / (1 - rate)


def expected_loss_hessian(X, *, rate: float, convention: str = "inverted") -> np.ndarray:
    """Hessian (d, d) of the expected dropout loss (mean over the n rows of X)."""
    X, _ = _data(X, np.zeros(np.atleast_2d(X).shape[0]))
    rate, convention = _rate(rate), _convention(convention)
    G = X.T @ X / X.shape[0]
    if convention == "inverted":
        return 2 * (G + penalty_strength(rate) * np.diag(np.diag(G)))
    keep = 1 - rate
    return 2 * (keep**2 * G + keep * rate * np.diag(np.diag(G)))


def contraction_factor(H, lr: float) -> float:
    """max_i |1 - lr h_i| over the eigenvalues h_i of H: the error shrinks at least this much per GD step."""
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    h = np.linalg.eigvalsh(np.asarray(H, dtype=np.float64))
    return float(np.max(np.abs(1 - lr * h)))


def sgd_error_moments(X, y, *, rate: float, lr: float, batch_size: int, steps: int,
                      convention: str = "inverted", w0=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean (d,) and second moment (d, d) of w_T - w* for dropout SGD, by enumerating the masks."""
    X, y = _data(X, y)
    rate, convention = _rate(rate, allow_zero=False), _convention(convention)
    n, d = X.shape
    w_star = dropout_minimizer(X, y, rate=rate, convention=convention)
    EM, EMM = np.zeros((d + 1, d + 1)), np.zeros(((d + 1) ** 2, (d + 1) ** 2))
    for i in range(n):  # each sample: a uniform row and an independent keep mask
        for keep in itertools.product((0.0, 1.0), repeat=d):
            keep = np.array(keep)
            prob = np.prod(np.where(keep == 1, 1 - rate, rate)) / n
            xt = dropout_inputs(X[i], keep, rate=rate, convention=convention)
            A = 2 * np.outer(xt, xt)
            # the update of z = (w - w*, 1) is linear: z <- M z with M drawn independently of z
            M = np.eye(d + 1)
            M[:d, :d] -= lr * A
            M[:d, d] = -lr * (A @ w_star - 2 * xt * y[i])
            EM += prob * M
            EMM += prob * np.kron(M, M)
    # a minibatch averages B independent M's: E[Mbar x Mbar] = E[M x M]/B + (1 - 1/B) E[M] x E[M]
    K = EMM / batch_size + (1 - 1 / batch_size) * np.kron(EM, EM)
    z0 = np.append((np.zeros(d) if w0 is None else np.asarray(w0, float)) - w_star, 1.0)
    mean = np.linalg.matrix_power(EM, steps) @ z0
    second = (np.linalg.matrix_power(K, steps) @ np.kron(z0, z0)).reshape(d + 1, d + 1)
    return mean[:d], second[:d, :d]


def _check_positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def train_dropout(X, y, *, rates, steps: int, batch_size: int, lr, optimizer: str = "sgd",
                  convention: str = "inverted", seed: int, device="cpu", betas=(0.9, 0.999),
                  eps: float = 1e-8, dtype=torch.float64) -> dict:
    """One linear model per rate, from zero, side by side: weights (R, d), path (T+1, R, d), loss (T, R)."""
    # All rates share the same uniforms u and keep where u >= rate (common random numbers): run r
    # equals a run with rates=[rates[r]] and the same seed, and each rate's masks are Bernoulli(1 - rate).
    X, y = _data(X, y)
    rates = [_rate(r) for r in np.atleast_1d(np.asarray(rates, dtype=np.float64))]
    _convention(convention)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    _check_positive_int("steps", steps)
    _check_positive_int("batch_size", batch_size)
    n, d = X.shape
    R = len(rates)
    lr = torch.as_tensor(np.broadcast_to(np.asarray(lr, dtype=np.float64), (R,)).copy(), dtype=dtype, device=device)
    if not bool((lr > 0).all()):
        raise ValueError(f"lr must be positive (a float or one per rate), got {lr.tolist()}")
    Xt = torch.as_tensor(X, dtype=dtype, device=device)
    yt = torch.as_tensor(y, dtype=dtype, device=device)
    q = torch.as_tensor(rates, dtype=dtype, device=device)[:, None, None]
    scale = 1 / (1 - q) if convention == "inverted" else torch.ones_like(q)
    gen = torch_generator(seed, device)
    w = torch.zeros(R, d, dtype=dtype, device=device)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    path = torch.zeros(steps + 1, R, d, dtype=dtype, device=device)
    losses = torch.zeros(steps, R, dtype=dtype, device=device)
    for t in progress(range(1, steps + 1), desc="steps"):
        u = torch.rand(batch_size, d, generator=gen, dtype=dtype, device=device)
        rows = torch.randint(n, (batch_size,), generator=gen, device=device) if n > 1 else torch.zeros(
            batch_size, dtype=torch.long, device=device)
        xt = Xt[rows] * (u >= q) * scale  # (R, B, d)
        resid = yt[rows] - (xt * w[:, None, :]).sum(-1)  # (R, B)
        losses[t - 1] = (resid**2).mean(1)
        g = -2 * (xt * resid[..., None]).mean(1)  # gradient of the minibatch MSE, (R, d)
        if optimizer == "sgd":
            w = w - lr[:, None] * g
        else:
            m = betas[0] * m + (1 - betas[0]) * g
            v = betas[1] * v + (1 - betas[1]) * g**2
            denom = (v / (1 - betas[1] ** t)).sqrt() + eps
            w = w - lr[:, None] / (1 - betas[0] ** t) * m / denom
        path[t] = w
    return {"weights": w.cpu().numpy(), "path": path.cpu().numpy(), "loss": losses.cpu().numpy(),
            "rates": np.array(rates)}


def train_torch_dropout(X, y, *, rate: float, steps: int, batch_size: int, lr: float, seed: int,
                        device="cpu") -> np.ndarray:
    """The same model from torch.nn (Dropout, bias-free Linear, zero init) and torch.optim.SGD: weights (d,)."""
    X, y = _data(X, y)
    rate = _rate(rate)
    _check_positive_int("steps", steps)
    _check_positive_int("batch_size", batch_size)
    model = torch.nn.Sequential(torch.nn.Dropout(rate), torch.nn.Linear(X.shape[1], 1, bias=False))
    model = model.to(device=device, dtype=torch.float64)
    torch.nn.init.zeros_(model[1].weight)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    Xt = torch.as_tensor(X, device=device).repeat(-(-batch_size // len(X)), 1)[:batch_size]
    yt = torch.as_tensor(y, device=device).repeat(-(-batch_size // len(y)))[:batch_size]
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    # nn.Dropout draws from torch's global generator: seed it inside a fork, leaving the caller's state alone
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.train()
        for _ in progress(range(steps), desc="steps"):
            loss = torch.nn.functional.mse_loss(model(Xt).squeeze(1), yt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model[1].weight.detach().cpu().numpy()[0]
