"""Every evaluation gives the same numbers when the split is permuted or cut into other chunks.

The failure this guards against: batch-statistics batch norm evaluated in chunks of class-sorted
data normalises each chunk by one class (accuracy 0.20 for networks that fit their data).
"""

import pytest
import torch
from torch import nn

from dlbook import data
from dlbook.metrics import evaluate, outputs, uses_batch_statistics
from dlbook.sweep import fit_stacked, stacked_logits
from dlbook.train import TrainConfig, fit
from dlbook.weight_decay import mlp

D = 16


def sorted_split(n=400, seed=0):
    """A class-sorted split with well-separated classes, so a trained model is far above chance."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(10).repeat_interleave(n // 10)
    centres = torch.randn(10, D, generator=g) * 3
    return centres[y] + torch.randn(n, D, generator=g), y


def trained(batch_norm, seed=0):
    x, y = sorted_split()
    model = mlp(inputs=D, hidden=32, batch_norm=batch_norm, seed=seed)
    fit(model, x, y, cfg=TrainConfig(steps=150, optimizer="adam", lr=1e-2), seed=seed, device="cpu")
    return model, x, y


@pytest.mark.parametrize("batch_norm", [False, True])
def test_evaluate_is_invariant_to_order_and_chunking(batch_norm):
    model, x, y = trained(batch_norm)
    assert uses_batch_statistics(model) == batch_norm
    loss, acc = evaluate(model, x, y, device="cpu")
    assert acc > 0.9  # the sorted split is fitted; a per-chunk normalisation would not see it
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    for bs in (7, 51, 1000):
        l2, a2 = evaluate(model, x[perm], y[perm], device="cpu", batch_size=bs)
        assert a2 == acc and l2 == pytest.approx(loss, rel=1e-5, abs=1e-6)


def test_a_chunked_batch_statistics_evaluation_would_differ():
    """The control: feeding the sorted split in chunks really changes a batch-norm model's answer."""
    model, x, y = trained(True)
    model.eval()
    with torch.no_grad():
        chunked = torch.cat([model(x[i:i + 40]) for i in range(0, len(x), 40)])
    whole = outputs(model, x, device="cpu", batch_size=40)
    assert (chunked.argmax(-1) == y).double().mean() < (whole.argmax(-1) == y).double().mean() - 0.3


@pytest.mark.parametrize("batch_norm", [False, True])
def test_stacked_evaluation_is_invariant_to_order_and_matches_the_plain_one(batch_norm):
    x, y = sorted_split()
    models = [mlp(inputs=D, hidden=32, batch_norm=batch_norm, seed=s) for s in (0, 1)]
    cfg = TrainConfig(steps=100, optimizer="adam", lr=1e-2, eval_every=50)
    xs, ys = torch.stack([x, x]), torch.stack([y, y])
    hist = fit_stacked(models, xs, ys, cfg=cfg, seeds=[0, 1], device="cpu", x_val=xs, y_val=ys)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(2))
    logits = stacked_logits(models, xs[:, perm], device="cpu")
    for k, m in enumerate(models):
        acc = (logits[k].argmax(-1) == y[perm]).double().mean().item()
        assert acc == pytest.approx(evaluate(m, x, y, device="cpu")[1])
        assert hist["val_acc"][k, -1] == pytest.approx(acc)
    assert hist["val_acc"][:, -1].min() > 0.9


def test_the_books_mnist_is_not_class_sorted():
    d = data.mnist(n_train=4000)
    assert (d.y_train[1:] != d.y_train[:-1]).double().mean() > 0.8


def test_a_model_with_running_statistics_is_chunked_as_usual():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    assert not uses_batch_statistics(net)
