"""Chapter 11: max/average/min pooling forward and backward against PyTorch, tie rule, robustness measurements."""

import math
from statistics import NormalDist

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F


from dlbook import pooling as P
from dlbook.data import mnist
from dlbook.results import compare
from dlbook.pooling import (avgpool_backward, avgpool_forward, corrupt, maxpool_backward, maxpool_forward,
                            minpool_forward, noise_sensitivity, pool, pool_geometry, shift, shift_sensitivity, windows)

GEOMETRIES = [(4, 4, 2, None), (6, 6, 3, 1), (7, 9, 3, 2), (5, 8, (2, 3), (1, 2)), (6, 5, (3, 2), (2, 1))]


def gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_two_by_two_derivatives_sympy():
    xs = sp.symbols("x11 x12 x21 x22", real=True)
    point = dict(zip(xs, (3, 1, -2, 2)))
    assert [sp.diff(sp.Max(*xs), v).subs(point) for v in xs] == [1, 0, 0, 0]
    assert [sp.diff(sum(xs) / 4, v) for v in xs] == [sp.Rational(1, 4)] * 4


@pytest.mark.parametrize("H,W,kernel,stride", GEOMETRIES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_and_avg_match_pytorch(H, W, kernel, stride, ties):
    g = gen(H * 100 + W)
    x = torch.randint(0, 2, (2, 3, H, W), generator=g).double() if ties else torch.randn(2, 3, H, W, generator=g, dtype=torch.float64)
    y, idx = maxpool_forward(x, kernel=kernel, stride=stride)
    y_ref, idx_ref = F.max_pool2d(x, kernel, stride, return_indices=True)
    assert torch.equal(y, y_ref) and torch.equal(idx, idx_ref)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    F.max_pool2d(xr, kernel, stride).backward(dy)
    assert torch.equal(maxpool_backward(dy, idx, x.shape), xr.grad)
    xr = x.clone().requires_grad_()
    F.avg_pool2d(xr, kernel, stride).backward(dy)
    assert torch.allclose(avgpool_forward(x, kernel=kernel, stride=stride), F.avg_pool2d(x, kernel, stride), atol=1e-14)
    assert torch.allclose(avgpool_backward(dy, x.shape, kernel=kernel, stride=stride), xr.grad, atol=1e-14)


def test_avgpool_gradcheck():
    x = torch.randn(1, 6, 7, generator=gen(1), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: avgpool_forward(v, kernel=3, stride=2), (x,))


@pytest.mark.parametrize("values,winner", [([0.0, 0.0, 0.0, 0.0], 0), ([1.0, 3.0, 3.0, 2.0], 1), ([0.0, 1.0, 5.0, 5.0], 2)])
def test_pytorch_tie_rule_first_in_row_major_order(values, winner):
    x = torch.tensor(values).reshape(1, 1, 2, 2).requires_grad_()
    F.max_pool2d(x, 2).backward(torch.ones(1, 1, 1, 1))
    assert x.grad.flatten().tolist() == [1.0 if i == winner else 0.0 for i in range(4)]
    assert int(maxpool_forward(x.detach(), kernel=2)[1]) == winner


def test_overlapping_windows_accumulate():
    x = torch.zeros(5, 5)
    x[2, 2] = 1.0
    _, idx = maxpool_forward(x, kernel=3, stride=1)
    dx = maxpool_backward(torch.ones(3, 3), idx, x.shape)
    assert dx[2, 2] == 9 and dx.sum() == 9
    counts = avgpool_backward(torch.ones(3, 3), (5, 5), kernel=3, stride=1) * 9
    assert counts[2, 2] == 9 and counts[0, 0] == 1 and counts[0, 2] == 3


def test_stacked_pools_equal_one_big_pool():
    x = torch.randn(3, 16, 16, generator=gen(2), dtype=torch.float64)
    for kind in ("max", "avg"):
        assert torch.allclose(pool(pool(x, kind, kernel=2), kind, kernel=2), pool(x, kind, kernel=4))


def check_stacked_max_routing(n=400):
    """Stacked and single max pools against PyTorch's layers and autograd; ties make them differ."""
    g = gen(12)
    out = {}
    for name, x in {"ties": torch.randint(0, 2, (n, 4, 4), generator=g).double(),
                    "gauss": torch.randn(n, 4, 4, generator=g, dtype=torch.float64)}.items():
        dy = torch.ones(n, 1, 1, dtype=torch.float64)
        xr = x[:, None].clone().requires_grad_()
        F.max_pool2d(F.max_pool2d(xr, 2), 2).sum().backward()
        stacked = P.stacked_max_backward(x, dy, [2, 2])
        assert torch.equal(stacked, xr.grad[:, 0])
        xr = x[:, None].clone().requires_grad_()
        F.max_pool2d(xr, 4).sum().backward()
        single = P.stacked_max_backward(x, dy, [4])
        assert torch.equal(single, xr.grad[:, 0])
        out[name] = float((single != stacked).flatten(1).any(1).double().mean())
    assert out["ties"] > 0.05 and out["gauss"] == 0.0
    return out


def test_stacked_max_pools_route_ties_differently_from_one_big_pool():
    check_stacked_max_routing()
    x = torch.tensor([[0., 0., 0., 1.], [0., 1., 0., 0.], [0., 0., 0., 0.], [0., 0., 0., 0.]])
    assert P.stacked_max_backward(x, torch.ones(1, 1), [4])[0, 3] == 1
    assert P.stacked_max_backward(x, torch.ones(1, 1), [2, 2])[1, 1] == 1


def test_routing_check_fails_when_ties_go_to_the_last_maximum(monkeypatch):
    real = P.maxpool_forward

    def last_max(x, *, kernel, stride=None):   # break the tie rule: flip, take the first, flip back
        y, idx = real(x.flip(-1, -2), kernel=kernel, stride=stride)
        return y.flip(-1, -2), (x.shape[-2] * x.shape[-1] - 1 - idx).flip(-1, -2)

    monkeypatch.setattr(P, "maxpool_forward", last_max)
    with pytest.raises(AssertionError):
        check_stacked_max_routing()


def test_avgpool_check_fails_when_the_share_is_wrong(monkeypatch):
    real = P.avgpool_backward
    monkeypatch.setattr(P, "avgpool_backward", lambda dy, shape, **k: 1.5 * real(dy, shape, **k))
    x = torch.randn(1, 1, 6, 6, generator=gen(13), dtype=torch.float64, requires_grad=True)
    F.avg_pool2d(x, 2).backward(torch.ones(1, 1, 3, 3, dtype=torch.float64))
    assert not torch.allclose(P.avgpool_backward(torch.ones(1, 1, 3, 3, dtype=torch.float64), x.shape, kernel=2), x.grad)


@pytest.fixture(scope="module")
def digits():
    return mnist(n_train=2560, n_test=16, seed=0)


def test_noise_orderings_on_mnist_over_ten_seeds(digits):
    x = digits.x_train[:256, 0]
    per = {(n, k): np.array([P.noise_sensitivity(x, kind=k, noise=n, level=lv, seed=s) for s in range(10)])
           for n, lv in [("gaussian", 0.2), ("salt", 0.05), ("pepper", 0.05)] for k in ("none", "max", "avg")}
    for better, worse in [(("gaussian", "avg"), ("gaussian", "max")), (("gaussian", "avg"), ("gaussian", "none")),
                          (("salt", "none"), ("salt", "max")), (("salt", "avg"), ("salt", "none")),
                          (("pepper", "max"), ("pepper", "avg")), (("pepper", "avg"), ("pepper", "none"))]:
        assert compare(per[worse], per[better], paired=True).exceeds(2), (better, worse)


def test_shift_measures_on_raw_digits_and_float_feature_maps(digits):
    def one_set(s):
        x = digits.x_train[256 * s:256 * (s + 1)]
        out = {}
        for src, z in {"raw": x[:, 0], "feat": P.relu_feature_maps(x, filters=2, seed=s)}.items():
            for kind, k in [("none", 1), ("max", 2), ("max", 4), ("avg", 4), ("max", 7), ("avg", 7)]:
                r = P.shift_sensitivity(z, kind=kind, kernel=k, shifts=[1])[0]
                out[src, kind, k] = (r["relative change"], r["unchanged"])
        return out

    sets = [one_set(s) for s in range(10)]
    rc = lambda *key: np.array([d[key][0] for d in sets])
    un = lambda *key: np.array([d[key][1] for d in sets])
    for k in (4, 7):  # average wins L2 on raw digits
        assert compare(rc("raw", "max", k), rc("raw", "avg", k), paired=True).exceeds(2)
    assert compare(rc("feat", "avg", 7), rc("feat", "max", 7), paired=True).exceeds(2)  # max wins, features
    assert compare(un("raw", "max", 2), un("feat", "max", 2), paired=True).exceeds(2)   # 8-bit plateaus inflate
    assert un("feat", "none", 1).max() < 0.01 < un("raw", "none", 1).min()


def test_min_pool_after_relu_live_windows_match_normal_cdf():
    z = torch.randn(64, 32, 32, generator=gen(14))
    n_win = 64 * 16 * 16
    for b in (-1.0, 0.0, 1.0, 2.0, 3.0):
        live = float((minpool_forward(torch.relu(z + b), kernel=2) > 0).float().mean())
        pred = NormalDist().cdf(b) ** 4   # all four independent units active
        assert abs(live - pred) < 5 * math.sqrt(pred * (1 - pred) / n_win) + 1e-9, (b, live, pred)


def test_max_of_four_normals_moments_by_monte_carlo():
    v = torch.randn(400_000, 4, generator=gen(15), dtype=torch.float64).max(1).values
    u = np.linspace(-10, 10, 20001)
    phi = np.exp(-u**2 / 2) / math.sqrt(2 * math.pi)
    dens = 4 * phi * (0.5 * (1 + np.vectorize(math.erf)(u / math.sqrt(2)))) ** 3
    m1 = np.trapezoid(u * dens, u)
    sd = math.sqrt(np.trapezoid(u**2 * dens, u) - m1**2)
    assert abs(float(v.mean()) - m1) < 5 * sd / math.sqrt(len(v)) and abs(float(v.std()) - sd) < 0.005


def test_worked_examples_shifted_squares():
    square = torch.zeros(4, 4)
    square[:3, :3] = 1
    images = torch.stack([square, square.flip(1), square.flip(0, 1), square.flip(0)])
    expected = torch.tensor([[[1, .5], [.5, .25]], [[.5, 1], [.25, .5]], [[.25, .5], [.5, 1]], [[.5, .25], [1, .5]]])
    assert torch.equal(avgpool_forward(images, kernel=2), expected)
    assert torch.equal(maxpool_forward(images, kernel=2)[0], torch.ones(4, 2, 2))


def test_noise_robustness_ordering():
    # stroke-like images: bars of ones on zeros, so that max pooling windows contain bright pixels
    g = gen(3)
    x = torch.zeros(64, 28, 28)
    for b in range(64):
        r, c = torch.randint(4, 20, (2,), generator=g).tolist()
        x[b, r:r + 8, c:c + 3] = 1.0
        x[b, r + 3:r + 5, c - 3:c + 6] = 1.0
    r = {(n, k): sum(noise_sensitivity(x, kind=k, noise=n, level=lv, seed=s) for s in range(3)) / 3
         for n, lv in [("gaussian", 0.2), ("salt", 0.05), ("pepper", 0.05)] for k in ("none", "max", "avg")}
    assert r["gaussian", "avg"] < 0.7 * r["gaussian", "none"] and r["gaussian", "avg"] < r["gaussian", "max"]
    assert r["salt", "max"] > r["salt", "none"] > r["salt", "avg"]
    assert r["pepper", "max"] < r["pepper", "avg"] < r["pepper", "none"]


def test_shift_sensitivity_falls_with_window_size():
    g = gen(4)
    x = torch.zeros(32, 28, 28)
    for b in range(32):
        r, c = torch.randint(6, 16, (2,), generator=g).tolist()
        x[b, r:r + 10, c:c + 4] = torch.rand(10, 4, generator=g) + 0.5
    rc = {k: shift_sensitivity(x, kind="max", kernel=k, shifts=[0, 1])[1]["relative change"] for k in (1, 2, 4, 7)}
    assert rc[7] < rc[4] < rc[2] < rc[1]
    assert shift_sensitivity(x, kind="avg", kernel=2, shifts=[0])[0]["relative change"] == 0.0
    assert torch.equal(shift(shift(x, 3), -3)[..., :, 3:-3], x[..., :, 3:-3])


def test_min_pool_after_relu_is_mostly_zero_and_commutes():
    z = torch.randn(64, 32, 32, generator=gen(5))
    a = torch.relu(z)
    assert torch.equal(minpool_forward(a, kernel=2), torch.relu(minpool_forward(z, kernel=2)))
    zero = float((minpool_forward(a, kernel=2) == 0).float().mean())
    assert abs(zero - 15 / 16) < 0.01
    assert float((maxpool_forward(a, kernel=2)[0] == 0).float().mean()) < 0.1
    zr = z.clone().requires_grad_()
    minpool_forward(torch.relu(zr), kernel=2).sum().backward()
    passing = float(windows(zr.grad, 2).ne(0).flatten(-2).any(-1).float().mean())
    assert abs(passing - (1 - zero)) < 1e-6


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel"):
        pool_geometry((4, 4), 5)
    with pytest.raises(ValueError, match="stride"):
        pool_geometry((4, 4), 2, 0)
    with pytest.raises(ValueError, match="kind"):
        pool(torch.zeros(4, 4), "median", kernel=2)
    with pytest.raises(ValueError, match="noise"):
        corrupt(torch.zeros(4, 4), "blur", level=0.1, generator=gen(0))
    with pytest.raises(ValueError, match="level"):
        corrupt(torch.zeros(4, 4), "salt", level=1.5, generator=gen(0))
    with pytest.raises(ValueError, match="dy"):
        avgpool_backward(torch.zeros(3, 3), (4, 4), kernel=2)
    with pytest.raises(TypeError, match="x"):
        windows([[1.0]], 1)

