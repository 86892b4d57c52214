"""Chapter 10: weight gradients of a valid convolution, the SGD step as a sum of patches, and dw statistics."""

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

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
    for nn, kk, h, l in [(3, 2, 0, 1), (4, 2, 1, 1), (5, 3, 2, 0)]:
        mean_e, var_e = dw_moments_exact(nn, kk, h=h, l=l)
        assert sp.simplify(mean_e - mom["mean"].subs({n: nn, k: kk})) == 0
        assert sp.simplify(var_e - mom["var"].subs({n: nn, k: kk})) == 0
        assert not any(str(s).startswith("E_") for s in var_e.free_symbols)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_samplers_are_standardized(dist):
    s = sample_centred(dist, (200_000,), generator=gen(6), dtype=torch.float64)
    assert abs(float(s.mean())) < 0.02 and abs(float(s.var()) - 1) < 0.03


def test_monte_carlo_sd_is_linear_in_side_length():
    sizes, k = [8, 16, 32, 64], 3
    sds = [dw_std_monte_carlo(n, k=k, dist="exponential", trials=96, seed=n, device="cpu") for n in sizes]
    ratios = np.array(sds) / (np.array(sizes) - k + 1)
    assert np.all(np.abs(ratios - 1) < 0.15)
    fit = loglog_slope(np.array(sizes) - k + 1, sds)
    assert fit.low < 1.0 < fit.high and abs(fit.slope - 1) < 0.05
    assert fit.high < 0.75 or fit.low > 0.5  # the "sqrt(n)" reading (slope 1/2) is excluded
    assert fit.low > 0.9


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


def test_adam_and_batchnorm_ignore_the_gradient_scale():
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
