"""Chapter 13 (flatness): power iteration and Hessian-vector products against the full Hessian from
torch.autograd.functional.hessian, the random-perturbation rise against its second-order expansion,
the line endpoints against the models themselves, and the rescaling that keeps the function."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from dlbook import flatness as Fl
from dlbook import memorization as M
from dlbook.results import compare
from dlbook.runtime import torch_generator
from dlbook.train import TrainConfig, fit


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


def test_sharpness_controls_at_small_scale():
    """The chapter's sharpness findings recomputed on 250 digits (5 seeds): at matched training loss
    the per-tensor rise is larger for shuffled labels, while the top eigenvalue's order depends on
    the parametrization (as trained vs. the same functions with the first layer scaled by 1/4)."""
    from dlbook.data import mnist

    d = mnist(n_train=250, n_test=100, seed=1)
    cfg = TrainConfig(steps=500, batch_size=50, optimizer="adam", lr=2e-3, eval_every=5)
    run = M.train_tasks(M.make_mlp, {"real": {}, "shuffled": dict(labels=1.0)},
                        (d.x_train, d.y_train, d.x_test, d.y_test), seeds=range(5), cfg=cfg,
                        device="cpu", target=0.05, val_every=500)
    x, y, _, _ = run["data"]
    res = {}
    for k, name in enumerate(run["task"]):
        m = M.load_params(M.make_mlp(seed=0), run["snapshot"].params[k])
        r = {"loss": F.cross_entropy(m(x[k]), y[k]).detach().item(),
             "tensor": Fl.tensorwise_loss_rise(m, x[k], y[k], rho=0.2, draws=10).mean(),
             "eig": Fl.top_eigenvalue(m, x[k], y[k]),
             "eig quarter": Fl.top_eigenvalue(Fl.rescale_hidden(m, 0.25), x[k], y[k])}
        for key, v in r.items():
            res.setdefault((name, key), []).append(v)
    v = lambda name, key: res[(name, key)]  # noqa: E731
    assert max(v("real", "loss") + v("shuffled", "loss")) <= 0.05 + 1e-6
    assert compare(v("shuffled", "tensor"), v("real", "tensor")).exceeds(2)
    assert compare(v("real", "eig"), v("shuffled", "eig")).exceeds(2)
    assert compare(v("shuffled", "eig quarter"), v("real", "eig quarter")).exceeds(2)


def test_hutchinson_trace_matches_the_full_hessians_trace():
    """tr(H) by Rademacher probes against torch.trace of the full Hessian; the tolerance is the
    estimator's own Monte Carlo error, Var(v^T H v) = 2 (||H||_F^2 - sum_i H_ii^2), computed from H."""
    model, x, y = _tiny(steps=100)
    H = _reference_hessian(model, x, y)
    probes = 200
    sd = float(torch.sqrt(2 * ((H ** 2).sum() - (torch.diagonal(H) ** 2).sum())))
    est, se = Fl.hessian_trace(model, x, y, probes=probes, seed=4)
    assert abs(est - float(torch.trace(H))) < 4 * sd / np.sqrt(probes)
    assert se == pytest.approx(sd / np.sqrt(probes), rel=0.3)  # its own SE estimates the true one


def test_hutchinson_check_fails_with_probes_of_the_wrong_scale(monkeypatch):
    """Probes with entries in {-2, 2} instead of {-1, 1} (a slip) quadruple the estimate: the check goes red."""
    real = Fl._hessian_vector
    monkeypatch.setattr(Fl, "_hessian_vector", lambda f, t, v: real(f, t, 2 * v) * 2)
    with pytest.raises(AssertionError):
        test_hutchinson_trace_matches_the_full_hessians_trace()


def _check_rescaling_invariance(rise):
    model, x, y = _tiny(steps=100)
    base = rise(model, x, y)
    for scaled in (Fl.rescale_hidden(model, 4.0), Fl.rescale_hidden(model, 0.25), Fl.balance_layers(model)):
        np.testing.assert_allclose(rise(scaled, x, y), base, rtol=1e-4, atol=1e-6)


