"""Dropout on the inputs of a linear model: expected loss, its minimizer, exact SGD moments, models.

Topic module for chapters 6 and 7. Notation: the drop rate p is the probability of zeroing an
input (the argument of torch.nn.Dropout); 1 - p is the keep probability. "inverted" dropout
divides kept inputs by 1 - p in training (PyTorch); "none" trains on the raw kept inputs and
multiplies the weights by 1 - p at test time. Training runs go through `train.fit` and
`sweep.fit_stacked`.

Used by chapters: 6, 7.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import torch

from . import checks
from .runtime import global_seed
from .sweep import fit_stacked

CONVENTIONS = ("inverted", "none")


def _data(X, y):
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got X {X.shape} and y {y.shape}")
    return X, y


def _rate_convention(rate, convention):
    return checks.probability("rate", rate), checks.choice("convention", convention, CONVENTIONS)


def min_norm_solution(X, y) -> np.ndarray:
    """Minimum-norm least-squares weights pinv(X) y, shape (d,), for X (n, d) and y (n,)."""
    X, y = _data(X, y)
    return np.linalg.pinv(X) @ y


def penalty_strength(rate: float) -> float:
    """lambda = p / (1 - p): the weight of the dropout penalty under inverted dropout."""
    p = checks.probability("rate", rate)
    return p / (1 - p)


def dropout_inputs(x, keep, *, rate: float, convention: str = "inverted"):
    """Dropped inputs x * keep, divided by the keep probability 1 - p when inverted."""
    p, convention = _rate_convention(rate, convention)
    return x * keep / (1 - p) if convention == "inverted" else x * keep


def expected_dropout_loss(w, X, y, *, rate: float, convention: str = "inverted") -> float:
    """Closed form of E_mask mean_i (y_i - dropped(x_i) . w)^2, w (d,), X (n, d), y (n,)."""
    X, y = _data(X, y)
    p, convention = _rate_convention(rate, convention)
    w = np.asarray(w, dtype=np.float64)
    scale = 1.0 if convention == "inverted" else 1 - p
    var = p / (1 - p) if convention == "inverted" else p * (1 - p)
    return float(np.mean((y - scale * X @ w) ** 2) + var * np.mean(X**2, axis=0) @ w**2)


def _masks(d, p):
    """All 2^d keep masks (d,) with their probabilities (d <= 16)."""
    checks.integer("d", d, low=1, high=16)
    for keep in itertools.product((0.0, 1.0), repeat=d):
        keep = np.array(keep)
        yield keep, float(np.prod(np.where(keep == 1, 1 - p, p)))


def enumerated_dropout_loss(w, X, y, *, rate: float, convention: str = "inverted") -> float:
    """The same expectation by summing over all 2^d keep masks of a row, weighted by probability."""
    X, y = _data(X, y)
    p, convention = _rate_convention(rate, convention)
    w = np.asarray(w, dtype=np.float64)
    return float(sum(prob * np.mean((y - dropout_inputs(X, keep, rate=p, convention=convention) @ w) ** 2)
                     for keep, prob in _masks(X.shape[1], p)))


def dropout_minimizer(X, y, *, rate: float, convention: str = "inverted") -> np.ndarray:
    """argmin_w of the expected dropout loss, shape (d,); at rate 0 the minimum-norm solution."""
    X, y = _data(X, y)
    p, convention = _rate_convention(rate, convention)
    if p == 0:
        return min_norm_solution(X, y)
    G = X.T @ X
    # inverted dropout: ridge-like system (X^T X + lambda diag(X^T X)) w = X^T y
    w = np.linalg.solve(G + penalty_strength(p) * np.diag(np.diag(G)), X.T @ y)
    return w if convention == "inverted" else w / (1 - p)


def expected_loss_hessian(X, *, rate: float, convention: str = "inverted") -> np.ndarray:
    """Hessian (d, d) of the expected dropout loss (mean over the n rows of X)."""
    X, _ = _data(X, np.zeros(np.atleast_2d(X).shape[0]))
    p, convention = _rate_convention(rate, convention)
    G = X.T @ X / X.shape[0]
    if convention == "inverted":
        return 2 * (G + penalty_strength(p) * np.diag(np.diag(G)))
    return 2 * ((1 - p) ** 2 * G + (1 - p) * p * np.diag(np.diag(G)))


def contraction_factor(H, lr: float) -> float:
    """max_i |1 - lr h_i| over the eigenvalues h_i of H: the mean error shrinks this much per step."""
    lr = checks.positive("lr", lr)
    h = np.linalg.eigvalsh(np.asarray(H, dtype=np.float64))
    return float(np.max(np.abs(1 - lr * h)))


def curvature_lr(X, *, rate: float, convention: str = "inverted") -> float:
    """1 / h_max, h_max the largest eigenvalue of the expected-loss Hessian: a stable SGD step."""
    return float(1 / np.linalg.eigvalsh(expected_loss_hessian(X, rate=rate, convention=convention))[-1])


def sgd_moments(X, y, *, rate: float, lr: float, batch_size: int, steps: int,
                convention: str = "inverted", w0=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean (d,) and covariance (d, d) of the SGD iterate w_T, by enumerating the masks.

    Each minibatch draws `batch_size` rows with replacement, each with its own mask, and steps on
    the minibatch mean of the squared error: `train.fit` with sampling="replacement".
    """
    X, y = _data(X, y)
    p, convention = _rate_convention(rate, convention)
    lr = checks.positive("lr", lr)
    B, steps = checks.positive_int("batch_size", batch_size), checks.positive_int("steps", steps)
    n, d = X.shape
    EM, EMM = np.zeros((d + 1, d + 1)), np.zeros(((d + 1) ** 2, (d + 1) ** 2))
    for i in range(n):
        for keep, prob in _masks(d, p):
            xt = dropout_inputs(X[i], keep, rate=p, convention=convention)
            # one sample's update of z = (w, 1) is linear, z <- M z, with M independent of z
            M = np.eye(d + 1)
            M[:d, :d] -= lr * 2 * np.outer(xt, xt)
            M[:d, d] = lr * 2 * y[i] * xt
            EM += prob / n * M
            EMM += prob / n * np.kron(M, M)
    # a minibatch averages B independent M's: E[Mbar x Mbar] = E[M x M]/B + (1 - 1/B) E[M] x E[M]
    K = EMM / B + (1 - 1 / B) * np.kron(EM, EM)
    z0 = np.append(np.zeros(d) if w0 is None else np.asarray(w0, dtype=np.float64), 1.0)
    mean = np.linalg.matrix_power(EM, steps) @ z0
    second = (np.linalg.matrix_power(K, steps) @ np.kron(z0, z0)).reshape(d + 1, d + 1)
    return mean[:d], second[:d, :d] - np.outer(mean[:d], mean[:d])


