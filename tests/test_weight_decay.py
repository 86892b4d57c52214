"""Chapter 5: the decay factor against sympy and torch, momentum's fixed points against ridge closed
forms, AdamW against torch, uniform vs uneven shrinkage, and the chapter's measured claims."""

import numpy as np
import pytest
import sympy as sp
import torch

from dlbook import weight_decay as W
from dlbook.results import compare
from dlbook.sweep import fit_stacked
from dlbook.train import TrainConfig, fit

def test_decay_factor_matches_the_symbolic_sgd_step():
    w, eta, lam, g = sp.symbols("w eta lambda g", real=True)
    step = w - eta * (g + sp.diff(lam * w**2, w))  # SGD on L + lam w^2, derived independently
    for lr, l in [(0.1, 0.01), (0.003, 2.0), (1.0, 0.25)]:
        expected = float(sp.expand(step).coeff(w).subs({eta: lr, lam: l}))
        assert W.decay_factor(lr=lr, lam=l) == pytest.approx(expected, abs=1e-15)


def _check_torch_weight_decay_is_the_penalty(lam=0.05, steps=300):
    """torch.optim.SGD(weight_decay=torch_weight_decay(lam)) on L equals the closed-form iterate
    w <- (1 - 2 lr lam) w - lr grad L(w), computed here with a plain numpy loop."""
    X, y = W.regression_data(40, 4, seed=3)
    model = W.linear_model(4)
    cfg = TrainConfig(steps=steps, batch_size=40, lr=0.01, loss="mse", weight_decay=W.torch_weight_decay(lam))
    fit(model, X, y, cfg=cfg, seed=0, device="cpu")
    Xn, yn, w = X.numpy(), y.numpy(), np.zeros(4)
    for _ in range(steps):
        w = (1 - 2 * 0.01 * lam) * w - 0.01 * 2 / len(yn) * Xn.T @ (Xn @ w - yn)
    assert np.abs(model.weight.detach().numpy().ravel() - w).max() < 1e-12


def test_torch_weight_decay_is_the_penalty():
    _check_torch_weight_decay_is_the_penalty()


def test_penalty_check_fails_when_the_factor_is_dropped(monkeypatch):
    monkeypatch.setattr(W, "torch_weight_decay", lambda lam: lam)  # the classic slip: wd = lam
    with pytest.raises(AssertionError):
        _check_torch_weight_decay_is_the_penalty()


@pytest.mark.parametrize("decoupled,penalty_factor", [(False, 1.0), (True, 0.1)])
def test_momentum_fixed_points_are_ridge_solutions(decoupled, penalty_factor):
    # decoupled decay with momentum mu minimizes L + (1 - mu) lam ||w||^2 (derived in the chapter)
    X, y = W.regression_data(50, 5, seed=0)
    lam, mu, n = 0.05, 0.9, 50
    model = W.linear_model(5)
    cfg = TrainConfig(steps=1000, batch_size=n, optimizer="momentum", momentum=mu, lr=0.02,
                      loss="mse", weight_decay=2 * lam, decoupled=decoupled)
    fit(model, X, y, cfg=cfg, seed=0, device="cpu")
    ridge = torch.linalg.solve(X.T @ X / n + penalty_factor * lam * torch.eye(5), X.T @ y / n)
    assert (model.weight.detach().squeeze() - ridge).abs().max() < 1e-8


def test_adamw_step_matches_torch_adamw():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, dtype=torch.float64, generator=g, requires_grad=True)
    ref, m, v = w.detach().clone(), torch.zeros(7, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)
    opt = torch.optim.AdamW([w], lr=0.02, weight_decay=0.3, betas=(0.8, 0.99), eps=1e-6)
    for t in range(1, 101):
        grad = torch.cos(ref) + torch.randn(7, dtype=torch.float64, generator=g)
        w.grad = grad.clone()
        opt.step()
        ref, m, v = W.adamw_step(ref, grad, m, v, t, lr=0.02, wd=0.3, betas=(0.8, 0.99), eps=1e-6)
        assert torch.allclose(w.detach(), ref, atol=1e-14, rtol=0)