def test_tensorwise_rise_is_invariant_to_function_preserving_rescaling():
    _check_rescaling_invariance(lambda m, x, y: Fl.tensorwise_loss_rise(m, x, y, rho=0.2, draws=5, seed=1))


def test_invariance_check_fails_for_the_global_relative_rise():
    with pytest.raises(AssertionError):
        _check_rescaling_invariance(lambda m, x, y: Fl.perturbed_loss_rise(m, x, y, radius=0.2, draws=5, seed=1))


def test_balance_layers_equalizes_the_norms_and_keeps_the_function():
    model, x, y = _tiny(steps=100)
    b = Fl.balance_layers(model)
    first = torch.cat([b.fc1.weight.detach().flatten(), b.fc1.bias.detach()]).norm()
    assert float(first) == pytest.approx(float(b.fc2.weight.detach().norm()), rel=1e-5)
    with torch.no_grad():
        assert torch.allclose(b(x), model(x), atol=1e-5)


def _lanczos_top(model, x, y):
    """The top eigenvalue by scipy's Lanczos (ARPACK eigsh) on Hessian-vector products."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    p = Fl.flat_params(model).numel()
    mv = lambda v: Fl.hvp(model, x, y, torch.as_tensor(v.ravel(), dtype=torch.float32)).double().numpy()  # noqa: E731
    return float(eigsh(LinearOperator((p, p), matvec=mv, dtype=np.float64), k=1, which="LA",
                       tol=1e-6, v0=np.ones(p))[0][0])


@functools.lru_cache(maxsize=1)
def _trained_pair():
    """The chapter's MLP on real and on shuffled labels of 200 digits, at a training loss of 0.05."""
    from dlbook.data import mnist

    d = mnist(n_train=200, n_test=50, seed=2)
    cfg = TrainConfig(steps=400, batch_size=50, optimizer="adam", lr=2e-3, eval_every=5)
    run = M.train_tasks(M.make_mlp, {"real": {}, "shuffled": dict(labels=1.0)},
                        (d.x_train, d.y_train, d.x_test, d.y_test), seeds=[0], cfg=cfg,
                        device="cpu", target=0.05)
    x, y, _, _ = run["data"]
    return [(M.load_params(M.make_mlp(seed=0), run["snapshot"].params[k]), x[k], y[k], _lanczos_top(
        M.load_params(M.make_mlp(seed=0), run["snapshot"].params[k]), x[k], y[k])) for k in range(2)]


def _check_power_against_lanczos(iters):
    for model, x, y, lanczos in _trained_pair():
        assert Fl.top_eigenvalue(model, x, y, iters=iters) == pytest.approx(lanczos, rel=0.01)


def test_twenty_power_iterations_agree_with_lanczos_on_trained_networks():
    """The chapter's 20 power iterations against Lanczos (scipy's eigsh on the same Hessian-vector
    products) on networks like the chapter's: within 1 %, far below the differences it reports."""
    _check_power_against_lanczos(20)


def test_lanczos_check_fails_with_too_few_iterations():
    with pytest.raises(AssertionError):
        _check_power_against_lanczos(1)


def test_reverse_over_reverse_hvp_equals_forward_over_reverse():
    model = M.make_mlp(seed=3, inputs=16, hidden=8)
    x = torch.randn(40, 1, 4, 4, generator=torch_generator(0))
    y = torch.randint(10, (40,), generator=torch_generator(1))
    f, theta = Fl.loss_function(model, x, y), Fl.flat_params(model)
    v = torch.randn(theta.shape, generator=torch_generator(2))
    fast, ref = Fl._hessian_vector(f, theta, v), Fl._hessian_vector_fwd(f, theta, v)
    assert not fast.requires_grad
    assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # also under no_grad, as the chapter's callers may be
        assert torch.allclose(Fl._hessian_vector(f, theta, v), ref, rtol=1e-4, atol=1e-6)
