"""Weight gradients of a single-channel valid convolution: the formula, the SGD step as a sum of patches, and its statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DISTRIBUTIONS = ("gaussian", "uniform", "rademacher", "exponential")


def _check_image(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., H, W), got {tuple(x.shape)}")


def conv2d_valid(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y[..., i, j] = sum_{h,l} x[..., i+h, j+l] w[h, l]: (..., n1, n2) * (k1, k2) -> (..., n1-k1+1, n2-k2+1)."""
    _check_image("x", x)
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise ValueError(f"w must be a 2-D tensor (k1, k2), got {getattr(w, 'shape', type(w).__name__)}")
    (n1, n2), (k1, k2) = x.shape[-2:], w.shape
    if not (1 <= k1 <= n1 and 1 <= k2 <= n2):
        raise ValueError(f"w's shape {tuple(w.shape)} must lie between (1, 1) and the image size {(n1, n2)}")
    m1, m2 = n1 - k1 + 1, n2 - k2 + 1
    # one shifted copy of the image per kernel entry: exactly the sum in the definition, no big patch tensor
    y = torch.zeros(*x.shape[:-2], m1, m2, dtype=torch.result_type(x, w), device=x.device)
    for h in range(k1):
        for l in range(k2):
            y = y + w[h, l] * x[..., h:h + m1, l:l + m2]
    return y


