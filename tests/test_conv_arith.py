"""Chapter 9: output sizes, parameter and multiply-add counts, checked against real torch modules."""

import itertools

import numpy as np
import pytest
import torch
import torchvision
from torch import nn


from dlbook.conv_arith import (SHORTCUTS, conv_output_size, conv_params, input_coverage, layer_table, mnist_cnn,
                               module_param_count, plain34, pool_output_size, resnet34_count, same_padding,
                               vgg19_count)


def torch_size(layer, n):
    try:
        return layer(torch.zeros(1, 1, n, n)).shape[-1]
    except RuntimeError:
        return None


def ours(fn, n, **kw):
    try:
        return fn(n, **kw)
    except ValueError:
        return None


def test_conv_output_size_matches_conv2d_on_a_grid():
    for n, k, s, p, d in itertools.product(range(1, 10), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
        assert ours(conv_output_size, n, kernel=k, stride=s, padding=p, dilation=d) == torch_size(conv, n)


def test_pool_output_size_matches_maxpool2d_on_a_grid_including_ceil_mode():
    refused = 0
    for n, k, s, p, d, c in itertools.product(range(1, 10), (1, 2, 3, 4), (1, 2, 3), (0, 1, 2), (1, 2), (False, True)):
        try:
            pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=c)
        except ValueError:
            continue
        got = ours(pool_output_size, n, kernel=k, stride=s, padding=p, dilation=d, ceil_mode=c)
        assert got == torch_size(pool, n), (n, k, s, p, d, c)
        refused += got is None
    assert refused > 0  # the grid exercises the refusals too


def test_ceil_mode_counts_a_partial_window_unless_it_starts_in_the_padding():
    assert pool_output_size(5, kernel=2) == 2
    assert pool_output_size(5, kernel=2, ceil_mode=True) == 3
    assert pool_output_size(4, kernel=2, stride=2, padding=1, ceil_mode=True) == 3


