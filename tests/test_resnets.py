"""Chapter 14: grouped convolutions, AlexNet's parameters, plain vs residual nets, gradient norms, the degradation claim."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlbook import resnets as R
from dlbook.data import mnist
from dlbook.metrics import param_count
from dlbook.results import compare

CONVS = [(96, 256, 5, 2, 27), (384, 384, 3, 2, 13), (12, 18, 3, 3, 7), (8, 8, 1, 8, 5), (6, 4, 3, 1, 4)]


@pytest.mark.parametrize("c_in,c_out,k,g,size", CONVS)
def test_grouped_counts_against_torch(c_in, c_out, k, g, size):
    conv = nn.Conv2d(c_in, c_out, k, groups=g, padding=k // 2)
    assert R.grouped_conv_params(c_in, c_out, k, groups=g) == param_count(conv)
    with FlopCounterMode(display=False) as fc:
        conv(torch.zeros(1, c_in, size, size))
    assert 2 * R.grouped_conv_macs(c_in, c_out, k, out_size=size, groups=g) == fc.get_total_flops()
    assert R.grouped_conv_params(c_in, c_out, k, groups=g, bias=False) * g == R.grouped_conv_params(
        c_in, c_out, k, groups=1, bias=False)


def test_block_diagonal_weight_gives_the_grouped_output():
    conv = nn.Conv2d(6, 4, 3, groups=2, bias=False)
    x = torch.randn(2, 6, 5, 5)
    dense = R.block_diagonal(conv.weight.detach(), 2)
    assert torch.allclose(F.conv2d(x, dense), conv(x), atol=1e-6)
    assert dense[:2, 3:].abs().sum() == 0 and dense[2:, :3].abs().sum() == 0
    with pytest.raises(ValueError, match="groups"):
        R.block_diagonal(conv.weight.detach(), 3)


def test_grouped_conv_is_two_gpus_side_by_side():
    net = R.alexnet()
    conv2 = net[4]
    x = torch.randn(1, 96, 27, 27)
    halves = []
    for g in range(2):  # each "GPU" sees only its own 48 input maps and owns 128 filters
        w, b = conv2.weight[128 * g:128 * (g + 1)], conv2.bias[128 * g:128 * (g + 1)]
        halves.append(F.conv2d(x[:, 48 * g:48 * (g + 1)], w, b, padding=2))
    assert torch.allclose(torch.cat(halves, 1), conv2(x), atol=1e-5)


def test_alexnet_counts_by_formula_module_and_known_totals():
    with torch.device("meta"):
        grouped, dense, tv = R.alexnet(), R.alexnet(grouped=False), torchvision.models.alexnet(weights=None)
        assert grouped(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)
    assert sum(R.alexnet_params().values()) == param_count(grouped) == 60_965_224
    assert sum(R.alexnet_params(grouped=False).values()) == param_count(dense) == 62_378_344
    assert param_count(tv) == 61_100_840


@pytest.mark.parametrize("depth", [8, 20, 32])
def test_cifar_nets_counts_and_plain_equals_residual(depth):
    n = (depth - 2) // 6
    plain, res = (R.cifar_net(depth=depth, residual=r, seed=0) for r in (False, True))
    assert param_count(plain) == param_count(res) == R.net_params(blocks=(n,) * 3, widths=(8, 16, 32))
    assert plain.depth == depth == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in plain.modules())


@pytest.mark.parametrize("blocks,tv", [((2, 2, 2, 2), torchvision.models.resnet18),
                                       ((3, 4, 6, 3), torchvision.models.resnet34)])
def test_imagenet_resnets_match_torchvision(blocks, tv):
    kw = dict(blocks=blocks, widths=(64, 128, 256, 512), in_channels=3, num_classes=1000, stem="imagenet")
    with torch.device("meta"):
        ours, ref, plain = R.Net(shortcut="B", **kw), tv(weights=None), R.Net(shortcut="none", **kw)
    assert param_count(ours) == param_count(ref) == R.net_params(shortcut="B", **kw)
    assert param_count(plain) == R.net_params(shortcut="none", **kw) < param_count(ref)


def test_option_a_shortcut_is_the_identity_when_the_block_is_zero():
    block = R.Block(4, 8, stride=2, shortcut="A", track_stats=False)
    for bn in (block.bn1, block.bn2):
        nn.init.zeros_(bn.weight)
    x = torch.rand(3, 4, 6, 6)
    out = block(x)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2]) and out[:, 4:].abs().sum() == 0


def test_binomial_interval_against_scipy():
    from scipy.stats import binomtest
    lo, hi = binomtest(31, 258).proportion_ci(method="wilson")
    ours = R.binomial_interval(100 * 31 / 258, 258)
    assert abs(ours[0] - 100 * lo) < 1e-9 and abs(ours[1] - 100 * hi) < 1e-9


def digits():
    d = mnist(n_train=1000)
    return R.digits14(d.x_train), d.y_train


def check_gradient_ratios(x, y, seeds=range(5)):
    """log10 of first-conv over last-conv gradient norm: plain-56 far above residual-56, over seeds."""
    ratio = {}
    for r in (False, True):
        g = [R.layer_grad_norms(R.cifar_net(depth=56, residual=r, seed=s), x[:256], y[:256]) for s in seeds]
        ratio[r] = torch.stack([v[0] / v[-2] for v in g]).log10()
    assert compare(ratio[False], ratio[True]).exceeds(2)
    assert ratio[False].min() > 2 and ratio[True].max() < 1.5


def test_plain_gradients_grow_toward_the_input_residual_ones_much_less():
    check_gradient_ratios(*digits())


def test_gradient_check_fails_when_the_shortcut_is_removed(monkeypatch):
    x, y = digits()

    def no_shortcut(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))

    monkeypatch.setattr(R.Block, "forward", no_shortcut)
    with pytest.raises(AssertionError):
        check_gradient_ratios(x, y, seeds=range(3))


def test_alexnet_total_catches_ungrouped_layers(monkeypatch):
    monkeypatch.setattr(R, "ALEXNET_GROUPS", {"conv2": 1, "conv4": 2, "conv5": 2})
    with pytest.raises(AssertionError):
        test_alexnet_counts_by_formula_module_and_known_totals()


def test_vgg19_count_by_formula_equals_torchvision():
    with torch.device("meta"):
        assert R.vgg_params() == param_count(torchvision.models.vgg19())
        assert R.vgg_params(num_classes=10) == param_count(torchvision.models.vgg19(num_classes=10))


def test_scaled_cfg_scales_steps_milestones_and_grid_and_keeps_the_rest():
    cfg = R.DEGRADATION_CFG
    long = R.scaled_cfg(cfg, 4)
    assert long.steps == 4 * cfg.steps and long.eval_every == 4 * cfg.eval_every
    assert long.schedule.milestones == tuple(4 * m for m in cfg.schedule.milestones)
    assert long.schedule.gamma == cfg.schedule.gamma and long.lr == cfg.lr
    flat = R.without_cuts(cfg)
    assert all(flat.schedule.factor(t) == 1.0 for t in range(1, cfg.steps + 1))
    assert cfg.schedule.factor(cfg.steps) < 1.0
    with pytest.raises(ValueError, match="factor"):
        R.scaled_cfg(cfg, 0)


@pytest.mark.parametrize("kw", [dict(blocks=(1, 1, 1), widths=(4, 8, 16), shortcut="none"),
                                dict(blocks=(2, 1, 1), widths=(4, 8, 16), shortcut="A"),
                                dict(blocks=(1, 1), widths=(4, 8), shortcut="B", in_channels=3, stem="imagenet")])
def test_stacked_forward_matches_each_nets_forward_and_its_gradient(kw):
    torch.manual_seed(0)
    nets = [R.Net(**kw) for _ in range(3)]
    for m in nets:  # non-trivial batch-norm affine parameters
        for bn in (b for b in m.modules() if isinstance(b, nn.BatchNorm2d)):
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.5, 0.5)
    c = kw.get("in_channels", 1)
    x = torch.randn(3, 5, c, 16, 16)
    params = {n: torch.stack([dict(m.named_parameters())[n] for m in nets]).detach().requires_grad_()
              for n, _ in nets[0].named_parameters()}
    out = nets[0].stacked_forward(params, x)
    out.square().sum().backward()
    for k, m in enumerate(nets):
        ref = m(x[k])
        assert torch.allclose(out[k], ref, atol=1e-5)
        ref.square().sum().backward()
        for n, p in m.named_parameters():
            assert torch.allclose(params[n].grad[k], p.grad, atol=1e-4), n


def test_stacked_forward_refuses_running_statistics():
    net = R.Net(blocks=(1,), widths=(4,), track_stats=True)
    params = {n: p.unsqueeze(0) for n, p in net.named_parameters()}
    with pytest.raises(ValueError, match="track_stats"):
        net.stacked_forward(params, torch.randn(1, 2, 1, 8, 8))


def test_train_nets_stacked_equals_vmap_of_the_module(monkeypatch):
    x, y = torch.randn(40, 1, 14, 14), torch.randint(10, (40,))
    cfg = replace(R.DEGRADATION_CFG, steps=12, eval_every=4, schedule=R.Schedule(kind="step", milestones=(8,)))
    fast = R.train_nets(depth=8, residual=True, seeds=[0, 1], x=x, y=y, cfg=cfg)
    monkeypatch.delattr(R.Net, "stacked_forward")
    slow = R.train_nets(depth=8, residual=True, seeds=[0, 1], x=x, y=y, cfg=cfg)
    for key in ("train_loss", "train_acc"):
        assert np.allclose(fast[key], slow[key], atol=1e-4), key
