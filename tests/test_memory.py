"""Memory accounting: hand-computed small cases, meta == CPU, mutation tests."""

import numpy as np
import pytest
import torch
import torchvision

from dlbook import memory as mem
from dlbook.optim import make_optimizer

F32 = 4  # bytes per float32 element, by definition of the format
BF16 = 2  # bytes per bfloat16 element (1 sign, 8 exponent, 7 mantissa bits)
I64 = 8  # bytes per int64 element (max-pool indices, class labels)
META = torch.device("meta")


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
    assert saved[1] < saved[0]  # the exact bytes: test_checkpointing_keeps_only_block_inputs
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


# --- batch size and time -------------------------------------------------------------------

def check_steps_per_epoch_cover_the_data(n, batch_size):
    """The first steps_per_epoch(n, B) batches that fit draws hold every example exactly once."""
    from dlbook.train import batch_indices

    k = mem.steps_per_epoch(n, batch_size)
    loop, pos = 0, 0  # a plain loop: batches until the epoch is used up
    while pos < n:
        pos, loop = pos + batch_size, loop + 1
    assert k == loop, (k, loop)
    batches = batch_indices(n, steps=k, batch_size=batch_size, seed=0)
    assert sorted(torch.cat(batches).tolist()) == list(range(n))


def check_run_follows_the_scaling_rule(run, *, base_lr, base_batch):
    """Evaluated at every epoch's end, trained at lr = base_lr * B / base_batch."""
    b = run["batch_size"]
    assert run["lr"] == pytest.approx(base_lr * b / base_batch, rel=1e-12)
    k = -(-100 // b)  # 100 examples in _toy_data
    assert list(run["steps"]) == [k * e for e in range(1, len(run["steps"]) + 1)]


def _toy_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(100, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    return x, y, x[:20], y[:20]


def _toy_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))


@pytest.mark.parametrize("n,b", [(4000, 16), (4000, 1024), (10, 3), (7, 7), (5, 8)])
def test_steps_per_epoch_cover_the_data(n, b):
    check_steps_per_epoch_cover_the_data(n, b)


def test_scaled_lr_is_the_linear_rule():
    assert mem.scaled_lr(1024, base_lr=0.01, base_batch=16) == pytest.approx(0.64)
    assert mem.scaled_lr(16, base_lr=0.01, base_batch=16) == 0.01
    with pytest.raises(ValueError, match="base_lr"):
        mem.scaled_lr(16, base_lr=0.0, base_batch=16)
    with pytest.raises(ValueError, match="batch_size"):
        mem.scaled_lr(0, base_lr=0.1, base_batch=16)


def test_batch_size_run_records_each_epoch():
    x, y, xt, yt = _toy_data()
    for b in (7, 32, 100):
        run = mem.batch_size_run(_toy_model, x, y, xt, yt, batch_size=b, base_lr=0.05,
                                 base_batch=8, epochs=3, seed=1, device="cpu")
        check_run_follows_the_scaling_rule(run, base_lr=0.05, base_batch=8)
        assert len(run["test_acc"]) == len(run["cpu_time"]) == 3
        assert np.all(np.diff(run["cpu_time"]) >= 0) and np.all(np.diff(run["time"]) >= 0)
    again = mem.batch_size_run(_toy_model, x, y, xt, yt, batch_size=100, base_lr=0.05,
                               base_batch=8, epochs=3, seed=1, device="cpu")
    np.testing.assert_array_equal(again["test_acc"], run["test_acc"])  # seeded: reproducible


def check_cpu_time_per_epoch_falls_with_batch_size():
    """Many small steps cost more CPU time per epoch than few large ones: asserted against the
    spread over seeds, with process time (robust to waiting for a shared core)."""
    from dlbook.results import compare

    x, y, xt, yt = _toy_data()
    t = {b: [mem.batch_size_run(_toy_model, x, y, xt, yt, batch_size=b, base_lr=0.01,
                                base_batch=1, epochs=2, seed=s, device="cpu")["cpu_time"][-1]
             for s in range(5)] for b in (1, 100)}
    assert compare(t[1], t[100], paired=True).exceeds(2), t


