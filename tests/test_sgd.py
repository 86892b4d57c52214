"""Chapter 2: models, budgets, step-size schedules, curvature, and the chapter's comparisons over ten seeds."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dlbook.sgd as sgd
from dlbook.results import compare
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


@pytest.fixture(scope="module")
def mnist14():
    from dlbook.data import mnist

    d = mnist(n_train=4000, n_test=1000, seed=0)
    return F.avg_pool2d(d.x_train, 2), d.y_train


def _model(seed):
    return sgd.softmax_regression(n_in=196, seed=seed)


def _loss(x, y, *, batch, lr, steps, at, schedule=None):
    kw = {} if schedule is None else {"schedule": schedule}
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, eval_every=int(np.gcd.reduce(at)), **kw)
    h, _ = sgd.fit_seeds(_model, x, y, cfg=cfg, seeds=SEEDS, device=CPU)
    return {s: sgd.at_step(h, "train_loss", s) for s in at}


def test_the_ranking_of_batch_sizes_depends_on_the_budget(mnist14):
    x, y = mnist14
    small = _loss(x, y, batch=50, lr=3.0, steps=400, at=[20, 400])
    full = _loss(x, y, batch=4000, lr=3.0, steps=20, at=[5, 20])
    c_epochs = compare(full[5], small[400])      # 5 epochs each: the small batch wins
    c_steps = compare(small[20], full[20])       # 20 steps each: the full batch wins
    assert c_epochs.exceeds(2) and c_steps.exceeds(2), (c_epochs, c_steps)


def test_linear_scaling_holds_then_breaks(mnist14):
    x, y = mnist14

    def final(batch, lr):
        steps = sgd.epoch_steps(4000, batch, 2)
        return _loss(x, y, batch=batch, lr=lr, steps=steps, at=[steps])[steps]

    base, scaled200, fixed200, scaled1600 = final(50, 1.0), final(200, 4.0), final(200, 1.0), final(1600, 32.0)
    assert compare(fixed200, scaled200).exceeds(2)        # scaling beats the fixed step size
    assert compare(scaled1600, base).exceeds(2)           # ... until it breaks
    assert scaled1600.mean() > np.log(10)


def test_robbins_monro_schedule_beats_both_violations():
    x, y = sgd.regression_data(256, 2, seed=0)
    _, mse_min = sgd.least_squares(x, y)
    excess = {}
    for power in (0, 1, 2):
        cfg = TrainConfig(steps=1024, batch_size=1, lr=0.1, loss="mse",
                          schedule=sgd.decay_schedule(power=power, total=1024, start=8))
        h, _ = sgd.fit_seeds(lambda seed: sgd.linear_regression(d=2, seed=seed), x, y, cfg=cfg,
                             seeds=SEEDS, device=CPU)
        excess[power] = h["train_loss"][:, -1] - mse_min
    assert np.all(excess[1] > -1e-12)  # nothing beats the closed-form minimum
    assert compare(excess[0], excess[1]).exceeds(2) and compare(excess[2], excess[1]).exceeds(2)
