"""Chapter 13 (flatness): power iteration and Hessian-vector products against the full Hessian from
torch.autograd.functional.hessian, the random-perturbation rise against its second-order expansion,
the line endpoints against the models themselves, and the rescaling that keeps the function."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import glued
from dlbook import flatness as Fl
from dlbook import memorization as M
from dlbook.results import compare
from dlbook.runtime import torch_generator
from dlbook.train import TrainConfig, fit

STEM = "13_memorization"


def _tiny(seed=0, steps=0):
    model = M.make_mlp(seed=seed, inputs=16, hidden=8)
    x = torch.randn(64, 1, 4, 4, generator=torch_generator(seed))
    y = torch.randint(10, (64,), generator=torch_generator(seed + 1))
    if steps:
        fit(model, x, y, cfg=TrainConfig(steps=steps, batch_size=64, optimizer="adam", lr=0.01),
            seed=0, device="cpu")
    return model, x, y


def _reference_hessian(model, x, y):
    """The loss Hessian formed by torch from a loss written here, not by the library."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    m = model.double()

    def loss(t):
        parts = torch.split(t, [int(np.prod(s)) for s in shapes])
        params = {n: q.view(s) for n, q, s in zip(names, parts, shapes)}
        return F.cross_entropy(functional_call(m, params, (x.double(),)), y)

    H = torch.autograd.functional.hessian(loss, theta)
    model.float()
    return H


def _check_power_iteration(model, x, y):
    eigs = torch.linalg.eigvalsh(_reference_hessian(model, x, y))
    top = float(eigs[eigs.abs().argmax()])
    assert Fl.top_eigenvalue(model, x, y, iters=300) == pytest.approx(top, rel=1e-3)


@pytest.mark.parametrize("steps", [0, 200])
def test_power_iteration_finds_the_full_hessians_top_eigenvalue(steps):
    _check_power_iteration(*_tiny(steps=steps))


def test_power_iteration_check_fails_with_a_summed_loss(monkeypatch):
    real = Fl.loss_function

    def summed(model, x, y):
        f = real(model, x, y)
        return lambda theta: f(theta) * len(y)  # the slip: reduction="sum"
    monkeypatch.setattr(Fl, "loss_function", summed)
    with pytest.raises(AssertionError):
        _check_power_iteration(*_tiny())


def test_hvp_is_the_hessian_times_v():
    model, x, y = _tiny(steps=50)
    H = _reference_hessian(model, x, y)
    v = torch.randn(H.shape[0], generator=torch_generator(3))
    assert torch.allclose(Fl.hvp(model, x, y, v).double(), H @ v.double(), rtol=1e-3, atol=1e-5)


def test_loss_rise_matches_its_second_order_expansion():
    """For a smooth loss, E[L(theta + r u) - L(theta)] = r^2 tr(H) / (2P) + O(r^3), u uniform on the sphere.

    A smooth (tanh) network: with ReLU the kinks add a rise of order r that the Hessian does not see.
    """
    _, x, y = _tiny()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 10))
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    fit(model, x, y, cfg=TrainConfig(steps=300, batch_size=64, optimizer="adam", lr=0.01), seed=0, device="cpu")
    H = _reference_hessian(model, x, y)
    r, draws = 0.1, 3000
    expected = r ** 2 * float(torch.trace(H)) / (2 * H.shape[0])
    rises = Fl.perturbed_loss_rise(model, x, y, radius=r, relative=False, draws=draws, seed=1)
    se = rises.std(ddof=1) / np.sqrt(draws)
    assert abs(rises.mean() - expected) < 4 * se + 0.05 * expected  # Monte Carlo + third-order terms


def test_relative_radius_scales_with_the_weight_norm():
    model, x, y = _tiny()
    norm = Fl.weight_norm(model)
    rel = Fl.perturbed_loss_rise(model, x, y, radius=0.1, relative=True, draws=5, seed=2)
    ab = Fl.perturbed_loss_rise(model, x, y, radius=0.1 * norm, relative=False, draws=5, seed=2)
    np.testing.assert_allclose(rel, ab, rtol=1e-5, atol=1e-7)


def test_line_losses_ends_are_the_two_models():
    start, x, y = _tiny(seed=0)
    end, _, _ = _tiny(seed=0, steps=100)
    out = Fl.line_losses(start, end, x, y, alphas=[0.0, 0.5, 1.0])
    mid = M.make_mlp(seed=9, inputs=16, hidden=8)
    with torch.no_grad():
        for pm, ps, pe in zip(mid.parameters(), start.parameters(), end.parameters()):
            pm.copy_((ps + pe) / 2)
        for i, m in enumerate([start, mid, end]):
            assert out["loss"][i] == pytest.approx(float(F.cross_entropy(m(x), y)), abs=1e-5)
            assert out["acc"][i] == pytest.approx(float((m(x).argmax(1) == y).double().mean()))