def test_cpu_time_per_epoch_falls_with_batch_size():
    check_cpu_time_per_epoch_falls_with_batch_size()


def test_timing_check_fails_when_fit_records_no_cpu_time(monkeypatch):
    import dlbook.train

    monkeypatch.setattr(dlbook.train.time, "process_time", lambda: 0.0)
    with pytest.raises(AssertionError):
        check_cpu_time_per_epoch_falls_with_batch_size()


def test_epoch_cost_recovers_a_known_line():
    n, a, b = 4000, 3e-4, 8e-6
    sizes = [16, 64, 256, 1024, 16]
    secs = [a * -(-n // s) + b * n for s in sizes]
    assert mem.epoch_cost(n, sizes, secs) == pytest.approx((a, b), rel=1e-9)
    with pytest.raises(ValueError, match="batch_sizes"):
        mem.epoch_cost(n, [16, 16], secs[:1] * 2)


def test_check_fails_when_the_last_partial_batch_is_dropped(monkeypatch):
    monkeypatch.setattr(mem, "steps_per_epoch", lambda n, b: n // b)
    with pytest.raises(AssertionError):
        check_steps_per_epoch_cover_the_data(10, 3)


def test_check_fails_when_lr_is_not_scaled(monkeypatch):
    monkeypatch.setattr(mem, "scaled_lr", lambda b, *, base_lr, base_batch: base_lr)
    x, y, xt, yt = _toy_data()
    run = mem.batch_size_run(_toy_model, x, y, xt, yt, batch_size=32, base_lr=0.05,
                             base_batch=8, epochs=1, seed=0, device="cpu")
    with pytest.raises(AssertionError):
        check_run_follows_the_scaling_rule(run, base_lr=0.05, base_batch=8)


# --- the chapter's headline accounting against an independent count ------------------------

def hand_count_per_image(make, *, checkpointed=False, float_bytes=F32):
    """Bytes saved for backward per 224 x 224 image, counted from the network's structure.

    Forward hooks read each layer's output size (no saved-tensor hooks, no storages); the rules
    are autograd's: a convolution saves its input (the image, or the previous layer's output);
    batch norm saves its input (the conv output); an in-place ReLU saves its output, which is
    the batch norm's output (except in a shortcut, which no ReLU follows directly: there the
    add and the ReLU act in place on the main path's output); max pooling saves its output's
    int64 argmax; the linear layer saves the pooled features; the loss saves the log-softmax
    output and the int64 label. A checkpointed block saves only its input.
    """
    with META:
        net = make(num_classes=10)
    numel = {}
    for n, m in net.named_modules():
        if not list(m.children()):
            m.register_forward_hook(lambda m, i, o, n=n: numel.__setitem__(n, o[0].numel()))
    with torch.no_grad():
        net(torch.empty(1, 3, 224, 224, device=META))
    blocks = [n for n, m in net.named_modules()
              if isinstance(m, (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck))]
    floats, ints = 3 * 224 * 224, 1  # the image (stem conv's input); the label
    for n, k in numel.items():
        if checkpointed and any(n.startswith(b + ".") for b in blocks):
            continue
        if "conv" in n or n.endswith("downsample.0"):
            floats += k  # a conv output: the batch norm's saved input
        elif "bn" in n:
            floats += k  # a batch-norm output, ReLU'd in place: saved by the ReLU
        elif n == "maxpool":
            floats, ints = floats + k, ints + k  # its output (next conv's input), its argmax
        elif n in ("avgpool", "fc"):
            floats += k  # the fc's input; the log-softmax output
    if checkpointed:  # each block's input: the stem's output counted above, then block outputs
        last = {n: max(k for m, k in numel.items() if m.startswith(n + ".bn")) for n in blocks}
        floats += sum(last[b] for b in blocks[:-1])
    return float_bytes * floats + I64 * ints


def per_image(make, *, checkpointed=False, dtype=torch.float32):
    """Per-image saved activation bytes from the library, at batch 1 and 2."""
    out = []
    for b in (1, 2):
        with META:
            net = make(num_classes=10).to(dtype)
        if checkpointed:
            mem.checkpoint_blocks(net)
        x = torch.empty(b, 3, 224, 224, device=META, dtype=dtype)
        out.append(mem.saved_for_training(net, x).activations)
    return out[1] - out[0]


NETS = {"resnet18": torchvision.models.resnet18, "resnet152": torchvision.models.resnet152}


@pytest.mark.parametrize("name", NETS)
def test_per_image_activations_equal_an_independent_count(name):
    assert per_image(NETS[name]) == hand_count_per_image(NETS[name])


@pytest.mark.parametrize("name", NETS)
def test_bf16_halves_every_float_but_not_the_int64_indices(name):
    assert per_image(NETS[name], dtype=torch.bfloat16) == hand_count_per_image(
        NETS[name], float_bytes=BF16)


@pytest.mark.parametrize("name", NETS)
def test_checkpointing_keeps_only_block_inputs(name):
    assert per_image(NETS[name], checkpointed=True) == hand_count_per_image(
        NETS[name], checkpointed=True)


def test_the_count_goes_red_when_every_element_is_four_bytes(monkeypatch):
    monkeypatch.setattr(mem, "storage_nbytes", lambda t: 4 * t.untyped_storage().nbytes()
                        // t.element_size())
    with pytest.raises(AssertionError):  # int64 indices and labels are 8 bytes
        test_per_image_activations_equal_an_independent_count("resnet18")


def test_batchnorm_running_statistics_are_buffers_not_activations():
    """Running mean and var (float32 per channel) and num_batches_tracked (one int64) are
    persistent state; what batch norm saves per batch is its mean and inverse sd (float32)."""
    with META:
        net = torchvision.models.resnet18(num_classes=10)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    channels = sum(m.num_features for m in bns)
    assert mem.buffer_bytes(net) == 2 * F32 * channels + I64 * len(bns)
    acts = [mem.saved_for_training(net, torch.empty(b, 3, 64, 64, device=META)).activations
            for b in (2, 3, 4)]
    c, _ = mem.batch_line([2, 3, 4], acts)
    assert c == 2 * F32 * channels + F32  # batch mean, inverse sd; the loss's total weight
    s = mem.saved_for_training(net, torch.empty(2, 3, 32, 32, device=META))
    assert s.buffers == 2 * F32 * channels  # running mean and var are saved, as state
    m = mem.training_memory(net, torch.empty(2, 3, 32, 32, device=META), optimizer="sgd")
    assert m.buffers == mem.buffer_bytes(net) and m.total == (
        m.parameters + m.buffers + m.gradients + m.optimizer_state + m.activations)


def check_accuracy_is_measured_on_the_test_split():
    """Test labels that contradict the training rule: a run that reports training accuracy
    as test accuracy (or evaluates on the training split) cannot score low on them."""
    x, y, _, _ = _toy_data()
    xt = torch.randn(200, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    yt = (xt.flatten(1).sum(1) <= 0).long()  # the opposite rule
    run = mem.batch_size_run(_toy_model, x, y, xt, yt, batch_size=10, base_lr=0.5,
                             base_batch=10, epochs=5, seed=0, device="cpu")
    assert run["train_acc"][-1] > 0.9, run["train_acc"]
    assert run["test_acc"][-1] < 0.1, run["test_acc"]


def test_accuracy_is_measured_on_the_test_split():
    check_accuracy_is_measured_on_the_test_split()


def test_split_check_fails_when_the_training_split_is_evaluated(monkeypatch):
    real = mem.fit
    monkeypatch.setattr(mem, "fit", lambda model, x, y, *, x_val, y_val, **kw:
                        real(model, x, y, x_val=x, y_val=y, **kw))
    with pytest.raises(AssertionError):
        check_accuracy_is_measured_on_the_test_split()