class DropoutLinear(torch.nn.Module):
    """f(x) = dropped(x) . w without bias, w from zero; x (B, d) -> (B,). Rate and convention frozen."""

    def __init__(self, d: int, *, rate: float, convention: str = "inverted", dtype=torch.float64):
        super().__init__()
        p, convention = _rate_convention(rate, convention)
        self.weight = torch.nn.Parameter(torch.zeros(checks.positive_int("d", d), dtype=dtype))
        # parameters, not buffers, so that sweep.fit_stacked stacks them; never trained (frozen)
        self.rate = torch.nn.Parameter(torch.tensor(p, dtype=dtype), requires_grad=False)
        self.inverted = torch.nn.Parameter(torch.tensor(float(convention == "inverted"), dtype=dtype),
                                           requires_grad=False)

    def forward(self, x):
        params = {"weight": self.weight[None], "rate": self.rate[None], "inverted": self.inverted[None]}
        return self.stacked_forward(params, x[None])[0]

    def stacked_forward(self, params, x):
        """K models at once: params of shapes (K, d), (K,), (K,); x (K, B, d) -> (K, B)."""
        p, inv = params["rate"][:, None, None], params["inverted"][:, None, None]
        if self.training:  # a fresh mask per input, row and model: keep with probability 1 - p
            x = x * (torch.rand_like(x) >= p) * (inv / (1 - p) + 1 - inv)
        else:  # test time: no mask; without rescaling in training, weights times 1 - p
            x = x * (inv + (1 - inv) * (1 - p))
        return (x * params["weight"][:, None, :]).sum(-1)


def fit_linear(X, y, *, rates, cfg, seed: int, device, conventions="inverted", lrs=None) -> np.ndarray:
    """Train one DropoutLinear per rate side by side (sweep.fit_stacked); trained weights (K, d).

    `lrs` gives each model its own SGD learning rate: model k sees the inputs s_k x with
    s_k = sqrt(lrs[k] / cfg.lr), and SGD on v with w = s_k v is SGD on w with lr cfg.lr s_k^2.
    Masks come from `seed` (torch's generator inside a fork), minibatch orders from seed + k.
    """
    X, y = _data(X, y)
    rates = [checks.probability("rate", r) for r in np.atleast_1d(rates).tolist()]
    k = len(rates)
    conventions = [conventions] * k if isinstance(conventions, str) else list(conventions)
    lrs = np.full(k, cfg.lr) if lrs is None else np.asarray(lrs, dtype=np.float64)
    if len(conventions) != k or lrs.shape != (k,):
        raise ValueError(f"conventions and lrs need one entry per rate ({k})")
    if not np.all(lrs > 0) or (cfg.optimizer != "sgd" and not np.allclose(lrs, cfg.lr)):
        raise ValueError("lrs must be positive, and differ from cfg.lr only for optimizer 'sgd'")
    s = np.sqrt(lrs / cfg.lr)
    models = [DropoutLinear(X.shape[1], rate=r, convention=c) for r, c in zip(rates, conventions)]
    x = torch.as_tensor(s[:, None, None] * X[None])
    yk = torch.as_tensor(np.broadcast_to(y, (k, len(y))).copy())
    with global_seed(seed, device):
        fit_stacked(models, x, yk, cfg=cfg, seeds=[checks.seed(seed) + j for j in range(k)],
                    device=device, frozen=("rate", "inverted"))
    return s[:, None] * np.stack([m.weight.detach().cpu().numpy() for m in models])


def torch_model(d: int, *, rate: float) -> torch.nn.Sequential:
    """PyTorch's own layers: Dropout(rate), then a bias-free Linear(d, 1) from zero, float64."""
    model = torch.nn.Sequential(torch.nn.Dropout(checks.probability("rate", rate)),
                                torch.nn.Linear(checks.positive_int("d", d), 1, bias=False))
    torch.nn.init.zeros_(model[1].weight)
    return model.double()


@contextlib.contextmanager
def recording(model: torch.nn.Sequential):
    """Record, for every training forward of a torch_model, its keep mask (B, d) and weights (d,) before the step."""
    rec = {"masks": [], "weights": []}

    def hook(layer, inputs, output):
        if layer.training:
            rec["masks"].append((output != 0).cpu())
            rec["weights"].append(model[1].weight.detach()[0].cpu().clone())

    handle = model[0].register_forward_hook(hook)
    try:
        yield rec
    finally:
        handle.remove()
