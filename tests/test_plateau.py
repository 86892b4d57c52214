"""Reduce-on-plateau (dlbook.optim.Plateau through train.fit): it reads the validation loss, not the
training loss, and stops cutting at its minimum factor; each check goes red when the library is broken."""

import numpy as np
import pytest
import torch
from torch import nn

from dlbook import optim, train
from dlbook.optim import Schedule
from dlbook.train import TrainConfig, fit


def _problem(n=64, d=40, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _run(x, y, x_val, y_val, *, min_factor=0.0):
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 3)
    cfg = TrainConfig(steps=40, batch_size=len(y), lr=0.5, eval_every=2,
                      schedule=Schedule(kind="plateau", patience=2, threshold=1e-3, min_factor=min_factor))
    return fit(model, x, y, cfg=cfg, seed=0, device="cpu", x_val=x_val, y_val=y_val)


def check_plateau_reads_validation_loss():
    """Training loss falls by more than the threshold at every evaluation while the validation loss
    (the training inputs with shifted labels) rises: the rule must cut, and only because of the
    validation loss; with the training set as validation set it must not cut."""
    x, y = _problem()
    same = _run(x, y, x, y)
    tl = np.array(same["train_loss"])
    assert np.all(tl[1:] < tl[:-1] * (1 - 1e-3)), "precondition: the training loss improves at every evaluation"
    assert same["lr"][-1] == same["lr"][0], "the plateau rule cut although the validation loss kept improving"
    h = _run(x, y, x, (y + 1) % 3)  # the same training run until the first cut
    vl = np.array(h["val_loss"])
    assert vl[2] > vl[0], "precondition: the validation loss rises"
    assert h["lr"][-1] < h["lr"][0], "the plateau rule did not cut although the validation loss stopped improving"


def test_plateau_reads_the_validation_loss():
    check_plateau_reads_validation_loss()


def test_plateau_check_fails_when_the_rule_reads_the_training_loss(monkeypatch):
    original = train.Recorder.record

    def reads_training_loss(self, step, opt):  # the mutation: feed the rule the training loss
        observe = self.plateau.observe
        self.plateau.observe = lambda loss: observe(self.hist["train_loss"][-1])
        try:
            return original(self, step, opt)
        finally:
            self.plateau.observe = observe

    monkeypatch.setattr(train.Recorder, "record", reads_training_loss)
    with pytest.raises(AssertionError):
        check_plateau_reads_validation_loss()


def check_minimum_factor(plateau_cls=optim.Plateau):
    s = Schedule(kind="plateau", patience=1, gamma=0.1, min_factor=0.01)
    p = plateau_cls(s)
    cuts = [p.observe(1.0) for _ in range(8)]  # never improves: one cut per evaluation until the floor
    assert cuts == [0, 1, 2, 2, 2, 2, 2, 2], cuts
    assert s.factor(100, cuts=cuts[-1]) == pytest.approx(0.01)
    assert s.factor(100, cuts=5) == pytest.approx(0.01)  # the factor never goes below the floor
    # without a floor (the default) the rule keeps cutting, as before
    free = plateau_cls(Schedule(kind="plateau", patience=1, gamma=0.1))
    assert [free.observe(1.0) for _ in range(5)] == [0, 1, 2, 3, 4]


def test_plateau_stops_at_its_minimum_factor():
    check_minimum_factor()


def test_minimum_factor_check_fails_when_the_floor_is_ignored():
    class NoFloor(optim.Plateau):
        def __init__(self, schedule):
            super().__init__(schedule)
            self.min_factor = 0.0

    with pytest.raises(AssertionError):
        check_minimum_factor(NoFloor)


def test_a_run_with_a_floor_ends_at_it():
    x, y = _problem()
    h = _run(x, y, x, (y + 1) % 3, min_factor=0.01)
    assert h["lr"][-1] == pytest.approx(0.5 * 0.01)


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.1"])
def test_min_factor_is_checked(bad):
    with pytest.raises((ValueError, TypeError), match="min_factor"):
        Schedule(kind="plateau", min_factor=bad)