def test_bad_arguments_raise_naming_them():
    with pytest.raises(TypeError, match="kernel"):
        conv_output_size(28, kernel=2.5)
    with pytest.raises(ValueError, match="stride"):
        conv_output_size(28, kernel=3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        conv_output_size(28, kernel=3, padding=-1)
    with pytest.raises(ValueError, match="kernel"):
        conv_output_size(4, kernel=7)
    with pytest.raises(ValueError, match="padding"):
        pool_output_size(8, kernel=2, padding=2)
    with pytest.raises(ValueError, match="kernel"):
        same_padding(4)


def test_same_padding_keeps_the_size():
    for k, d, n in itertools.product((1, 3, 5, 7), (1, 2, 3), (8, 9)):
        assert conv_output_size(n, kernel=k, padding=same_padding(k, dilation=d), dilation=d) == n


def test_conv_params_matches_conv2d_and_the_seed_worked_example():
    assert conv_params(3, 8, 5) == 8 * (5 * 5 * 3 + 1) == 608
    for c_in, c_out, k, bias, g in [(3, 8, 5, True, 1), (4, 6, (3, 1), False, 2), (8, 8, 3, True, 8)]:
        conv = nn.Conv2d(c_in, c_out, k, bias=bias, groups=g)
        assert conv_params(c_in, c_out, k, bias=bias, groups=g) == sum(p.numel() for p in conv.parameters())
    assert nn.Conv2d(3, 8, 5)(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 28, 28)
    assert nn.Conv2d(3, 8, 5, padding=2)(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 32, 32)


@pytest.mark.parametrize("n,k,s,p", [(7, 3, 1, 0), (7, 3, 1, 1), (8, 5, 1, 2), (9, 3, 2, 1), (28, 5, 1, 0), (28, 5, 1, 2)])
def test_input_coverage_is_the_gradient_of_an_all_ones_convolution(n, k, s, p):
    x = torch.zeros(1, 1, n, n, requires_grad=True)
    nn.functional.conv2d(x, torch.ones(1, 1, k, k), stride=s, padding=p).sum().backward()
    assert np.array_equal(input_coverage(n, kernel=k, stride=s, padding=p), x.grad[0, 0].numpy().astype(int))


def test_vgg19_and_resnet34_formulas_match_torchvision_by_kind():
    with torch.device("meta"):
        vgg, res = torchvision.models.vgg19(weights=None), torchvision.models.resnet34(weights=None)
    assert vgg19_count().as_dict() == module_param_count(vgg).as_dict()
    assert resnet34_count(shortcut="B").as_dict() == module_param_count(res).as_dict()
    assert vgg19_count().total == 143_667_240  # the quoted VGG figure is torchvision's VGG-19, biases and head included
    with torch.device("meta"):
        vgg_bn = torchvision.models.vgg19_bn(weights=None)
    assert vgg19_count(batch_norm=True).as_dict() == module_param_count(vgg_bn).as_dict()


def test_plain34_module_matches_the_formula_and_the_quoted_figure_without_batch_norm():
    for bn in (True, False):
        counted = module_param_count(plain34(batch_norm=bn, device="meta"))
        assert counted.as_dict() == resnet34_count(shortcut="none", batch_norm=bn, conv_bias=not bn).as_dict()
    no_bn = resnet34_count(shortcut="none", batch_norm=False, conv_bias=True)
    assert no_bn.total == 21_616_232
    assert resnet34_count(shortcut="A").total == resnet34_count(shortcut="none").total
    extra = resnet34_count(shortcut="B").total - resnet34_count(shortcut="A").total
    assert extra == 64 * 128 + 128 * 256 + 256 * 512 + 2 * (128 + 256 + 512)


def quoted_conventions(quoted: int, network: str) -> list[str]:
    """The counting conventions (conv biases, batch norm, fc head, shortcut) that give `quoted` parameters."""
    found = []
    for bias, bn, head in itertools.product((True, False), repeat=3):
        counts = ([("-", vgg19_count(batch_norm=bn))] if network == "VGG-19" else
                  [(sc, resnet34_count(shortcut=sc, batch_norm=bn, conv_bias=bias)) for sc in SHORTCUTS])
        for shortcut, r in counts:
            total = r.total - (0 if bias else r.conv_bias) - (0 if head else r.fc_weight + r.fc_bias)
            if total == quoted:
                found.append((shortcut, bias, bn, head))
    return found


def test_quoted_figures_each_match_one_convention():
    # VGG-19 as published (biases, no batch norm, head); plain-34 / option A without its batch norm
    assert quoted_conventions(143_667_240, "VGG-19") == [("-", True, False, True)]
    assert sorted(quoted_conventions(21_616_232, "34-layer")) == [("A", True, False, True), ("none", True, False, True)]
    assert quoted_conventions(21_616_232 + 1, "34-layer") == []


def test_plain34_runs_and_has_34_weighted_layers():
    model = plain34(num_classes=10)
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == 34
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_multiply_adds_match_the_resnet_paper_figures():
    assert round(vgg19_count().macs / 1e9, 1) == 19.6
    assert round(resnet34_count(shortcut="none").macs / 1e9, 1) == 3.6
    assert round(resnet34_count(shortcut="B").macs / 1e9, 1) == 3.7


def test_conv_bias_before_batch_norm_has_no_effect_in_training_mode():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
    y1 = bn(conv(x))
    with torch.no_grad():
        conv.bias.add_(torch.randn(4) * 5)
    assert torch.allclose(bn(conv(x)), y1, atol=1e-5)


def test_mnist_cnn_shapes_follow_the_formula():
    rows = layer_table(mnist_cnn(), torch.zeros(1, 1, 28, 28))
    assert [r["output shape"][-1] for r in rows[:7]] == [28, 24, 12, 12, 8, 4, 4]
    assert rows[7]["output shape"] == (320,)
    for k, s, p in [(3, 3, 1), (14, 1, 3)]:
        assert layer_table(mnist_cnn(kernel=k, stride=s, padding=p), torch.zeros(2, 1, 28, 28))[7]["output shape"] == (20,)
    with pytest.raises(ValueError, match="kernel"):
        mnist_cnn(kernel=14, padding=2)
    assert module_param_count(mnist_cnn()).total == sum(r["parameters"] for r in rows)


def test_mnist_cnn_is_seeded_and_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    a, b, c = mnist_cnn(seed=1), mnist_cnn(seed=1), mnist_cnn(seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)


def test_module_param_count_refuses_unknown_layers():
    with pytest.raises(ValueError, match="outside"):
        module_param_count(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)))


