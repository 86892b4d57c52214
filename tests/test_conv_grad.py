"""Chapter 10: weight gradients of a valid convolution, the SGD step as a sum of patches, and dw statistics."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F


from dlbook import conv_grad as G
from dlbook.conv_grad import (DISTRIBUTIONS, conv2d_valid, conv2d_weight_grad, dw_moments_exact, dw_moments_symbolic,
                              dw_std_monte_carlo, loglog_slope, patches, sample_centred, sgd_step, weighted_patches)


def gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@pytest.mark.parametrize("n,k", [(5, 1), (6, 3), (9, 4), (7, 7)])
def test_forward_matches_torch(n, k):
    g = gen(n * 10 + k)
    x = torch.randn(3, n, n, generator=g, dtype=torch.float64)
    w = torch.randn(k, k, generator=g, dtype=torch.float64)
    assert torch.allclose(conv2d_valid(x, w), F.conv2d(x[:, None], w[None, None])[:, 0], atol=1e-12)


@pytest.mark.parametrize("n,k", [(5, 2), (8, 3), (12, 5), (6, 6)])
def test_weight_grad_matches_autograd_and_is_a_correlation(n, k):
    g = gen(n + 100 * k)
    x = torch.randn(2, n, n, generator=g, dtype=torch.float64)
    w = torch.randn(k, k, generator=g, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, n - k + 1, n - k + 1, generator=g, dtype=torch.float64)
    F.conv2d(x[:, None], w[None, None]).backward(dy[:, None])
    ours = conv2d_weight_grad(x, dy)
    assert ours.shape == (2, k, k)
    assert torch.allclose(ours.sum(0), w.grad, atol=1e-12)
    assert torch.allclose(ours[1], conv2d_valid(x[1], dy[1]), atol=1e-12)
    assert torch.allclose(weighted_patches(x, dy).sum(dim=(-4, -3)), ours, atol=1e-12)


def test_gradcheck_float64():
    g = gen(3)
    x = torch.randn(6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv2d_valid, (x, w))


def test_sgd_step_is_weighted_patch_sum_and_descends():
    g = gen(4)
    x = torch.rand(10, 10, generator=g, dtype=torch.float64)
    w_star = torch.tensor([[-1.0, 0.0, 1.0]] * 3, dtype=torch.float64)
    target = conv2d_valid(x, w_star)
    w = torch.zeros(3, 3, dtype=torch.float64)
    dy = conv2d_valid(x, w) - target
    gram = patches(x, 3).reshape(-1, 9)
    lam = torch.linalg.eigvalsh(gram.T @ gram)
    lr = 1.0 / float(lam.max())
    w1 = sgd_step(w, x, dy, lr=lr)
    manual = w - lr * sum(dy[i, j] * x[i:i + 3, j:j + 3] for i in range(8) for j in range(8))
    assert torch.allclose(w1, manual, atol=1e-12)
    loss = lambda v: float(0.5 * (conv2d_valid(x, v) - target).pow(2).sum())
    assert loss(w1) < loss(w)
    for _ in range(int(30 * lam.max() / lam.min())):
        w = sgd_step(w, x, conv2d_valid(x, w) - target, lr=lr)
    assert torch.allclose(w, w_star, atol=1e-6)  # GD recovers the edge filter, not the image


def test_full_size_kernel_gradient_is_the_image():
    x = torch.rand(2, 6, 6, generator=gen(5), dtype=torch.float64)
    dy = torch.tensor([[[0.5]], [[-2.0]]], dtype=torch.float64)
    assert torch.allclose(conv2d_weight_grad(x, dy), dy * x)


def test_symbolic_moments_without_normality():
    mom = dw_moments_symbolic()
    n, k, sx, sg, mx, mg = (mom[s] for s in ("n", "k", "sigma_x", "sigma_g", "mu_x", "mu_g"))
    assert mom["mean0"] == 0
    assert sp.simplify(mom["var0"] - (n - k + 1) ** 2 * sx**2 * sg**2) == 0
    assert sp.simplify(mom["mean"] - (n - k + 1) ** 2 * mx * mg) == 0
    for nn, kk, h, l in [(3, 2, 0, 1), (4, 2, 1, 1), (5, 3, 2, 0), (6, 4, 1, 3)]:
        mean_e, var_e = dw_moments_exact(nn, kk, h=h, l=l)
        assert sp.simplify(mean_e - mom["mean"].subs({n: nn, k: kk})) == 0
        assert sp.simplify(var_e - mom["var"].subs({n: nn, k: kk})) == 0
        assert not any(str(s).startswith("E_") for s in var_e.free_symbols)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_samplers_are_standardized(dist):
    s = sample_centred(dist, (200_000,), generator=gen(6), dtype=torch.float64)
    assert abs(float(s.mean())) < 0.02 and abs(float(s.var()) - 1) < 0.03


def check_monte_carlo_sd_is_linear(dist):
    """Monte Carlo sd within 4.5 standard errors of (n-k+1) at every size; slope 1, not 1/2."""
    sizes, k = [8, 16, 32, 64], 3
    est = [dw_std_monte_carlo(n, k=k, dist=dist, trials=256, seed=n, device="cpu") for n in sizes]
    m = np.array(sizes) - k + 1
    z = (np.array([e.sd for e in est]) - m) / np.array([e.se for e in est])
    assert np.all(np.abs(z) < 4.5), z
    fit = loglog_slope(m, [e.sd for e in est])
    assert fit.low < 1.0 < fit.high and fit.low > 0.5


@pytest.mark.parametrize("dist", ["exponential", "student_t5", "lognormal"])
def test_monte_carlo_sd_is_linear_in_side_length(dist):
    check_monte_carlo_sd_is_linear(dist)


def test_monte_carlo_check_fails_when_a_sampler_loses_its_scaling(monkeypatch):
    real = G.sample_centred
    monkeypatch.setattr(G, "sample_centred", lambda *a, **k: 1.5 * real(*a, **k))
    with pytest.raises(AssertionError):
        check_monte_carlo_sd_is_linear("student_t5")


def test_student_t_quantile_against_closed_forms_and_tables():
    for p in (0.6, 0.9, 0.975, 0.999):
        assert abs(G.student_t_quantile(p, 1) - math.tan(math.pi * (p - 0.5))) < 1e-8 * max(1, math.tan(math.pi * (p - 0.5)))
        assert abs(G.student_t_quantile(p, 2) - (2 * p - 1) / math.sqrt(2 * p * (1 - p))) < 1e-8
    assert abs(G.student_t_quantile(0.975, 10) - 2.2281388519649385) < 1e-9  # printed tables
    assert abs(G.student_t_quantile(0.975, 4) - 2.7764451051977987) < 1e-9
    assert abs(G.student_t_quantile(0.025, 4) + 2.7764451051977987) < 1e-9
    with pytest.raises(ValueError, match="p"):
        G.student_t_quantile(1.0, 3)


def test_slope_interval_check_fails_with_a_normal_quantile(monkeypatch):
    monkeypatch.setattr(G, "student_t_quantile", lambda p, dof: 1.959963984540054)
    with pytest.raises(AssertionError):
        test_loglog_slope_interval_matches_textbook_regression()


def brute_force_var(n, k, x_corr, g_corr):
    """Var(dw_00) from explicit covariance matrices of the flattened fields: a plain double loop."""
    m = n - k + 1
    cx, cg = G.field_covariance(n, x_corr), G.field_covariance(m, g_corr)
    pos = [(i, j) for i in range(m) for j in range(m)]
    total = 0.0
    for a in pos:
        for b in pos:
            d = (a[0] - b[0], a[1] - b[1])
            total += float(cg[d]) * float(cx[d])  # E[dy_a dy_b] E[x_a x_b], X and dY independent
    return total


def check_correlated_variance(n, k, fx, fg, trials=256):
    exact = G.dw_var_closed_form(n, k, x_corr=fx * n, g_corr=fg * n)
    assert abs(exact - brute_force_var(n, k, fx * n, fg * n)) < 1e-9 * exact
    est = dw_std_monte_carlo(n, k=k, trials=trials, seed=7 * n, x_corr=fx * n, g_corr=fg * n)
    assert abs(est.sd - math.sqrt(exact)) < 4.5 * est.se, (est, math.sqrt(exact))


@pytest.mark.parametrize("fx,fg", [(0, 0), (0, 1 / 8), (1 / 8, 0), (1 / 8, 1 / 8)])
def test_correlated_variance_closed_form_against_loop_and_monte_carlo(fx, fg):
    check_correlated_variance(12, 3, fx, fg)


def test_correlated_variance_check_fails_when_closed_form_is_inflated(monkeypatch):
    real = G.dw_var_closed_form
    monkeypatch.setattr(G, "dw_var_closed_form", lambda *a, **k: 1.5 * real(*a, **k))
    with pytest.raises(AssertionError):
        check_correlated_variance(12, 3, 1 / 8, 1 / 8)


def test_smooth_field_has_unit_variance_and_the_stated_covariance():
    f = G.smooth_field(4000, 8, corr=2.0, generator=gen(11))
    assert abs(float(f.var()) - 1) < 0.03
    emp = float((f[:, :, :-1] * f[:, :, 1:]).mean())   # neighbours one pixel apart
    assert abs(emp - math.exp(-1 / (4 * 2.0**2))) < 0.03  # Gaussian blur sd c: correlation exp(-d^2 / 4c^2)


def test_learning_rate_transfer_slopes():
    """One white field gives slope exactly 1 (vs m); both smooth at fixed content, close to 2."""
    sizes = np.array([16, 32, 64, 128])
    slope = lambda fx, fg: loglog_slope(sizes - 2, [math.sqrt(G.dw_var_closed_form(
        int(n), 3, x_corr=fx * n, g_corr=fg * n)) for n in sizes]).slope
    assert abs(slope(0, 0) - 1) < 1e-9 and abs(slope(0, 1 / 8) - 1) < 1e-9 and abs(slope(1 / 8, 0) - 1) < 1e-9
    assert slope(1 / 8, 1 / 8) > 1.8


def check_batch_norm_gradient(batch_norm_in_model=True):
    """With batch norm: rms(dw) = sqrt(B) (n-k+1) sigma_g sqrt(1 - 1/k^2) / ||w||, whatever sigma_x."""
    for n in (8, 16, 32):
        for sx in (1.0, 10.0):
            r = G.dw_bn_rms(n, k=3, batch=8, trials=48, seed=n, sigma_x=sx, w_scale=2.0,
                            batch_norm=batch_norm_in_model)
            pred = math.sqrt(8) * (n - 2) * math.sqrt(1 - 1 / 9) / 2.0
            assert abs(r.sd - pred) < 4.5 * r.se, (n, sx, r, pred)


def test_batch_norm_keeps_the_linear_growth_and_removes_the_input_scale():
    check_batch_norm_gradient()
    plain = [G.dw_bn_rms(n, k=3, batch=8, trials=32, seed=n, batch_norm=False) for n in (8, 16, 32)]
    for n, r in zip((8, 16, 32), plain):  # no normalization: sqrt(B) (n-k+1) sigma_x sigma_g
        assert abs(r.sd - math.sqrt(8) * (n - 2)) < 4.5 * r.se


def test_batch_norm_check_fails_without_batch_norm():
    with pytest.raises(AssertionError):
        check_batch_norm_gradient(batch_norm_in_model=False)


def test_loglog_slope_exact_and_validation():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    f = loglog_slope(x, 3 * x**1.5)
    assert abs(f.slope - 1.5) < 1e-12 and f.low <= f.slope <= f.high
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(x, -x)
    with pytest.raises(ValueError, match="length"):
        loglog_slope(x[:2], x[:2])


def test_bad_arguments():
    with pytest.raises(ValueError, match="w"):
        conv2d_valid(torch.zeros(3, 3), torch.zeros(4, 4))
    with pytest.raises(TypeError, match="x"):
        conv2d_valid(np.zeros((3, 3)), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="dy"):
        conv2d_weight_grad(torch.zeros(3, 3), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="lr"):
        sgd_step(torch.zeros(2, 2), torch.zeros(3, 3), torch.zeros(2, 2), lr=0)
    with pytest.raises(ValueError, match="dist"):
        sample_centred("cauchy", (3,), generator=gen(0))
    with pytest.raises(ValueError, match="trials"):
        dw_std_monte_carlo(8, k=3, dist="uniform", trials=1, seed=0)
    with pytest.raises(TypeError, match="k"):
        dw_std_monte_carlo(8, k=2.5, dist="uniform", trials=4, seed=0)
    with pytest.raises(ValueError, match="corr"):
        G.smooth_field(2, 8, corr=-1.0, generator=gen(0))


def test_loglog_slope_interval_matches_textbook_regression():
    rng = np.random.default_rng(0)
    x = np.geomspace(1, 100, 12)
    y = 2 * x * np.exp(0.05 * rng.standard_normal(12))
    f = loglog_slope(x, y)
    lx, ly = np.log(x), np.log(y)
    A = np.stack([np.ones_like(lx), lx], 1)
    coef, res, *_ = np.linalg.lstsq(A, ly, rcond=None)
    cov = res[0] / (12 - 2) * np.linalg.inv(A.T @ A)
    assert abs(f.slope - coef[1]) < 1e-12 and abs(f.stderr - np.sqrt(cov[1, 1])) < 1e-12
    assert abs((f.high - f.slope) / f.stderr - 2.2281388519649385) < 1e-9  # t quantile, 10 d.o.f., 97.5 %


def test_adam_ignores_the_gradient_scale_and_batchnorm_output_ignores_the_kernel_scale():
    steps = []
    for scale in (1.0, 254.0):
        w = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([w], lr=0.01, eps=1e-12)
        g = gen(7)
        for _ in range(3):
            w.grad = scale * torch.randn(3, 3, generator=g, dtype=torch.float64)
            opt.step()
        steps.append(w.detach())
    assert torch.allclose(steps[0], steps[1], atol=1e-9)
    x = torch.randn(8, 1, 16, 16, generator=gen(8), dtype=torch.float64)
    w = torch.randn(3, 3, generator=gen(9), dtype=torch.float64)
    bn = [F.batch_norm(conv2d_valid(x, c * w), None, None, training=True, eps=1e-12) for c in (1.0, 254.0)]
    assert torch.allclose(bn[0], bn[1], atol=1e-9)


def test_mean_and_sd_scale_differently_with_nonzero_means():
    mom = dw_moments_symbolic()
    n, k = mom["n"], mom["k"]
    vals = {mom["sigma_x"]: 1, mom["sigma_g"]: 1, mom["mu_x"]: sp.Rational(1, 2), mom["mu_g"]: sp.Rational(1, 3)}
    snr = lambda nn: (mom["mean"] / sp.sqrt(mom["var"])).subs(vals).subs({n: nn, k: 3})
    assert sp.simplify(snr(202) / snr(102) - 2) == 0  # signal-to-noise ratio linear in n - k + 1


def test_weight_gradient_formula_equals_the_symbolic_derivative():
    """dw_hl = sum_ij g_ij x_(i+h)(j+l), against sympy's derivative of L = sum g * conv(x, w)."""
    n, k = 4, 2
    m = n - k + 1
    sym = lambda name, r: sp.Matrix(r, r, lambda a, b: sp.Symbol(f"{name}_{a}{b}"))
    X, W, Gm = sym("x", n), sym("w", k), sym("g", m)
    L = sum(Gm[i, j] * X[i + h, j + l] * W[h, l] for i in range(m) for j in range(m) for h in range(k) for l in range(k))
    formula = sp.Matrix(k, k, lambda h, l: sum(Gm[i, j] * X[i + h, j + l] for i in range(m) for j in range(m)))
    assert sp.simplify(W.applyfunc(lambda w: sp.diff(L, w)) - formula).is_zero_matrix
    wrong = sp.Matrix(k, k, lambda h, l: sum(Gm[i, j] * X[i + l, j + h] for i in range(m) for j in range(m)))
    assert not sp.simplify(W.applyfunc(lambda w: sp.diff(L, w)) - wrong).is_zero_matrix  # transposed: caught

