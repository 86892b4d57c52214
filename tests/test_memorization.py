"""Chapter 13 (memorization): label and pixel randomization against plain loops, the models' stacked
forward against their own forward, the 2n + d construction against an independent torch network,
the MLP's indifference to a fixed pixel permutation, sparse validation and the clean-rows control.
The chapter's page claims are registered in tests/claims/ch13.py."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlbook import memorization as M
from dlbook.data import mnist
from dlbook.results import compare
from dlbook.runtime import torch_generator
from dlbook.train import TrainConfig, fit


def test_corrupt_labels_keeps_class_counts_and_changes_the_expected_share():
    y = torch.randint(10, (20000,), generator=torch_generator(0))
    assert torch.equal(M.corrupt_labels(y, fraction=0.0, seed=1), y)
    for fraction in (0.3, 1.0):
        z = M.corrupt_labels(y, fraction=fraction, seed=1)
        assert torch.equal(torch.bincount(z, minlength=10), torch.bincount(y, minlength=10))
        changed = sum(int(a != b) for a, b in zip(y.tolist(), z.tolist())) / len(y)  # plain loop
        # a permuted label keeps its class with probability sum_c p_c^2 (about 0.1)
        p = (torch.bincount(y, minlength=10).double() / len(y))
        expected = fraction * (1 - float((p ** 2).sum()))
        se = np.sqrt(expected * (1 - expected) / len(y))
        assert abs(changed - expected) < 4 * se + 1e-3


def test_corrupt_labels_rejects_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        M.corrupt_labels(torch.zeros(5, dtype=torch.int64), fraction=1.5, seed=0)
    with pytest.raises(TypeError, match="y"):
        M.corrupt_labels(np.zeros(5), fraction=0.5, seed=0)


def test_shuffle_pixels_applies_one_permutation_to_every_image():
    x = torch.arange(16.0).view(1, 1, 4, 4) + 100 * torch.arange(3.0).view(3, 1, 1, 1)
    z = M.shuffle_pixels(x, seed=0)
    assert not torch.equal(z, x)
    for i in range(3):
        assert torch.equal(z[i] - 100 * i, z[0])  # the same positions moved in every image
        assert torch.equal(z[i].flatten().sort().values, x[i].flatten().sort().values)


def test_mlp_trained_on_permuted_pixels_is_the_permuted_mlp():
    """The chapter's argument: permuting inputs = permuting fc1's columns, and training preserves it."""
    x = torch.rand(64, 1, 6, 6, generator=torch_generator(0))
    y = torch.randint(10, (64,), generator=torch_generator(1))
    xp = M.shuffle_pixels(x, seed=3)
    perm = M.shuffle_pixels(torch.arange(36.0).view(1, 1, 6, 6), seed=3).flatten().long()
    a = M.make_mlp(seed=0, inputs=36, hidden=16)
    b = M.make_mlp(seed=0, inputs=36, hidden=16)
    with torch.no_grad():
        b.fc1.weight.copy_(a.fc1.weight[:, perm])  # W' = W P
    cfg = TrainConfig(steps=50, batch_size=16, optimizer="adam", lr=0.01)
    fit(a, x, y, cfg=cfg, seed=0, device="cpu")
    fit(b, xp, y, cfg=cfg, seed=0, device="cpu")
    assert torch.allclose(a(x), b(xp), atol=1e-5)


@pytest.mark.parametrize("make", [lambda s: M.make_mlp(seed=s), lambda s: M.make_cnn(seed=s)])
def test_stacked_forward_matches_each_models_forward(make):
    models = [make(s) for s in range(3)]
    x = torch.rand(3, 7, 1, 28, 28, generator=torch_generator(0))
    params = {n: torch.stack([dict(m.named_parameters())[n] for m in models]) for n, _ in models[0].named_parameters()}
    out = models[0].stacked_forward(params, x)
    for k, m in enumerate(models):
        assert torch.allclose(out[k], m(x[k]), atol=1e-5)


def test_train_tasks_equals_fit_model_by_model():
    d = mnist(n_train=60, n_test=30, seed=0)
    data = (d.x_train, d.y_train, d.x_test, d.y_test)
    cfg = TrainConfig(steps=30, batch_size=20, optimizer="adam", lr=2e-3)
    tasks = {"real": {}, "shuffled": dict(labels=1.0)}
    run = M.train_tasks(M.make_mlp, tasks, data, seeds=[0, 1], cfg=cfg, device="cpu")
    for k, (name, s) in enumerate(zip(run["task"], run["seed"])):
        x, y, _, _ = M.make_task(*data, **tasks[name], seed=s)
        ref = M.make_mlp(seed=s)
        fit(ref, x, y, cfg=cfg, seed=s, device="cpu")
        assert torch.allclose(ref(d.x_test), run["models"][k](d.x_test), atol=1e-4)


def test_loss_snapshot_keeps_the_first_weights_below_target():
    d = mnist(n_train=100, n_test=50, seed=0)
    cfg = TrainConfig(steps=200, batch_size=50, optimizer="adam", lr=2e-3, eval_every=10)
    run = M.train_tasks(M.make_mlp, {"real": {}}, (d.x_train, d.y_train, d.x_test, d.y_test),
                        seeds=[0, 1], cfg=cfg, device="cpu", target=0.3)
    snap = run["snapshot"]
    for k in range(2):
        model = M.load_params(M.make_mlp(seed=5), snap.params[k])
        with torch.no_grad():
            loss = float(F.cross_entropy(model(d.x_train), d.y_train))
        assert loss == pytest.approx(snap.step_loss[k], abs=1e-5) and loss <= 0.3
        first = np.flatnonzero(run["hist"]["train_loss"][k] <= 0.3)[0]  # fit_stacked's own record
        assert run["hist"]["train_loss"][k][first] == pytest.approx(loss, abs=1e-5)


def test_steps_to_fit_matches_a_plain_loop():
    steps = np.array([10, 20, 30, 40])
    acc = np.array([[0.5, 1.0, 0.9, 1.0], [0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 1.0]])
    expected = []
    for row in acc:
        hit = [s for s, a in zip(steps, row) if a >= 1.0]
        expected.append(hit[0] if hit else np.nan)
    np.testing.assert_array_equal(M.steps_to_fit(steps, acc), np.array(expected, dtype=float))
    with pytest.raises(ValueError, match="acc"):
        M.steps_to_fit(steps, acc[:, :2])


def _check_exact_fit(x, y, seed=0):
    """The constructed weights as a torch network (Linear, ReLU, Linear), evaluated independently."""
    net = M.interpolating_net(x, y, seed=seed)
    n, d = x.shape
    first = torch.nn.Linear(d, n).double()
    second = torch.nn.Linear(n, 1, bias=False).double()
    with torch.no_grad():
        first.weight.copy_(net["a"].expand(n, d))
        first.bias.copy_(-net["b"])
        second.weight.copy_(net["w"].view(1, n))
    out = second(torch.relu(first(x.double()))).squeeze(1)
    assert M.weight_count(net) == 2 * n + d
    assert (out - y.double()).abs().max() < 1e-6 * max(1.0, float(y.abs().max()))
    assert torch.equal(out.round().long(), y.long())


def test_interpolating_net_fits_random_labels_exactly():
    g = torch_generator(0)
    _check_exact_fit(torch.randn(60, 5, generator=g), torch.randint(10, (60,), generator=g))
    d = mnist(n_train=300, n_test=10, seed=0)
    _check_exact_fit(d.x_train.flatten(1), M.corrupt_labels(d.y_train, fraction=1.0, seed=2), seed=1)


def test_exact_fit_check_fails_when_each_bias_sits_above_its_point(monkeypatch):
    # off by one: b_j between z_j and z_(j+1) leaves unit j off at its own point (singular system)
    monkeypatch.setattr(M, "biases_below", lambda zs: torch.cat([(zs[1:] + zs[:-1]) / 2, zs[-1:] + 1.0]))
    g = torch_generator(0)
    with pytest.raises(AssertionError):
        _check_exact_fit(torch.randn(60, 5, generator=g), torch.randint(10, (60,), generator=g))


def test_interpolating_net_rejects_duplicate_points():
    x = torch.ones(3, 4)
    with pytest.raises(ValueError, match="x"):
        M.interpolating_net(x, torch.tensor([0, 1, 2]), seed=0)


def _real_and_shuffled(make, *, data_seed, lr, eval_every):
    """Histories of `make` trained on 200 digits with real and with shuffled labels (5 seeds each),
    and the masks of the shuffled and the real runs."""
    d = mnist(n_train=200, n_test=500, seed=data_seed)
    cfg = TrainConfig(steps=400, batch_size=50, optimizer="adam", lr=lr, eval_every=eval_every)
    run = M.train_tasks(make, {"real": {}, "shuffled": dict(labels=1.0)},
                        (d.x_train, d.y_train, d.x_test, d.y_test), seeds=range(5), cfg=cfg, device="cpu")
    task = np.array(run["task"])
    return run["hist"], task == "shuffled", task == "real"


def test_memorization_claims_at_small_scale():
    """Shuffled labels: fitted, validation at chance, slower to fit than real labels (5 seeds)."""
    h, shuf, real = _real_and_shuffled(M.make_mlp, data_seed=1, lr=2e-3, eval_every=20)
    assert (h["train_acc"][:, -1] == 1).all()
    chance_se = np.sqrt(0.1 * 0.9 / 500)
    assert abs(h["val_acc"][shuf, -1].mean() - 0.1) < 4 * chance_se
    assert compare(h["val_acc"][real, -1], h["val_acc"][shuf, -1]).exceeds(2)
    steps = M.steps_to_fit(h["step"], h["train_acc"])
    assert compare(steps[shuf], steps[real], paired=True).exceeds(2)


def test_cnn_memorizes_shuffled_labels_at_small_scale():
    """The CNN fits shuffled labels of 200 digits (5 seeds), validation near chance, slower than real labels."""
    h, shuf, real = _real_and_shuffled(M.make_cnn, data_seed=2, lr=3e-3, eval_every=5)
    assert (h["train_acc"][shuf, -1] >= 0.99).all()
    assert abs(h["val_acc"][shuf, -1].mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / 500)
    steps = M.steps_to_fit(h["step"], h["train_acc"], level=0.99)
    assert compare(steps[shuf], steps[real], paired=True).exceeds(2)


def test_sparse_validation_equals_full_validation_at_its_steps():
    d = mnist(n_train=100, n_test=50, seed=0)
    data = (d.x_train, d.y_train, d.x_test, d.y_test)
    tasks = {"real": {}, "shuffled": dict(labels=1.0)}
    cfg = TrainConfig(steps=60, batch_size=50, optimizer="adam", lr=2e-3, eval_every=10)
    full = M.train_tasks(M.make_mlp, tasks, data, seeds=[0, 1], cfg=cfg, device="cpu")["hist"]
    sparse = M.train_tasks(M.make_mlp, tasks, data, seeds=[0, 1], cfg=cfg, device="cpu",
                           target=0.5, val_every=20)["hist"]
    cols = [list(full["step"]).index(s) for s in sparse["val_step"]]
    assert list(sparse["val_step"]) == [20, 40, 60]
    np.testing.assert_allclose(sparse["val_acc"], full["val_acc"][:, cols])
    np.testing.assert_allclose(sparse["val_loss"], full["val_loss"][:, cols], rtol=1e-5)
    np.testing.assert_array_equal(sparse["train_acc"], full["train_acc"])
    with pytest.raises(ValueError, match="val_every"):
        M.train_tasks(M.make_mlp, tasks, data, seeds=[0], cfg=cfg, device="cpu", val_every=15)


def test_clean_rows_are_the_rows_corrupt_labels_leaves_alone():
    y = torch.arange(200) % 10
    for fraction in (0.25, 0.5, 1.0):
        z = M.corrupt_labels(y, fraction=fraction, seed=3)
        keep = M.clean_rows(200, fraction=fraction, seed=3)
        assert len(keep) == 200 - round(fraction * 200)
        assert torch.equal(z[keep], y[keep])
        moved = torch.ones(200, dtype=torch.bool)
        moved[keep] = False
        # the other rows were all re-labelled: together they hold exactly the labels they lost
        assert torch.equal(z[moved].sort().values, y[moved].sort().values)
        xs, ys, _, _ = M.make_task(torch.zeros(200, 1, 2, 2), y, None, None, labels=fraction,
                                   clean_only=True, seed=3)
        assert torch.equal(ys, y[keep]) and len(xs) == len(keep)
