"""Memory accounting: hand-computed small cases, meta == CPU, mutation tests."""

import pytest
import torch
import torchvision

from dlbook import memory as mem
from dlbook.optim import make_optimizer

F32 = 4  # bytes per float32 element, by definition of the format


def check_linear_by_hand():
    """Linear(3 -> 5) on a batch of 4: the weight's gradient needs the input; the input's
    gradient (only when the input requires one) needs the weight."""
    lin = torch.nn.Linear(3, 5)
    for needs_grad, weight_bytes in ((False, 0), (True, 5 * 3 * F32)):
        x = torch.randn(4, 3, requires_grad=needs_grad)
        s = mem.saved_tensors(lambda: lin(x), lin.parameters())
        assert s.activations == 4 * 3 * F32, s
        assert s.parameters == weight_bytes, s


def check_mlp_counts_shared_storage_once():
    """Linear -> ReLU -> Linear: ReLU's output is the 2nd Linear's input, one storage."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.ReLU(),
                              torch.nn.Linear(7, 2))
    x = torch.randn(4, 3)
    s = mem.saved_tensors(lambda: net(x), net.parameters())
    assert s.activations == (4 * 3 + 4 * 7) * F32, s
    assert s.parameters == 2 * 7 * F32, s  # the first weight is not needed


def test_fmt_bytes_binary_units():
    assert mem.fmt_bytes(2**20) == "1.00 MiB"
    assert mem.fmt_bytes(10**6) == "976.56 KiB"
    assert mem.fmt_bytes(3 * 2**30 // 2) == "1.50 GiB"
    assert mem.fmt_bytes(12) == "12 B"
    with pytest.raises(ValueError, match="n"):
        mem.fmt_bytes(-1)


def test_linear_by_hand():
    check_linear_by_hand()


def test_mlp_shared_storage_by_hand():
    check_mlp_counts_shared_storage_once()


def test_conv_by_hand():
    conv = torch.nn.Conv2d(2, 4, 3)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    s = mem.saved_tensors(lambda: conv(x), conv.parameters())
    assert s.activations == 1 * 2 * 5 * 5 * F32, s
    assert s.parameters == 4 * 2 * 3 * 3 * F32, s


def test_relu_saves_its_output():
    x = torch.randn(3, 5, requires_grad=True)
    s = mem.saved_tensors(lambda: torch.relu(x))
    assert (s.activations, s.count) == (3 * 5 * F32, 1)


def test_views_count_whole_storage_once():
    a = torch.zeros(10, device="meta")
    assert mem.unique_bytes([a, a[2:5], a.view(2, 5)]) == 10 * F32


@pytest.mark.parametrize("name, k", [("sgd", 0), ("momentum", 1), ("adam", 2),
                                     ("adamw", 2)])
def test_state_multiplier_matches_a_real_step(name, k):
    assert mem.state_multiplier(name) == k
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = make_optimizer(net.parameters(), name=name, lr=0.1)
    mem.training_loss(net, torch.randn(5, 3)).backward()
    opt.step()
    assert mem.optimizer_state_bytes(opt) == k * mem.param_bytes(net)
    assert mem.grad_bytes(net) == mem.param_bytes(net) == (12 + 4 + 8 + 2) * F32


def small_resnet(device):
    with torch.device(device):
        torch.manual_seed(0)
        return torchvision.models.resnet18(num_classes=10, weights=None)


def test_meta_equals_cpu_for_resnet18():
    acc = {}
    for device in ("cpu", "meta"):
        net = small_resnet(device)
        x = torch.zeros(2, 3, 32, 32, device=device)
        acc[device] = (mem.saved_for_training(net, x),
                       mem.training_memory(net, x, optimizer="adam"))
    assert acc["cpu"] == acc["meta"]
    # a real backward and Adam step on the CPU give the predicted grads and state
    net = small_resnet("cpu")
    opt = make_optimizer(net.parameters(), name="adam", lr=0.1)
    mem.training_loss(net, torch.zeros(2, 3, 32, 32)).backward()
    opt.step()
    m = acc["cpu"][1]
    assert mem.grad_bytes(net) == m.gradients
    assert mem.optimizer_state_bytes(opt) == m.optimizer_state
    assert m.parameters == 11_181_642 * F32  # resnet18 with 10 classes


def test_activations_are_affine_in_batch():
    net = small_resnet("meta")
    bs = [2, 3, 4, 6]
    acts = [mem.saved_for_training(net, torch.zeros(b, 3, 32, 32, device="meta"))
            .activations for b in bs]
    c, k = mem.batch_line(bs, acts)
    assert k > 0 and c >= 0
    with pytest.raises(ValueError, match="affine"):
        mem.batch_line(bs, acts[:-1] + [acts[-1] + 1])


def test_largest_batch():
    assert mem.largest_batch(fixed=10, per_sample=3, budget=22) == 4
    assert mem.largest_batch(fixed=10, per_sample=3, budget=21) == 3
    assert mem.largest_batch(fixed=30, per_sample=3, budget=21) == 0
    with pytest.raises(ValueError, match="per_sample"):
        mem.largest_batch(fixed=1, per_sample=0, budget=2)


def test_checkpointing_saves_memory_and_keeps_gradients():
    x = torch.randn(2, 3, 32, 32)
    grads, saved = [], []
    for ckpt in (False, True):
        net = small_resnet("cpu").double()
        if ckpt:
            mem.checkpoint_blocks(net)
        saved.append(mem.saved_for_training(net, x.double()).activations)
        mem.training_loss(net, x.double()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert saved[1] < saved[0] / 2
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def test_step_times_are_positive_times():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x = torch.randn(4, 3, 2, 2)
    ts = mem.step_times([net, net], x, repeats=2)
    assert len(ts) == 2 and all(0 < t < 10 for t in ts)
    assert 0 < mem.step_times([net], x, backward=False)[0] < 10
    with pytest.raises(ValueError, match="repeats"):
        mem.step_times([net], x, repeats=0)


def test_check_fails_when_bytes_per_element_is_wrong(monkeypatch):
    monkeypatch.setattr(mem, "storage_nbytes", lambda t: 2 * t.numel() * 4)
    with pytest.raises(AssertionError):
        check_linear_by_hand()


def test_check_fails_when_a_storage_is_counted_twice(monkeypatch):
    monkeypatch.setattr(mem, "storage_key", lambda t: id(t))
    with pytest.raises(AssertionError):
        check_mlp_counts_shared_storage_once()
