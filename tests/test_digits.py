"""dlbook.digits: pooled digits, label noise, the stacked MLP, the error windows (the chapters' comparisons
over seeds are registered claims: tests/claims/ch03.py, ch04.py)."""

import numpy as np
import pytest
import torch

from dlbook import digits as G


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
