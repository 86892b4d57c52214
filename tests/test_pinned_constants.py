"""Constants the book's numbers rest on, pinned against closed forms outside the code under test.

Halving the L2 penalty in both engines used to leave every test green (the engines were only
compared with each other): here each engine's step is compared with the closed form.
"""

import pytest
import torch
from torch import nn

from dlbook.sweep import fit_stacked
from dlbook.train import TrainConfig, fit


def one_weight(w0: float) -> nn.Linear:
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(w0)
    return m


@pytest.mark.parametrize("lam, lr, steps", [(0.1, 0.5, 1), (0.02, 0.3, 7)])
def test_the_l2_penalty_is_lam_times_the_squared_norm_in_both_engines(lam, lr, steps):
    """On x = 0, y = 0 the data gradient vanishes; lam * w^2 alone gives w_t = w_0 (1 - 2 lr lam)^t."""
    x, y = torch.zeros(8, 1), torch.zeros(8)
    cfg = TrainConfig(steps=steps, batch_size=8, optimizer="sgd", momentum=0.0, lr=lr, penalty=lam,
                      loss="mse")
    expected = 1.5 * (1 - 2 * lr * lam) ** steps
    m = one_weight(1.5)
    fit(m, x, y, cfg=cfg, seed=0, device="cpu")
    assert m.weight.item() == pytest.approx(expected, rel=1e-6)
    ms = [one_weight(1.5), one_weight(1.5)]
    fit_stacked(ms, torch.stack([x, x]), torch.stack([y, y]), cfg=cfg, seeds=[0, 1], device="cpu")
    assert [mm.weight.item() for mm in ms] == pytest.approx([expected] * 2, rel=1e-6)


def test_optimizer_weight_decay_is_lam_times_w_in_the_gradient():
    """torch's (coupled) weight_decay adds lam * w to the gradient: w_1 = w_0 (1 - lr lam)."""
    x, y = torch.zeros(4, 1), torch.zeros(4)
    cfg = TrainConfig(steps=1, batch_size=4, optimizer="sgd", momentum=0.0, lr=0.5, weight_decay=0.2,
                      loss="mse")
    m = one_weight(2.0)
    fit(m, x, y, cfg=cfg, seed=0, device="cpu")
    assert m.weight.item() == pytest.approx(2.0 * (1 - 0.5 * 0.2), rel=1e-6)