def _blank_pixel_runs(seeds, steps=200, wd=0.5, lr=1e-3):
    """Softmax regression on synthetic digits whose border is blank: shrinkage of blank weights, and
    the per-pixel shrinkage spread (coefficient of variation) of the active ones, per seed."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 1, 28, 28)
    x[:, :, 6:22, 6:22] = torch.rand(400, 1, 16, 16, generator=g) ** 3  # blank border
    y = (x[:, 0, 6:22, 6:22].mean((1, 2)) * 30).long().clamp(max=9)
    K = len(seeds)
    xs, ys = x.expand(K, *x.shape), y.expand(K, *y.shape)
    blank = W.blank_pixels(x)
    out = {}
    for name, kw in {"adam": dict(optimizer="adam"), "l2": dict(optimizer="adam", weight_decay=wd),
                     "decoupled": dict(optimizer="adamw", weight_decay=wd)}.items():
        models = [W.softmax_regression(seed=s) for s in seeds]
        w0 = torch.stack([m[1].weight.detach().clone() for m in models])
        fit_stacked(models, xs, ys, cfg=TrainConfig(steps=steps, batch_size=50, lr=lr, **kw), seeds=seeds,
                    device="cpu")
        out[name] = (w0, torch.stack([m[1].weight.detach() for m in models]))
    res = {}
    for k in ("l2", "decoupled"):
        w0, w1 = out[k]
        r = (W.pixel_weight_norms(w1) / W.pixel_weight_norms(out["adam"][1])).flatten(1)[:, ~blank]
        res[k] = {"blank": (w1[:, :, blank].norm(dim=(1, 2)) / w0[:, :, blank].norm(dim=(1, 2))).numpy(),
                  "cv": (r.std(1) / r.mean(1)).numpy()}
    return res, (1 - lr * wd) ** steps


def test_adamw_shrinks_blank_weights_by_the_uniform_factor_and_adam_l2_wipes_them():
    res, factor = _blank_pixel_runs(list(range(10)))
    # float32: each of the 200 multiplications rounds with relative error <= 2**-24
    assert np.abs(res["decoupled"]["blank"] / factor - 1).max() < 200 * 2.0**-23
    assert res["l2"]["blank"].max() < 0.05  # weights of size ~0.04 gone after ~40 steps of size lr
    assert compare(res["l2"]["cv"], res["decoupled"]["cv"]).exceeds(2)


def test_blank_pixels_and_shapes():
    x = torch.zeros(3, 1, 28, 28)
    x[0, 0, 5, 7] = 1.0
    b = W.blank_pixels(x)
    assert b.shape == (784,) and not b[5 * 28 + 7] and b.sum() == 783
    assert W.pixel_weight_norms(torch.ones(2, 10, 784)).shape == (2, 28, 28)
    with pytest.raises(ValueError):
        W.blank_pixels(torch.zeros(3, 784))
    with pytest.raises(ValueError, match="lam"):
        W.torch_weight_decay(-1.0)


def test_batch_norm_makes_first_layer_rows_scale_invariant():
    model = W.mlp(inputs=20, hidden=8, batch_norm=True, bn_eps=1e-30, seed=0).double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 20, dtype=torch.float64, generator=g), torch.randint(0, 10, (64,), generator=g)
    check = W.scale_invariance(model, x, y, c=5.0)
    assert abs(check["loss change"]) < 1e-12 and check["max |cos|"] < 1e-12
    # PyTorch's default eps: invariant only up to O(eps / variance) of the pre-activations
    default = W.mlp(inputs=20, hidden=8, batch_norm=True, seed=0).double()
    var = (x @ default[1].weight.detach().T).var(0, unbiased=False).min().item()
    change = abs(W.scale_invariance(default, x, y, c=5.0)["loss change"])
    assert 0 < change < 10 * 1e-5 / var * check["loss"]
    plain = W.mlp(inputs=20, hidden=8, batch_norm=False, seed=0).double()
    assert abs(W.scale_invariance(plain, x, y, c=5.0)["loss change"]) > 1e-3  # control: no invariance


# ---------- the helpers of the Adam section ----------

def _check_pixel_gradient_rms(batch_size=25):
    """pixel_gradient_rms against autograd: per minibatch, the gradient of the mean cross-entropy."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(100, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (100,), generator=g)
    weight = 0.1 * torch.randn(10, 784, generator=g, dtype=torch.float64)
    bias = 0.1 * torch.randn(10, generator=g, dtype=torch.float64)
    sq = torch.zeros(784, dtype=torch.float64)
    for i in range(0, 100, batch_size):
        w = weight.clone().requires_grad_()
        loss = torch.nn.functional.cross_entropy(x[i:i + batch_size].flatten(1) @ w.T + bias, y[i:i + batch_size])
        (gw,) = torch.autograd.grad(loss, w)
        sq += gw.norm(dim=0) ** 2
    ref = (sq / (100 // batch_size)).sqrt().reshape(28, 28)
    got = W.pixel_gradient_rms(weight, bias, x, y, batch_size=batch_size)
    assert got.shape == (28, 28) and torch.allclose(got, ref, rtol=1e-12, atol=0)


def test_pixel_gradient_rms_matches_autograd():
    _check_pixel_gradient_rms()


def test_pixel_gradient_check_fails_without_the_batch_mean(monkeypatch):
    right = W.pixel_gradient_rms
    monkeypatch.setattr(W, "pixel_gradient_rms", lambda *a, batch_size: right(*a, batch_size=batch_size) * batch_size)
    with pytest.raises(AssertionError):
        _check_pixel_gradient_rms()


def test_softmax_accuracy_matches_the_models():
    models = [W.softmax_regression(seed=s) for s in range(3)]
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(50, 1, 28, 28, generator=g), torch.randint(0, 10, (50,), generator=g)
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in ("1.weight", "1.bias")}
    expected = torch.tensor([(m(x).argmax(1) == y).double().mean().item() for m in models], dtype=torch.float64)
    assert torch.equal(W.softmax_accuracy(params, x, y), expected)


def test_holdout_is_stratified_disjoint_and_shuffled():
    y = torch.arange(10).repeat_interleave(40)  # class-sorted on purpose
    x = torch.arange(400).float().reshape(400, 1, 1, 1)
    xf, yf, xv, yv = W.holdout(x, y, n_val_per_class=10, seed=0)
    assert torch.bincount(yv, minlength=10).tolist() == [10] * 10 and len(yf) == 300
    assert set(xf.flatten().tolist()).isdisjoint(xv.flatten().tolist())
    assert set(xf.flatten().tolist()) | set(xv.flatten().tolist()) == set(range(400))
    assert (yf[1:] != yf[:-1]).float().mean() > 0.5  # not sorted by class
    with pytest.raises(ValueError, match="n_val_per_class"):
        W.holdout(x, y, n_val_per_class=40, seed=0)


def test_adamw_step_without_decay_is_torch_adam():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    ref, m, v = w.detach().clone(), torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    opt = torch.optim.Adam([w], lr=1e-3)
    for t in range(1, 301):
        grad = 2 * 0.5 * ref  # the blank-input gradient of the chapter's exercise: L2 term only
        w.grad = grad.clone()
        opt.step()
        ref, m, v = W.adamw_step(ref, grad, m, v, t, lr=1e-3, wd=0.0)
    assert torch.allclose(w.detach(), ref, atol=1e-15, rtol=0)


def test_small_mnist_is_class_balanced():
    from dlbook.data import mnist

    x, y, xt, yt = W.small_mnist(mnist(), n_train=200)
    assert x.shape == (200, 1, 14, 14) and torch.bincount(y, minlength=10).tolist() == [20] * 10
    with pytest.raises(ValueError, match="n_train"):
        W.small_mnist(mnist(), n_train=205)