def _check_rescaling(rescale, c=3.0):
    model, x, y = _tiny(steps=100)
    scaled = rescale(model, c)
    with torch.no_grad():
        assert torch.allclose(scaled(x), model(x), atol=1e-5)
    H, Hs = _reference_hessian(model, x, y), _reference_hessian(scaled, x, y)
    n1 = model.fc1.weight.numel() + model.fc1.bias.numel()
    w2 = slice(n1, n1 + model.fc2.weight.numel())
    # theta_1' = c theta_1: curvature in layer 1 over c^2; W2' = W2 / c: curvature in W2 times c^2
    assert torch.allclose(Hs[:n1, :n1], H[:n1, :n1] / c ** 2, atol=1e-6, rtol=1e-4)
    assert torch.allclose(Hs[w2, w2], H[w2, w2] * c ** 2, atol=1e-6, rtol=1e-4)


def test_rescaling_keeps_the_function_and_moves_the_curvature():
    _check_rescaling(Fl.rescale_hidden)


def test_rescaling_check_fails_when_the_bias_is_left_alone(monkeypatch):
    def forgets_bias(model, c):
        out = Fl.rescale_hidden(model, c)
        with torch.no_grad():
            out.fc1.bias.copy_(model.fc1.bias)
        return out
    with pytest.raises(AssertionError):
        _check_rescaling(forgets_bias)


def test_bad_arguments_raise():
    model, x, y = _tiny()
    with pytest.raises(ValueError, match="c"):
        Fl.rescale_hidden(model, -1.0)
    with pytest.raises(ValueError, match="iters"):
        Fl.top_eigenvalue(model, x, y, iters=0)
    with pytest.raises(ValueError, match="theta"):
        Fl.unflatten(model, torch.zeros(3))
    with pytest.raises(ValueError, match="radius"):
        Fl.perturbed_loss_rise(model, x, y, radius=0.0)


def test_sharpness_claims_in_the_chapter():
    g = glued(STEM)
    assert g["c13_tiny_relerr"] < 1e-3
    assert g["c13_repar_change"] < 1e-4 and g["c13_repar_ratio"] > 4


def test_sharpness_controls_in_the_chapter():
    """The rows of the chapter's sharpness table, each against its spread over 5 seeds."""
    g = glued(STEM)
    s = lambda name: g[name + "_seeds"]  # noqa: E731
    for m in ("eig", "rel", "abs", "loss"):  # end of training: shuffled larger by every measure
        assert compare(s(f"c13_end_{m}_shuf"), s(f"c13_end_{m}_real")).exceeds(2)
    assert compare(s("c13_mat_eig_real"), s("c13_mat_eig_shuf")).exceeds(2)  # reversed at matched loss
    for m in ("rel", "abs"):
        assert compare(s(f"c13_mat_{m}_shuf"), s(f"c13_mat_{m}_real")).exceeds(2)
    assert max(s("c13_mat_loss_real") + s("c13_mat_loss_shuf")) <= 0.05


def test_sharpness_controls_at_small_scale():
    """The chapter's sharpness findings recomputed on 250 digits (5 seeds): at the end of training the
    shuffled-label minima look sharper; at matched training loss the top eigenvalue reverses while the
    random-perturbation rises (relative and absolute radius) stay larger for shuffled labels."""
    from dlbook.data import mnist

    d = mnist(n_train=250, n_test=100, seed=1)
    cfg = TrainConfig(steps=500, batch_size=50, optimizer="adam", lr=2e-3, eval_every=10)
    run = M.train_tasks(M.make_mlp, {"real": {}, "shuffled": dict(labels=1.0)},
                        (d.x_train, d.y_train, d.x_test, d.y_test), seeds=range(5), cfg=cfg,
                        device="cpu", target=0.05)
    x, y, _, _ = run["data"]
    res = {}
    for k, name in enumerate(run["task"]):
        matched = M.load_params(M.make_mlp(seed=0), run["snapshot"].params[k])
        for when, model in [("end", run["models"][k]), ("matched", matched)]:
            r = Fl.sharpness(model, x[k], y[k], rho=0.2, radius=4.0, draws=10)
            for key, v in r.items():
                res.setdefault((when, name, key), []).append(v)
    v = lambda when, name, key: res[(when, name, key)]  # noqa: E731
    assert compare(v("end", "shuffled", "top eigenvalue"), v("end", "real", "top eigenvalue")).exceeds(2)
    assert max(v("matched", "real", "train loss") + v("matched", "shuffled", "train loss")) <= 0.05
    assert compare(v("matched", "real", "top eigenvalue"), v("matched", "shuffled", "top eigenvalue")).exceeds(2)
    for key in ("rise, relative", "rise, absolute"):
        assert compare(v("matched", "shuffled", key), v("matched", "real", key)).exceeds(2)
