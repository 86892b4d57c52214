"""dlbook.digits: pooled digits, label noise, the stacked MLP; and the optimizer and schedule claims over seeds."""

import numpy as np
import pytest
import torch

from dlbook import digits as G
from dlbook.data import mnist
from dlbook.results import compare
from dlbook.train import TrainConfig


def test_pooled_is_the_mean_of_each_block():
    x = torch.rand(3, 1, 28, 28)
    ref = x.view(3, 14, 2, 14, 2).mean((2, 4)).reshape(3, 196)
    torch.testing.assert_close(G.pooled(x), ref)
    with pytest.raises(ValueError, match="x"):
        G.pooled(torch.rand(3, 28, 28))


def check_noisy_labels(n=20_000, fraction=0.3):
    y = torch.randint(10, (n,), generator=torch.Generator().manual_seed(1))
    noisy, changed = G.noisy_labels(y, fraction=fraction, seed=4)
    assert int(changed.sum()) == round(fraction * n)
    assert bool((noisy[changed] != y[changed]).all()) and bool((noisy[~changed] == y[~changed]).all())
    # the new label is uniform over the nine other classes: each offset has probability 1/9
    offsets = torch.bincount((noisy[changed] - y[changed]) % 10, minlength=10).numpy()[1:]
    m = changed.sum().item()
    sd = np.sqrt(m * (1 / 9) * (8 / 9))
    assert np.all(np.abs(offsets - m / 9) < 4.5 * sd)  # binomial counts within 4.5 sd
    again, _ = G.noisy_labels(y, fraction=fraction, seed=4)
    assert torch.equal(noisy, again)


def test_noisy_labels():
    check_noisy_labels()


def test_noisy_label_check_fails_when_labels_can_stay(monkeypatch):
    real = G.noisy_labels

    def broken(y, *, fraction, seed):  # every tenth changed row keeps its label, as a shift of 0 would
        noisy, changed = real(y, fraction=fraction, seed=seed)
        rows = changed.nonzero().flatten()[::10]
        noisy = noisy.clone()
        noisy[rows] = y[rows]
        return noisy, changed

    monkeypatch.setattr(G, "noisy_labels", broken)
    with pytest.raises(AssertionError):
        check_noisy_labels()


def test_split_is_a_partition():
    x, y = torch.arange(50).float().view(50, 1), torch.arange(50)
    xtr, ytr, xv, yv = G.split(x, y, n_val=10, seed=0)
    assert len(yv) == 10 and len(ytr) == 40
    assert sorted(torch.cat([ytr, yv]).tolist()) == list(range(50))
    with pytest.raises(ValueError, match="n_val"):
        G.split(x, y, n_val=50, seed=0)


def test_stacked_forward_equals_plain_forward():
    models = [G.make_mlp(inputs=12, hidden=7, seed=s) for s in range(3)]
    params, _ = torch.func.stack_module_state(models)
    x = torch.randn(3, 5, 12)
    out = models[0].stacked_forward(params, x)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]))
    # different seeds, different weights; the same seed, the same weights
    assert not torch.equal(models[0].fc1.weight, models[1].fc1.weight)
    assert torch.equal(G.make_mlp(inputs=12, hidden=7, seed=1).fc1.weight, models[1].fc1.weight)


def test_lr_cuts():
    np.testing.assert_array_equal(G.lr_cuts([20, 40, 60, 80], [0.3, 0.3, 0.03, 0.003]), [40, 60])
    assert len(G.lr_cuts([20, 40], [0.1, 0.2])) == 0
    with pytest.raises(ValueError, match="steps and lrs"):
        G.lr_cuts([1, 2], [0.1])


def test_error_around():
    steps = np.arange(10, 110, 10)
    errors = np.tile(np.r_[np.full(5, 0.5), np.full(5, 0.2)], (2, 1))
    before, after = G.error_around(steps, errors, at=50, width=3)
    np.testing.assert_allclose(before, 0.5)
    np.testing.assert_allclose(after, 0.2)
    with pytest.raises(ValueError, match="at=90"):
        G.error_around(steps, errors, at=90, width=3)


@pytest.fixture(scope="module")
def digits():
    d = mnist()
    return G.pooled(d.x_train), d.y_train, G.pooled(d.x_test), d.y_test


def final_train_loss(digits, optimizer, lr, seeds=range(10)):
    x, y, xt, yt = digits
    cfg = TrainConfig(steps=300, batch_size=64, optimizer=optimizer, lr=lr, eval_every=300)
    return G.train_mlps(x, y, cfg=cfg, seeds=seeds, hidden=32)["train_loss"][:, -1]