def test_padding_benefits_and_costs_of_the_chapter():
    depth, n = 0, 32
    while True:
        try:
            n = conv_output_size(n, kernel=3)
        except ValueError:
            break
        depth += 1
    assert depth == 15 and n == 2
    cover0, cover2 = input_coverage(28, kernel=5), input_coverage(28, kernel=5, padding=2)
    assert (cover0[0, 0], cover2[0, 0], cover0[14, 14], cover2[14, 14]) == (1, 9, 25, 25)
    grey = torch.full((1, 1, 12, 12), 0.5)
    response = nn.functional.conv2d(grey, torch.tensor([[-1.0, 0.0, 1.0]] * 3).reshape(1, 1, 3, 3), padding=1)[0, 0]
    fired = response.abs() > 1e-6
    assert not fired[:, 1:-1].any() and fired[:, 0].all() and fired[:, -1].all()


def test_same_padded_mnist_cnn_and_stride_three_sizes():
    rows = layer_table(mnist_cnn(padding=2), torch.zeros(1, 1, 28, 28))
    assert rows[7]["output shape"] == (980,)
    assert conv_output_size(28, kernel=3, stride=3, padding=1) == 10
    assert min(p for p in range(8) if _builds(kernel=14, padding=p)) == 3


def _builds(**kw):
    try:
        mnist_cnn(**kw)
        return True
    except ValueError:
        return False


def test_fully_connected_layers_are_convolutions():
    torch.manual_seed(0)
    fc = nn.Linear(512, 10)
    conv = nn.Conv2d(512, 10, 1)
    with torch.no_grad():
        conv.weight.copy_(fc.weight[:, :, None, None])
        conv.bias.copy_(fc.bias)
    x = torch.randn(2, 512, 1, 1)
    assert torch.allclose(conv(x).flatten(1), fc(x.flatten(1)), atol=1e-5)
    assert conv_params(512, 1000, 1) == 512 * 1000 + 1000
    fc7 = nn.Linear(8 * 7 * 7, 6)
    conv7 = nn.Conv2d(8, 6, 7)
    with torch.no_grad():
        conv7.weight.copy_(fc7.weight.reshape(6, 8, 7, 7))
        conv7.bias.copy_(fc7.bias)
    x = torch.randn(2, 8, 7, 7)
    assert torch.allclose(conv7(x).flatten(1), fc7(x.flatten(1)), atol=1e-5)


def test_floor_and_ceil_pooling_differ_exactly_for_odd_sizes():
    for n in range(2, 20):
        floor, ceil = pool_output_size(n, kernel=2), pool_output_size(n, kernel=2, ceil_mode=True)
        assert (floor, ceil) == (n // 2, -(-n // 2))


def test_resnet18_by_formula_matches_torchvision():
    with torch.device("meta"):
        res18 = torchvision.models.resnet18(weights=None)
    assert resnet34_count(blocks=(2, 2, 2, 2)).as_dict() == module_param_count(res18).as_dict()
    with pytest.raises(ValueError, match="blocks"):
        resnet34_count(blocks=(3, 4, 6))
    with pytest.raises(ValueError, match="shortcut"):
        resnet34_count(shortcut="C")


def test_output_size_check_fails_when_the_formula_is_off_by_one(monkeypatch):
    real = conv_output_size
    monkeypatch.setitem(globals(), "conv_output_size", lambda n, **kw: real(n, **kw) + (n == 7))
    with pytest.raises(AssertionError):
        test_conv_output_size_matches_conv2d_on_a_grid()


def test_parameter_check_fails_when_a_count_is_inflated(monkeypatch):
    from dlbook.conv_arith import ParamCount

    real = vgg19_count
    monkeypatch.setitem(globals(), "vgg19_count", lambda **kw: real(**kw) + ParamCount(fc_bias=500))
    with pytest.raises(AssertionError):
        test_vgg19_and_resnet34_formulas_match_torchvision_by_kind()

