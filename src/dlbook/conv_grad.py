"""Weight gradients of a single-channel valid convolution: the formula, the SGD step as a sum of
patches, and the size of the gradient (moments, Monte Carlo, correlated inputs, batch norm).

Topic module of chapter 10; imports only the core.

Used by chapters: 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import checks

# zero mean, unit variance; the last two are heavy-tailed (no exponential moment), all finite-variance
DISTRIBUTIONS = ("gaussian", "uniform", "rademacher", "exponential", "student_t5", "lognormal")


def _check_image(name: str, x) -> None:
    checks.tensor(name, x)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., H, W), got {tuple(x.shape)}")


def conv2d_valid(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y[..., i, j] = sum_{h,l} x[..., i+h, j+l] w[h, l]:
    (..., n1, n2) * (k1, k2) -> (..., n1-k1+1, n2-k2+1)."""
    _check_image("x", x)
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        got = getattr(w, "shape", type(w).__name__)
        raise ValueError(f"w must be a 2-D tensor (k1, k2), got {got}")
    (n1, n2), (k1, k2) = x.shape[-2:], w.shape
    if not (1 <= k1 <= n1 and 1 <= k2 <= n2):
        raise ValueError(f"w's shape {tuple(w.shape)} must lie between "
                         f"(1, 1) and the image size {(n1, n2)}")
    m1, m2 = n1 - k1 + 1, n2 - k2 + 1
    # one shifted copy of the image per kernel entry: exactly the sum in
    # the definition, no big patch tensor
    y = torch.zeros(*x.shape[:-2], m1, m2, device=x.device,
                    dtype=torch.result_type(x, w))
    for h in range(k1):
        for l in range(k2):
            y = y + w[h, l] * x[..., h:h + m1, l:l + m2]
    return y


