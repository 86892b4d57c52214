"""Chapter 2: models, budgets, step-size schedules, curvature, and the chapter's comparisons over ten seeds."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dlbook.sgd as sgd
from dlbook.train import TrainConfig, batch_indices, fit

CPU = torch.device("cpu")
SEEDS = list(range(10))


def test_stacked_forward_equals_each_model():
    from torch.func import stack_module_state

    models = [sgd.softmax_regression(n_in=12, n_classes=3, seed=s) for s in range(3)]
    params, _ = stack_module_state(models)
    x = torch.randn(3, 5, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    out = models[0].stacked_forward(params, x)
    for k, m in enumerate(models):
        assert torch.allclose(out[k], m(x[k]), atol=1e-6)
    lin = [sgd.linear_regression(d=2, seed=s) for s in range(3)]
    params, _ = stack_module_state(lin)
    xr = torch.randn(3, 7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = lin[0].stacked_forward(params, xr)
    assert out.shape == (3, 7)
    for k, m in enumerate(lin):
        assert torch.allclose(out[k], m(xr[k]), atol=1e-12)


def test_least_squares_solves_the_normal_equations():
    x, y = sgd.regression_data(50, 3, seed=4)
    coef, mse = sgd.least_squares(x, y)
    a = torch.cat([x, torch.ones(50, 1, dtype=torch.float64)], 1)
    ref = torch.linalg.solve(a.T @ a, a.T @ y)
    assert np.allclose(coef, ref.numpy(), atol=1e-10)
    # the gradient of the MSE vanishes there (autograd), and the minimum is the residual mean square
    w = torch.tensor(coef, requires_grad=True)
    loss = ((a @ w - y) ** 2).mean()
    loss.backward()
    assert w.grad.abs().max() < 1e-10 and abs(loss.item() - mse) < 1e-12


def test_epoch_steps_counts_the_batches_of_the_core_sampler():
    for n, b in [(4000, 50), (4000, 1600), (4000, 4000), (37, 5)]:
        per_epoch = sgd.epoch_steps(n, b, 1)
        batches = batch_indices(n, steps=per_epoch + 1, batch_size=b, seed=0)
        seen = torch.cat(batches[:per_epoch])
        assert sorted(seen.tolist()) == list(range(n))   # one epoch covers every example once
        assert len(batches[per_epoch - 1]) == n - b * (per_epoch - 1)
    assert sgd.epoch_steps(4000, 50, 5) == 400
    with pytest.raises(ValueError, match="epochs"):
        sgd.epoch_steps(4000, 1600, 0.5)
    with pytest.raises(ValueError, match="batch_size"):
        sgd.epoch_steps(4000, 0, 1)


def check_decay_schedule(power, start, total):
    cfg = TrainConfig(steps=total, lr=1.0, schedule=sgd.decay_schedule(power=power, total=total, start=start))
    eta = sgd.step_sizes(cfg)
    t = np.arange(1, total + 1)
    target = np.minimum(1.0, (start / t) ** power)
    # within a factor 2^power of (start / t)^power, never above it
    assert np.all(eta <= target + 1e-15) and np.all(eta > target / 2 ** power - 1e-15)
    m = int(np.log2(total / start))
    if total == start * 2 ** m:  # closed-form sums over whole blocks (see the chapter's exercise)
        blocks = [start * 2 ** k * 2.0 ** (-power * (k + 1)) for k in range(m)]
        assert np.isclose(eta.sum(), start + sum(blocks))
        assert np.isclose((eta ** 2).sum(), start + sum(b * 2.0 ** (-power * (k + 1)) for k, b in enumerate(blocks)))


@pytest.mark.parametrize("power", [0, 1, 2])
def test_decay_schedule_against_closed_forms(power):
    for start, total in [(8, 1024), (1, 64), (4, 100)]:
        check_decay_schedule(power, start, total)


def test_decay_schedule_check_fails_for_a_wrong_decay(monkeypatch):
    from dlbook.optim import Schedule

    real = sgd.decay_schedule
    monkeypatch.setattr(sgd, "decay_schedule", lambda **kw: Schedule(
        kind="step", milestones=real(**kw).milestones, gamma=0.7))  # decays too slowly
    with pytest.raises(AssertionError):
        check_decay_schedule(1, 8, 1024)


def test_step_sizes_are_the_ones_fit_uses():
    x, y = sgd.regression_data(20, 2, seed=0)
    cfg = TrainConfig(steps=40, batch_size=1, lr=0.1, loss="mse", eval_every=1,
                      schedule=sgd.decay_schedule(power=1, total=40, start=4))
    h = fit(sgd.linear_regression(d=2, seed=0), x, y, cfg=cfg, seed=0, device=CPU)
    assert np.allclose(h["lr"], sgd.step_sizes(cfg))


def test_zero_weight_curvature_against_power_iteration():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (200,), generator=g)
    a = torch.cat([x, torch.ones(200, 1, dtype=torch.float64)], 1)
    hess = torch.autograd.functional.hessian(lambda w: F.cross_entropy(a @ w.view(4, 7).T, y),
                                             torch.zeros(28, dtype=torch.float64))
    ref = torch.linalg.eigvalsh(hess)[-1].item()
    assert abs(sgd.zero_weight_curvature(x, 4) - ref) < 1e-10 * ref


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="power"):
        sgd.decay_schedule(power=3, total=10)
    with pytest.raises(ValueError, match="start"):
        sgd.decay_schedule(power=1, total=10, start=0)
    with pytest.raises(ValueError, match="n_in"):
        sgd.softmax_regression(n_in=0, seed=0)
    h = {"step": np.array([5, 10]), "train_loss": np.zeros((2, 2))}
    with pytest.raises(ValueError, match="step 7"):
        sgd.at_step(h, "train_loss", 7)


# ---- the noise floor and the stability edge of batch-1 SGD on least squares ----

def _two_directions():
    """x = +1, +1, -1, -1 with targets 1, -1, 1, -1: the minimum is w = b = 0 with residuals +-1,
    and the design rows (+-1, 1) are orthogonal with |a|^2 = 2, so the second-moment map has
    eigenvalues (1 + (1 - 4 lr)^2) / 2 and 1 - 4 lr: mean-square stable exactly for lr < 1/2."""
    x = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]], dtype=torch.float64)
    return x, torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)


def test_stability_edge_against_the_closed_form():
    x, _ = _two_directions()
    assert sgd.stability_edge(x) == pytest.approx(0.5, abs=1e-9)


def _simulated_floor(x, y, lr, *, chains=400, steps=4000, burn=1000, seed=0):
    """Plain numpy batch-1 SGD, examples drawn with replacement: the mean excess MSE over steps
    after `burn` for each independent chain, (chains,)."""
    rng = np.random.default_rng(seed)
    a = np.hstack([x.numpy(), np.ones((len(x), 1))])
    yy = y.numpy()
    coef, *_ = np.linalg.lstsq(a, yy, rcond=None)
    s = a.T @ a / len(a)
    w = np.tile(coef, (chains, 1)) + rng.standard_normal((chains, a.shape[1]))
    total = np.zeros(chains)
    for t in range(steps):
        i = rng.integers(len(a), size=chains)
        r = np.einsum("kj,kj->k", a[i], w) - yy[i]
        w -= 2 * lr * r[:, None] * a[i]
        if t >= burn:
            e = w - coef
            total += np.einsum("kj,jl,kl->k", e, s, e)
    return total / (steps - burn)


@pytest.mark.parametrize("lr", [0.05, 0.15])
def test_noise_floor_against_a_simulation(lr):
    x, y = sgd.regression_data(16, 1, seed=3)
    exact = sgd.noise_floor(x, y, lr=lr)["exact"]
    sim = _simulated_floor(x, y, lr)
    se = sim.std(ddof=1) / np.sqrt(len(sim))  # chains are independent: Monte Carlo error of the mean
    assert abs(sim.mean() - exact) < 4 * se, (sim.mean(), exact, se)


def test_noise_floor_check_fails_for_the_small_step_formula():
    """The first-order formula is off by O(lr): at lr = 0.15 the simulation tells it apart."""
    x, y = sgd.regression_data(16, 1, seed=3)
    small = sgd.noise_floor(x, y, lr=0.15)["small_lr"]
    sim = _simulated_floor(x, y, 0.15)
    se = sim.std(ddof=1) / np.sqrt(len(sim))
    assert abs(sim.mean() - small) > 4 * se


def test_small_step_formula_is_the_first_order_limit():
    """exact / small - 1 = O(lr): halving lr halves the relative gap (to within its O(lr^2) term)."""
    x, y = sgd.regression_data(64, 2, seed=0)
    gaps = []
    for lr in (0.004, 0.002, 0.001):
        f = sgd.noise_floor(x, y, lr=lr)
        gaps.append(f["exact"] / f["small_lr"] - 1)
    assert gaps[0] > 0
    assert gaps[1] / gaps[0] == pytest.approx(0.5, abs=0.02)
    assert gaps[2] / gaps[1] == pytest.approx(0.5, abs=0.01)


def test_noise_floor_is_infinite_past_the_edge():
    x, y = _two_directions()
    assert sgd.noise_floor(x, y, lr=0.49)["exact"] < float("inf")
    assert sgd.noise_floor(x, y, lr=0.51)["exact"] == float("inf")


def test_window_means_against_a_plain_loop():
    v = np.arange(24.0).reshape(2, 12) ** 1.5
    out = sgd.window_means(v, windows=3)
    ref = [[np.mean(v[k, 4 * j:4 * j + 4]) for j in range(3)] for k in range(2)]
    np.testing.assert_allclose(out, ref)
    with pytest.raises(ValueError, match="windows"):
        sgd.window_means(v, windows=5)
    with pytest.raises(ValueError, match="lr"):
        sgd.noise_floor(*_two_directions(), lr=0.0)
