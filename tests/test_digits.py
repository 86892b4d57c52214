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