def conv2d_weight_grad(x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """dw[..., h, l] = sum_{i,j} dy[..., i, j] x[..., i+h, j+l], the valid
    correlation of x with dy: (..., n, n), (..., m, m) -> (..., k, k)."""
    _check_image("x", x)
    _check_image("dy", dy)
    (n1, n2), (m1, m2) = x.shape[-2:], dy.shape[-2:]
    if not (1 <= m1 <= n1 and 1 <= m2 <= n2):
        raise ValueError(f"dy's spatial shape {(m1, m2)} must lie between "
                         f"(1, 1) and x's {(n1, n2)}")
    k1, k2 = n1 - m1 + 1, n2 - m2 + 1
    term = lambda h, l: (dy * x[..., h:h + m1, l:l + m2]).sum(dim=(-2, -1))
    rows = [torch.stack([term(h, l) for l in range(k2)], dim=-1)
            for h in range(k1)]
    return torch.stack(rows, dim=-2)


def patches(x: torch.Tensor, k: int) -> torch.Tensor:
    """All k x k patches of x as a view: (..., n1, n2) -> (..., n1-k+1, n2-k+1, k, k)."""
    _check_image("x", x)
    k = checks.integer("k", k, low=1, high=min(x.shape[-2:]))
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
    checks.positive("lr", lr)
    dw = conv2d_weight_grad(x, dy)
    dw = dw.reshape(-1, *dw.shape[-2:]).sum(dim=0)  # a batch's gradient is the sum of per-image ones
    if dw.shape != w.shape:
        raise ValueError(f"w has shape {tuple(w.shape)} but x and dy imply a kernel of shape {tuple(dw.shape)}")
    return w - lr * dw


def dw_moments_symbolic():
    """E[dw_hl] and Var[dw_hl] (sympy) for M = (n-k+1)^2 independent terms
    x*g with means mu, variances sigma^2."""
    import sympy as sp

    n, k = sp.symbols("n k", integer=True, positive=True)
    sx, sg = sp.symbols("sigma_x sigma_g", positive=True)
    mx, mg = sp.symbols("mu_x mu_g", real=True)
    M = (n - k + 1) ** 2  # one term x_(i+h, j+l) g_ij per output (i, j)
    ex2, eg2 = sx**2 + mx**2, sg**2 + mg**2
    mean = M * mx * mg  # E[x g] = E[x] E[g] by independence
    # E[dw^2] sums over pairs of terms (a, b): a = b gives E[x^2] E[g^2]
    # (M pairs); a != b pairs two different pixels and two different
    # upstream entries, all independent (M(M-1) pairs). Only first and
    # second moments enter: the distributions' shape is irrelevant.
    second = M * ex2 * eg2 + M * (M - 1) * mx**2 * mg**2
    var = sp.factor(sp.expand(second - mean**2))
    zero = {mx: 0, mg: 0}
    return {"n": n, "k": k, "sigma_x": sx, "sigma_g": sg, "mu_x": mx,
            "mu_g": mg, "mean": mean, "var": var,
            "mean0": mean.subs(zero), "var0": sp.factor(var.subs(zero))}


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

    n = checks.positive_int("n", n)
    k = checks.integer("k", k, low=1, high=n)
    h, l = checks.integer("h", h, low=0, high=k - 1), checks.integer("l", l, low=0, high=k - 1)
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


def sample_centred(dist: str, shape, *, generator: torch.Generator, dtype=torch.float32,
                   device=None) -> torch.Tensor:
    """i.i.d. draws with mean 0 and variance 1 from a named distribution, shape `shape`."""
    checks.choice("dist", dist, DISTRIBUTIONS)
    kw = dict(generator=generator, dtype=dtype, device=device)
    if dist == "gaussian":
        return torch.randn(shape, **kw)
    if dist == "student_t5":  # N(0,1) / sqrt(chi2_5 / 5): variance 5/3, tails ~ |t|^-5
        chi2 = torch.randn((5, *shape), **kw).pow(2).sum(0)
        return torch.randn(shape, **kw) / (chi2 / 5).sqrt() / math.sqrt(5 / 3)
    if dist == "lognormal":  # exp(N(0, 1/4)): skewed, heavier than any exponential tail
        s2 = 0.25
        z = torch.exp(math.sqrt(s2) * torch.randn(shape, **kw))
        return (z - math.exp(s2 / 2)) / math.sqrt((math.exp(s2) - 1) * math.exp(s2))
    u = torch.rand(shape, **kw)
    if dist == "uniform":
        return (u - 0.5) * math.sqrt(12.0)
    if dist == "rademacher":
        return torch.where(u < 0.5, -1.0, 1.0).to(dtype)
    return -torch.log1p(-u) - 1.0  # Exp(1) minus its mean: skewed, but an exponential (light) tail


def gaussian_transfer(size: int, corr: float) -> torch.Tensor:
    """Fourier transfer function (size, size) of a periodic Gaussian blur with sd `corr` pixels."""
    f = torch.fft.fftfreq(checks.positive_int("size", size), dtype=torch.float64)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    return torch.exp(-2 * math.pi**2 * checks.positive("corr", corr) ** 2 * f2)


def smooth_field(b: int, side: int, *, corr: float, generator: torch.Generator) -> torch.Tensor:
    """(b, side, side) unit-variance fields: white noise blurred by a Gaussian of sd `corr` pixels
    on a (2 side)^2 periodic canvas, then cropped (so no wrap-around within the crop); corr=0 is white."""
    if checks.nonnegative("corr", corr) == 0:
        return torch.randn(b, side, side, generator=generator, dtype=torch.float64)
    canvas = 2 * side
    noise = torch.randn(b, canvas, canvas, generator=generator, dtype=torch.float64)
    tf = gaussian_transfer(canvas, corr)
    field = torch.fft.ifft2(torch.fft.fft2(noise) * tf).real
    return field[:, :side, :side] / tf.pow(2).mean().sqrt()  # Parseval: per-pixel variance 1


def field_covariance(side: int, corr: float) -> torch.Tensor:
    """C[dx, dy] for |d| < side of `smooth_field` (a Gaussian of sd sqrt(2) corr, up to wrap-around)."""
    if corr == 0:
        c = torch.zeros(2 * side, 2 * side, dtype=torch.float64)
        c[0, 0] = 1.0
        return c
    tf2 = gaussian_transfer(2 * side, corr).pow(2)
    return torch.fft.ifft2(tf2).real / tf2.mean()


def dw_var_closed_form(n: int, k: int, *, x_corr: float, g_corr: float) -> float:
    """Var(dw_hl) = sum over pairs of positions p, q of C_g(p - q) C_x(p - q), X and dY independent."""
    m = checks.positive_int("n", n) - checks.integer("k", k, low=1, high=n) + 1
    cx, cg = field_covariance(n, x_corr), field_covariance(m, g_corr)
    d = torch.arange(-(m - 1), m)
    pairs = (m - d.abs()).double()  # how many (p, q) pairs have p - q = d along one axis
    prod = cx[d[:, None], d[None, :]] * cg[d[:, None], d[None, :]]
    return float(pairs @ prod @ pairs)


@dataclass(frozen=True)
class MonteCarlo:
    """A Monte Carlo estimate of sd(dw_hl) and its standard error over independent trials."""

    sd: float
    se: float
    trials: int


def dw_std_monte_carlo(n: int, *, k: int, dist: str = "gaussian", trials: int, seed: int,
                       sigma_x: float = 1.0, sigma_g: float = 1.0, x_corr: float = 0.0,
                       g_corr: float = 0.0, chunk: int = 64, device=None) -> MonteCarlo:
    """sd of dw_hl over `trials` random (X, dY) pairs, pooling the k*k entries of each trial.

    White pixels are drawn from `dist`; x_corr/g_corr > 0 give Gaussian fields with that correlation
    length in pixels instead. The mean of dw is 0, so its second moment is its variance.
    """
    n = checks.positive_int("n", n)
    k = checks.integer("k", k, low=1, high=n)
    trials = checks.integer("trials", trials, low=2)
    checks.choice("dist", dist, DISTRIBUTIONS)
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(checks.seed(seed))
    m, per_trial = n - k + 1, []

    def draw(b, side, corr):
        if corr > 0:
            return smooth_field(b, side, corr=corr, generator=g).to(device)
        return sample_centred(dist, (b, side, side), generator=g, device=device)

    for start in range(0, trials, chunk):
        b = min(chunk, trials - start)
        x = sigma_x * draw(b, n, x_corr)
        dy = sigma_g * draw(b, m, g_corr)
        per_trial.append(conv2d_weight_grad(x, dy).double().pow(2).mean(dim=(-2, -1)))
    s = torch.cat(per_trial)  # one mean square per independent trial
    var, var_se = float(s.mean()), float(s.std() / math.sqrt(trials))
    sd = math.sqrt(var)
    return MonteCarlo(sd, var_se / (2 * sd), trials)  # delta method: se(sqrt v) = se(v) / (2 sqrt v)


def dw_bn_rms(n: int, *, k: int, batch: int, trials: int, seed: int, sigma_x: float = 1.0,
              w_scale: float = 1.0, batch_norm: bool = True) -> MonteCarlo:
    """rms of the kernel gradient when batch norm (batch statistics over images and positions, no
    affine) follows the convolution; loss sum(G * BN(X * w)) with white X, G. Autograd throughout."""
    n, k = checks.positive_int("n", n), checks.integer("k", k, low=1, high=n)
    batch, trials = checks.integer("batch", batch, low=2), checks.integer("trials", trials, low=2)
    g = torch.Generator()
    g.manual_seed(checks.seed(seed))
    w0 = torch.randn(k, k, generator=g, dtype=torch.float64)
    w0 = w_scale * w0 / w0.norm()  # a fixed kernel of norm w_scale
    per_trial = []
    for _ in range(trials):
        x = sigma_x * torch.randn(batch, 1, n, n, generator=g, dtype=torch.float64)
        w = w0.clone().requires_grad_(True)
        y = torch.nn.functional.conv2d(x, w[None, None])
        if batch_norm:
            y = torch.nn.functional.batch_norm(y, None, None, training=True, eps=1e-12)
        gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
        (dw,) = torch.autograd.grad((gy * y).sum(), w)
        per_trial.append(dw.pow(2).mean())
    s = torch.stack(per_trial)
    rms = math.sqrt(float(s.mean()))
    return MonteCarlo(rms, float(s.std()) / math.sqrt(trials) / (2 * rms), trials)


def student_t_quantile(p: float, dof: int) -> float:
    """The p-quantile of Student's t with `dof` degrees of freedom (bisection on the exact CDF)."""
    p = checks.real("p", p, low=0.0, high=1.0, low_open=True, high_open=True)
    dof = checks.positive_int("dof", dof)
    if p < 0.5:
        return -student_t_quantile(1 - p, dof)
    # with t = sqrt(dof) tan(theta), P(0 < T < t) = c * int_0^theta cos(u)^(dof-1) du: a smooth
    # integrand on a bounded interval, integrated by Simpson's rule
    c = math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)) / math.sqrt(math.pi)

    def upper_half(theta):
        u = np.linspace(0.0, theta, 2001)
        f = np.cos(u) ** (dof - 1)
        return c * (u[1] - u[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, math.pi / 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if upper_half(mid) < p - 0.5 else (lo, mid)
    return math.sqrt(dof) * math.tan((lo + hi) / 2)


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
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError("x and y must be 1-D arrays of the same length >= 3")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    level = checks.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    lx, ly = np.log(x), np.log(y)
    dx = lx - lx.mean()
    slope = float(dx @ (ly - ly.mean()) / (dx @ dx))
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - intercept - slope * lx
    stderr = float(np.sqrt(resid @ resid / (x.size - 2) / (dx @ dx)))
    t = student_t_quantile(0.5 + level / 2, x.size - 2)
    return SlopeFit(slope, intercept, stderr, slope - t * stderr, slope + t * stderr, level)