def test_tuned_optimizers_rank_as_the_chapter_says(digits):
    """Chapter 3, at its full (cheap) scale: each optimizer at its best learning rate of the grid."""
    sgd, mom = final_train_loss(digits, "sgd", 1.0), final_train_loss(digits, "momentum", 0.3)
    nest, adam = final_train_loss(digits, "nesterov", 0.3), final_train_loss(digits, "adam", 0.03)
    assert compare(sgd, mom).exceeds(2)     # momentum lower than SGD
    assert compare(mom, nest).exceeds(2)    # Nesterov lower than momentum
    assert compare(mom, adam).exceeds(2)    # Adam lower than momentum
    c = compare(adam, nest)
    assert abs(c.diff) < 2 * c.se           # Adam and Nesterov: no difference at this spread
    # at the shared rate 0.1 the order of momentum and Adam reverses
    assert compare(final_train_loss(digits, "adam", 0.1), final_train_loss(digits, "momentum", 0.1)).exceeds(2)


# ---- chapter 4: schedules and early stopping, at the chapter's scale (each run takes seconds) ----

@pytest.fixture(scope="module")
def split_digits():
    d = mnist()
    x, y, xv, yv = G.split(G.pooled(d.x_train), d.y_train, n_val=1000, seed=0)
    return x, y, xv, yv, G.pooled(d.x_test), d.y_test


def schedule_run(data, schedule, steps=900):
    x, y, xv, yv, _, _ = data
    cfg = TrainConfig(steps=steps, batch_size=32, optimizer="momentum", lr=0.3, schedule=schedule, eval_every=20)
    return G.train_mlps(x, y, cfg=cfg, seeds=range(10), hidden=32, x_val=xv, y_val=yv)


def test_error_drops_at_the_first_decay_and_the_second_decay_costs(split_digits):
    from dlbook.optim import Schedule

    const = schedule_run(split_digits, Schedule(), steps=400)
    step = schedule_run(split_digits, Schedule(kind="step", milestones=(300, 600)))
    once = schedule_run(split_digits, Schedule(kind="step", milestones=(300,)))
    b, a = G.error_around(step["step"], 1 - step["train_acc"], 300, width=3)
    cb, ca = G.error_around(const["step"], 1 - const["train_acc"], 300, width=3)
    assert compare(b - a, cb - ca, paired=True).exceeds(2)
    # keeping the rate after step 600 ends lower than the second decay
    assert compare(1 - step["train_acc"][:, -1], 1 - once["train_acc"][:, -1], paired=True).exceeds(2)


def test_error_drops_at_the_first_plateau_cut(split_digits):
    from dlbook.optim import Schedule
    from dlbook.train import fit

    x, y, xv, yv, _, _ = split_digits
    cfg = TrainConfig(steps=900, batch_size=32, optimizer="momentum", lr=0.3, eval_every=20,
                      schedule=Schedule(kind="plateau", patience=3, threshold=0.01))
    before, after = [], []
    for s in range(5):
        h = fit(G.make_mlp(inputs=196, hidden=32, seed=s), x, y, cfg=cfg, seed=s, device="cpu", x_val=xv, y_val=yv)
        st = np.array(h["step"])
        cut = G.lr_cuts(st, h["lr"])[0]
        b, a = G.error_around(st, 1 - np.array(h["train_acc"])[None], int(cut), width=3)
        before.append(b[0])
        after.append(a[0])
    assert compare(before, after, paired=True).exceeds(2)


def test_label_noise_overfits_and_early_stopping_helps(split_digits):
    import dataclasses

    from dlbook.metrics import evaluate
    from dlbook.train import fit

    x, y, xv, yv, xt, yt = split_digits
    xn, yn = x[:1000], G.noisy_labels(y[:1000], fraction=0.4, seed=1)[0]
    yvn = G.noisy_labels(yv, fraction=0.4, seed=2)[0]
    cfg = TrainConfig(steps=1000, batch_size=50, optimizer="adam", lr=3e-3, eval_every=20)
    over = G.train_mlps(xn, yn, cfg=cfg, seeds=range(10), hidden=128, x_val=xv, y_val=yvn)
    val_err = 1 - over["val_acc"]
    assert compare(val_err[:, -1], val_err.min(1), paired=True).exceeds(2)       # validation error rises
    assert (1 - over["train_acc"][:, -1]).mean() < 0.25                         # most noisy labels memorized
    final = [evaluate(m, xt, yt, device="cpu")[1] for m in over["models"]]
    stopped = []
    for s in range(10):
        m = G.make_mlp(inputs=196, hidden=128, seed=s)
        h = fit(m, xn, yn, cfg=dataclasses.replace(cfg, patience=5), seed=s, device="cpu", x_val=xv, y_val=yvn)
        assert evaluate(m, xv, yvn, device="cpu")[0] == pytest.approx(min(h["val_loss"]), abs=1e-6)  # restored
        stopped.append(evaluate(m, xt, yt, device="cpu")[1])
    assert compare(stopped, final, paired=True).exceeds(2)