def conv2d_weight_grad(x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """dw[..., h, l] = sum_{i,j} dy[..., i, j] x[..., i+h, j+l] (valid correlation of x with dy): (..., n, n), (..., m, m) -> (..., k, k)."""
    _check_image("x", x)
    _check_image("dy", dy)
    (n1, n2), (m1, m2) = x.shape[-2:], dy.shape[-2:]
    if not (1 <= m1 <= n1 and 1 <= m2 <= n2):
        raise ValueError(f"dy's spatial shape {(m1, m2)} must lie between (1, 1) and x's {(n1, n2)}")
    k1, k2 = n1 - m1 + 1, n2 - m2 + 1
    dw = [[(dy * x[..., h:h + m1, l:l + m2]).sum(dim=(-2, -1)) for l in range(k2)] for h in range(k1)]
    return torch.stack([torch.stack(row, dim=-1) for row in dw], dim=-2)


def patches(x: torch.Tensor, k: int) -> torch.Tensor:
    """All k x k patches of x as a view: (..., n1, n2) -> (..., n1-k+1, n2-k+1, k, k)."""
    _check_image("x", x)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(x.shape[-2:]):
        raise ValueError(f"k must be an int in [1, {min(x.shape[-2:])}], got {k!r}")
    return x.unfold(-2, k, 1).unfold(-2, k, 1)


def weighted_patches(x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """The terms of dw: dy[i, j] * patch_{i,j}(x), shape (..., m, m, k, k); their sum over (i, j) is dw."""
    _check_image("dy", dy)
    k = x.shape[-1] - dy.shape[-1] + 1
    if x.shape[-2] - dy.shape[-2] + 1 != k:
        raise ValueError("only square kernels: x and dy must differ by the same amount in both spatial dims")
    return dy[..., None, None] * patches(x, k)


def sgd_step(w: torch.Tensor, x: torch.Tensor, dy: torch.Tensor, *, lr: float) -> torch.Tensor:
    """One SGD step, w - lr * sum over images and (i, j) of dy[i, j] patch_{i,j}(x): (k, k) -> (k, k)."""
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    dw = conv2d_weight_grad(x, dy)
    dw = dw.reshape(-1, *dw.shape[-2:]).sum(dim=0)  # a batch's gradient is the sum of per-image ones
    if dw.shape != w.shape:
        raise ValueError(f"w has shape {tuple(w.shape)} but x and dy imply a kernel of shape {tuple(dw.shape)}")
    return w - lr * dw


def dw_moments_symbolic():
    """E[dw_hl] and Var[dw_hl] (sympy) for M = (n-k+1)^2 independent terms x*g with means mu, variances sigma^2."""
    import sympy as sp

    n, k = sp.symbols("n k", integer=True, positive=True)
    sx, sg = sp.symbols("sigma_x sigma_g", positive=True)
    mx, mg = sp.symbols("mu_x mu_g", real=True)
    M = (n - k + 1) ** 2  # one term x_(i+h, j+l) g_ij per output position (i, j)
    ex2, eg2 = sx**2 + mx**2, sg**2 + mg**2
    mean = M * mx * mg  # E[x g] = E[x] E[g] by independence
    # E[dw^2] = sum over pairs of terms (a, b): a = b gives E[x^2] E[g^2] (M pairs); a != b pairs two
    # different pixels and two different upstream entries, all independent (M(M-1) pairs).
    # Only first and second moments enter, so the shape of the distributions (normal or not) is irrelevant.
    second = M * ex2 * eg2 + M * (M - 1) * mx**2 * mg**2
    var = sp.factor(sp.expand(second - mean**2))
    zero = {mx: 0, mg: 0}
    return {"n": n, "k": k, "sigma_x": sx, "sigma_g": sg, "mu_x": mx, "mu_g": mg,
            "mean": mean, "var": var, "mean0": mean.subs(zero), "var0": sp.factor(var.subs(zero))}


def expectation(expr, moments: dict):
    """E[expr] for a polynomial in independent variables; `moments[v]` maps a power p to E[v**p] (sympy)."""
    import sympy as sp

    poly = sp.Poly(sp.expand(expr), *moments)
    total = 0
    for powers, coeff in poly.terms():
        term = coeff
        for v, p in zip(moments, powers):
            if p:
                term *= moments[v](p)
        total += term
    return sp.expand(total)


def dw_moments_exact(n: int, k: int, *, h: int = 0, l: int = 0):
    """Exact (mean, variance) of dw_hl on a concrete n x n image by expanding the polynomial; any higher moments."""
    import sympy as sp

    if not (isinstance(n, int) and isinstance(k, int) and 1 <= k <= n):
        raise ValueError(f"need ints with 1 <= k <= n, got n={n!r}, k={k!r}")
    if not (0 <= h < k and 0 <= l < k):
        raise ValueError(f"h and l must lie in [0, {k}), got h={h}, l={l}")
    m = n - k + 1
    sx, sg = sp.symbols("sigma_x sigma_g", positive=True)
    mx, mg = sp.symbols("mu_x mu_g", real=True)
    xs = sp.Matrix(n, n, lambda a, b: sp.Symbol(f"x_{a}_{b}"))
    gs = sp.Matrix(m, m, lambda a, b: sp.Symbol(f"g_{a}_{b}"))
    dw = sum(xs[i + h, j + l] * gs[i, j] for i in range(m) for j in range(m))

    def moment_fn(mu, s, name):
        # moments of order >= 3 stay free symbols: the answer must not depend on them
        return lambda p: {1: mu, 2: s**2 + mu**2}.get(p, sp.Symbol(f"E_{name}{p}"))

    moments = {v: moment_fn(mx, sx, "x") for v in xs if v in dw.free_symbols}
    moments |= {v: moment_fn(mg, sg, "g") for v in gs}
    mean = expectation(dw, moments)
    return mean, sp.factor(expectation(dw**2, moments) - mean**2)


def sample_centred(dist: str, shape, *, generator: torch.Generator, dtype=torch.float32, device=None) -> torch.Tensor:
    """i.i.d. draws with mean 0 and variance 1 from a named distribution, shape `shape`."""
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {DISTRIBUTIONS}, got {dist!r}")
    kw = dict(generator=generator, dtype=dtype, device=device)
    if dist == "gaussian":
        return torch.randn(shape, **kw)
    u = torch.rand(shape, **kw)
    if dist == "uniform":
        return (u - 0.5) * math.sqrt(12.0)
    if dist == "rademacher":
        return torch.where(u < 0.5, -1.0, 1.0).to(dtype)
    return -torch.log1p(-u) - 1.0  # Exp(1) minus its mean: skewed, heavy right tail


def dw_std_monte_carlo(n: int, *, k: int, dist: str, trials: int, seed: int, sigma_x: float = 1.0,
                       sigma_g: float = 1.0, chunk: int = 64, device=None) -> float:
    """Sample standard deviation of dw_hl over `trials` random (X, dY) pairs, pooling all k*k entries."""
    if not (isinstance(n, int) and isinstance(k, int) and 1 <= k <= n):
        raise ValueError(f"need ints with 1 <= k <= n, got n={n!r}, k={k!r}")
    if not (isinstance(trials, int) and trials >= 2):
        raise ValueError(f"trials must be an int >= 2, got {trials!r}")
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(seed)
    m, sq = n - k + 1, []
    for start in range(0, trials, chunk):
        b = min(chunk, trials - start)
        x = sigma_x * sample_centred(dist, (b, n, n), generator=g, device=device)
        dy = sigma_g * sample_centred(dist, (b, m, m), generator=g, device=device)
        sq.append(conv2d_weight_grad(x, dy).double().pow(2).flatten())
    # the mean is known to be 0, so the second moment is the variance
    return float(torch.cat(sq).mean().sqrt())


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares line log y = a + slope * log x, with a two-sided confidence interval for the slope."""

    slope: float
    intercept: float
    stderr: float
    low: float
    high: float
    level: float


def loglog_slope(x, y, *, level: float = 0.95) -> SlopeFit:
    """Fit log y against log x (natural logs) by least squares; t-interval for the slope at `level`."""
    from scipy.special import stdtrit  # Student-t quantile; much lighter to import than scipy.stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError("x and y must be 1-D arrays of the same length >= 3")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    lx, ly = np.log(x), np.log(y)
    dx = lx - lx.mean()
    slope = float(dx @ (ly - ly.mean()) / (dx @ dx))
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - intercept - slope * lx
    stderr = float(np.sqrt(resid @ resid / (x.size - 2) / (dx @ dx)))
    t = float(stdtrit(x.size - 2, 0.5 + level / 2))
    return SlopeFit(slope, intercept, stderr, slope - t * stderr, slope + t * stderr, level)
