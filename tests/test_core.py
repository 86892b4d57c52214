"""The experiment core: validators, optimizers against hand-written updates, schedules, fit, the
stacked sweep against fit, results statistics, and the layering rule."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlbook import checks, optim, results, sweep, train
from dlbook.metrics import calibration, confusion_matrix, evaluate
from dlbook.optim import Schedule, make_optimizer
from dlbook.train import TrainConfig, batch_indices, fit

SRC = Path(__file__).resolve().parents[1] / "src" / "dlbook"
CORE = {"__init__", "checks", "runtime", "data", "train", "optim", "sweep", "results", "metrics",
        "plots", "gluing", "show"}


# ---------- validators ----------

@pytest.mark.parametrize("fn,good,bad_type,bad_value", [
    (lambda v: checks.positive_int("n", v), 3, 2.0, 0),
    (lambda v: checks.nonnegative_int("n", v), 0, True, -1),
    (lambda v: checks.probability("p", v), 0.5, "0.5", 1.0),
    (lambda v: checks.positive("lr", v), 0.1, None, 0.0),
    (lambda v: checks.seed(v), 7, 1.5, -1),
])
def test_validators_raise_the_same_exception_kinds_naming_the_argument(fn, good, bad_type, bad_value):
    assert fn(good) == good
    with pytest.raises(TypeError):
        fn(bad_type)
    with pytest.raises(ValueError):
        fn(bad_value)
    with pytest.raises(ValueError, match="must be one of"):
        checks.choice("kind", "x", ("a", "b"))


def test_config_is_frozen_and_rejects_typos():
    cfg = TrainConfig(steps=5)
    with pytest.raises(Exception):
        cfg.steps = 6
    with pytest.raises(TypeError):
        TrainConfig(steps=5, learning_rate=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(steps=5, optimizer="rmsprop")
    with pytest.raises(TypeError, match="steps"):
        TrainConfig(steps=5.0)


# ---------- optimizers against the update rules written out ----------

def _reference_step(name, w, g, state, *, lr, mu=0.9, wd=0.0, decoupled=False, b1=0.9, b2=0.999, eps=1e-8):
    """One step of each method, written from its textbook definition (plain tensors)."""
    if decoupled or name == "adamw":
        w = w * (1 - lr * wd)
    else:
        g = g + wd * w  # gradient of the L2 term wd/2 ||w||^2
    t = state["t"] = state.get("t", 0) + 1
    if name == "sgd":
        return w - lr * g
    if name in ("momentum", "nesterov"):
        v = state["v"] = mu * state["v"] + g if "v" in state else g
        return w - lr * (g + mu * v if name == "nesterov" else v)
    m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
    s = state["s"] = b2 * state.get("s", 0) + (1 - b2) * g * g
    return w - lr * (m / (1 - b1**t)) / ((s / (1 - b2**t)).sqrt() + eps)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("decoupled", [False, True])
def test_make_optimizer_matches_the_written_out_update(name, decoupled):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 4, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([w], name=name, lr=0.05, weight_decay=0.3, decoupled=decoupled)
    ref, state = torch.zeros(4, dtype=torch.float64), {}
    for _ in range(25):
        loss = ((A @ w - b) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        grad = w.grad.clone()
        ref = _reference_step(name, ref, grad, state, lr=0.05, wd=0.3, decoupled=decoupled)
        opt.step()
        assert torch.allclose(w.detach(), ref, rtol=0, atol=1e-13), name
        ref = w.detach().clone()  # follow the same trajectory: compare each step, not the sum of roundoffs


def test_decoupled_and_l2_differ_for_adam_but_not_for_plain_sgd():
    def run(name, decoupled):
        w = torch.ones(3, dtype=torch.float64, requires_grad=True)
        opt = make_optimizer([w], name=name, lr=0.1, weight_decay=0.5, decoupled=decoupled)
        for _ in range(5):
            opt.zero_grad()
            (w * torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)).sum().backward()
            opt.step()
        return w.detach()
    assert torch.allclose(run("sgd", False), run("sgd", True), atol=1e-14)
    assert not torch.allclose(run("adam", False), run("adam", True), atol=1e-3)


def test_schedule_factors():
    s = Schedule(kind="step", milestones=(10, 20), gamma=0.1, warmup=5)
    assert [s.factor(t) for t in (1, 5, 10, 11, 21)] == pytest.approx([0.2, 1.0, 1.0, 0.1, 0.01])
    c = Schedule(kind="cosine", total=100, floor=0.0)
    assert c.factor(1) == pytest.approx(1.0) and c.factor(51) == pytest.approx(0.5)
    assert Schedule(kind="plateau", gamma=0.5).factor(7, cuts=2) == 0.25
    p = optim.Plateau(Schedule(kind="plateau", patience=2))
    assert [p.observe(v) for v in (1.0, 0.5, 0.6, 0.7, 0.8, 0.9)] == [0, 0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="milestones"):
        Schedule(kind="step")


# ---------- the training loop ----------

def _blobs(n=120, seed=0, noise=1.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    return centres[y] + noise * torch.randn(n, 2, generator=g), y


def _mlp(seed, hidden=16, p=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, 3))


def test_batch_indices_cover_each_epoch_once_and_depend_on_seed_only():
    idx = batch_indices(10, steps=6, batch_size=4, seed=1)
    epoch = torch.cat(idx[:3])
    assert sorted(epoch.tolist()) == list(range(10))  # batches of 4, 4, 2
    assert all(torch.equal(a, b) for a, b in zip(idx, batch_indices(10, steps=6, batch_size=4, seed=1)))
    assert not torch.equal(torch.cat(idx), torch.cat(batch_indices(10, steps=6, batch_size=4, seed=2)))


def test_fit_learns_separable_blobs_and_records_a_full_history():
    x, y = _blobs()
    cfg = TrainConfig(steps=200, batch_size=16, lr=0.1, eval_every=50, log_norms=True)
    model = _mlp(0)
    h = fit(model, x, y, cfg=cfg, seed=0, device="cpu", x_val=x, y_val=y)
    assert h["step"] == [50, 100, 150, 200] and h["config"] is cfg
    assert h["train_acc"][-1] > 0.95 and h["train_loss"][-1] < h["train_loss"][0]
    assert len(h["batch_loss"]) == 200 and all(t >= 0 for t in h["time"])
    assert h["time"] == sorted(h["time"]) and len(h["grad_norm"]) == 4
    assert h["cpu_time"] == sorted(h["cpu_time"]) and len(h["cpu_time"]) == 4
    assert evaluate(model, x, y, device="cpu") == pytest.approx((h["val_loss"][-1], h["val_acc"][-1]))


def test_fit_is_deterministic_with_dropout_and_leaves_global_rng_alone():
    x, y = _blobs()
    cfg = TrainConfig(steps=30, batch_size=8)
    m1, m2 = _mlp(0, p=0.5), _mlp(0, p=0.5)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = fit(m1, x, y, cfg=cfg, seed=3, device="cpu")
    after = torch.rand(1)
    b = fit(m2, x, y, cfg=cfg, seed=3, device="cpu")
    assert torch.equal(before, after)
    assert np.array_equal(a["batch_loss"], b["batch_loss"])


def test_early_stopping_restores_the_best_checkpoint():
    # a wide net on few noisy points overfits: validation loss turns up, training goes on falling
    x, y = _blobs(40, seed=1, noise=2.5)
    xv, yv = _blobs(400, seed=2, noise=2.5)
    cfg = TrainConfig(steps=3000, batch_size=40, optimizer="adam", lr=0.02, eval_every=20, patience=10)
    model = _mlp(0, hidden=256)
    h = fit(model, x, y, cfg=cfg, seed=0, device="cpu", x_val=xv, y_val=yv)
    assert h["step"][-1] < cfg.steps, "should have stopped early"
    best = h["step"].index(h["best_step"])
    assert h["step"][-1] == h["best_step"] + cfg.patience * cfg.eval_every
    assert evaluate(model, xv, yv, device="cpu")[0] == pytest.approx(h["val_loss"][best])
    assert min(h["val_loss"]) == h["val_loss"][best]


def test_mse_loss_trains_a_linear_model_to_least_squares():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=g, dtype=torch.float64)
    t = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(50, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    fit(model, X, t, cfg=TrainConfig(steps=2000, batch_size=50, lr=0.1, loss="mse"), seed=0, device="cpu")
    w_ls = torch.linalg.lstsq(X, t.unsqueeze(1)).solution.squeeze()
    assert torch.allclose(model.weight.detach().squeeze(), w_ls, atol=1e-8)


# ---------- the stacked sweep equals fit ----------

def _assert_stacked_equals_fit(make, xs, ys, *, cfg, seeds):
    """fit_stacked on models make(k) equals fit run model by model (float64): weights, losses, accuracies."""
    stacked = [make(k) for k in range(len(seeds))]
    h = sweep.fit_stacked(stacked, xs, ys, cfg=cfg, seeds=seeds, device="cpu", x_val=xs, y_val=ys)
    for k in range(len(seeds)):
        m = make(k)
        hk = fit(m, xs[k], ys[k], cfg=cfg, seed=seeds[k], device="cpu", x_val=xs[k], y_val=ys[k])
        for p, q in zip(m.parameters(), stacked[k].parameters()):
            assert torch.allclose(p, q, atol=1e-10, rtol=0)
        assert np.allclose(h["val_loss"][k], hk["val_loss"], atol=1e-10)
        assert np.allclose(h["train_acc"][k], hk["train_acc"], equal_nan=True)  # nan: mse has no accuracy
    return h, hk


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_fit_stacked_equals_fit_model_by_model(name):
    torch.set_default_dtype(torch.float64)
    try:
        xs, ys = zip(*(_blobs(60, seed=s) for s in (0, 1, 2)))
        x, y = torch.stack(xs), torch.stack(ys)
        cfg = TrainConfig(steps=40, batch_size=8, optimizer=name, lr=0.05, weight_decay=0.01, penalty=0.003,
                          eval_every=10, schedule=Schedule(kind="step", milestones=(20,), warmup=4))
        seeds = [10, 11, 12]
        h, hk = _assert_stacked_equals_fit(_mlp, x, y, cfg=cfg, seeds=seeds)
        assert list(h["step"]) == hk["step"] and h["config"] is cfg
    finally:
        torch.set_default_dtype(torch.float32)


def test_fit_stacked_check_fails_when_the_engine_is_broken(monkeypatch):
    # mutation: a sweep that skips the first minibatch of each model must not pass the equality test
    real = sweep.batch_indices
    monkeypatch.setattr(sweep, "batch_indices", lambda n, **kw: real(n, **kw)[1:] + real(n, **kw)[:1])
    with pytest.raises(AssertionError):
        test_fit_stacked_equals_fit_model_by_model("sgd")


def test_fit_stacked_rejects_per_model_stopping():
    x, y = _blobs()
    with pytest.raises(ValueError, match="early stopping"):
        sweep.fit_stacked([_mlp(0)], x[None], y[None], cfg=TrainConfig(steps=5, patience=2), seeds=[0],
                          device="cpu", x_val=x[None], y_val=y[None])
    with pytest.raises(ValueError, match="seeds"):
        sweep.fit_stacked([_mlp(0)], x[None], y[None], cfg=TrainConfig(steps=5), seeds=[0, 1], device="cpu")


# ---------- results and metrics ----------

def test_summary_and_compare_against_hand_formulas():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 1.0, 0.5]
    s = results.summary(a)
    assert (s.mean, s.n) == (2.5, 4) and s.sd == pytest.approx(math.sqrt(5 / 3))
    assert s.se == pytest.approx(s.sd / 2) and s.pm(1) == "2.5 ± 1.3"
    c = results.compare(a, b)
    assert c.diff == pytest.approx(2.0)
    assert c.se == pytest.approx(math.sqrt(np.var(a, ddof=1) / 4 + np.var(b, ddof=1) / 4))
    assert c.exceeds(2) and not results.compare(b, a).exceeds(0)
    p = results.compare(a, b, paired=True)
    assert p.diff == pytest.approx(2.0) and p.se == pytest.approx(np.std(np.subtract(a, b), ddof=1) / 2)


def test_summarize_table_and_over_seeds():
    rows = results.over_seeds(lambda seed, k: {"acc": seed * k, "arm": "a" if seed < 2 else "b"}, [0, 1, 2, 3], k=2)
    df = results.summarize(rows, by="arm", values="acc", digits=1)
    assert df.loc["a", "acc"] == "1.0 ± 1.4" and df.loc["b", "seeds"] == 2
    assert results.stats(rows, by="arm", value="acc")["b"].mean == 5.0


def test_confusion_and_calibration_by_enumeration():
    y, p = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    cal = calibration(probs, torch.tensor([0, 1, 1]), n_bins=2)
    # bin (0.5, 1]: confidences 0.9, 0.6, 0.7; correct 1, 0, 1
    assert cal["ece"] == pytest.approx(abs(0.9 + 0.6 + 0.7 - 2) / 3)


# ---------- layering ----------

def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add((node.module or "").split(".")[0] or "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlbook"):
            names.add(node.module.split(".")[1] if "." in node.module else "__init__")
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dlbook.")}
    return names


# one topic split over two files to keep each under 300 lines: the second may import the first
SAME_TOPIC = {"dropout_cnn": {"dropout_mnist"}}


def test_core_imports_no_topic_module_and_topics_import_only_the_core():
    modules = {p.stem: _imports(p) for p in SRC.glob("*.py")}
    for name, deps in modules.items():
        if name in CORE:
            assert deps <= CORE, f"core module {name} imports topic modules {deps - CORE}"
        else:
            allowed = CORE | SAME_TOPIC.get(name, set())
            assert deps <= allowed, f"topic module {name} imports other topic modules {deps - allowed}"


def test_record_adds_per_evaluation_values_in_fit_and_fit_stacked():
    x, y = _blobs(60)
    cfg = TrainConfig(steps=20, batch_size=10, eval_every=5)
    norm = lambda m: {"w0": m[0].weight.norm()}
    h = fit(_mlp(0), x, y, cfg=cfg, seed=0, device="cpu", record=norm)
    models = [_mlp(0), _mlp(1)]
    hs = sweep.fit_stacked(models, torch.stack([x, x]), torch.stack([y, y]), cfg=cfg, seeds=[0, 1],
                           device="cpu", record=lambda p: {"w0": p["0.weight"].flatten(1).norm(dim=1)})
    assert len(h["w0"]) == 4 and hs["w0"].shape == (2, 4)
    assert hs["w0"][0] == pytest.approx(h["w0"], rel=1e-5)
    assert hs["w0"][1, -1] == pytest.approx(models[1][0].weight.norm().item(), rel=1e-6)


def test_module_docstrings_name_the_chapters_that_use_them():
    import re
    import sys

    sys.path.insert(0, str(SRC.parents[1] / "tools"))
    import libdeps

    root = SRC.parents[1]
    use: dict[str, set] = {}
    for ch in sorted((root / "chapters").glob("[0-9]*.md")):
        for dep in libdeps.chapter_dependencies(ch, root):
            use.setdefault(dep.name, set()).add(int(ch.name[:2]))
    for path in SRC.glob("*.py"):
        if path.name == "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        m = re.search(r"Used by chapters: ([0-9, ]+|none)\.", doc)
        assert m, f"{path.name}: docstring lacks 'Used by chapters: ...'"
        named = set() if m.group(1) == "none" else {int(c) for c in m.group(1).split(",")}
        assert named == use.get(path.name, set()), f"{path.name}: names {sorted(named)}, used by {sorted(use.get(path.name, []))}"


@pytest.mark.parametrize("name, decoupled", [(n, False) for n in optim.OPTIMIZERS] + [("sgd", True), ("momentum", True), ("adam", True)])
def test_fused_step_equals_torch_optimizer_step_bit_for_bit(name, decoupled):
    # reference: torch.optim's own fused step on the same parameters, gradients and lr schedule
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 5, 4), (3, 5), (3, 2, 5)]
    start = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(6)]
    out = []
    for fast in (False, True):
        ps = [p.clone().requires_grad_() for p in start]
        opt = optim.make_optimizer(ps, name=name, lr=0.1, weight_decay=0.05, decoupled=decoupled, fused=True)
        step = optim.fused_step(opt) if fast else opt.step
        for t, gs in enumerate(grads):
            optim.set_lr(opt, 0.1 / (1 + t))
            for p, g in zip(ps, gs):
                p.grad = g.clone()
            step()
        out.append(ps)
    for p, q in zip(*out):
        assert torch.equal(p, q)


def test_fused_step_falls_back_to_torch_when_a_gradient_is_missing():
    ps = [torch.zeros(2, 3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    opt = optim.make_optimizer(ps, name="adam", lr=0.1, fused=True)
    step = optim.fused_step(opt)
    ps[0].grad = torch.ones(2, 3)
    step()  # ps[1] has no gradient: torch.optim skips it
    assert torch.all(ps[1] == 0) and torch.allclose(ps[0], torch.full((2, 3), -0.1))
    with pytest.raises(ValueError, match="fused"):
        optim.fused_step(optim.make_optimizer(ps, name="sgd", lr=0.1))


def test_stacked_layers_equal_each_models_layer_with_gradients():
    gen = torch.Generator().manual_seed(0)
    k = 3
    x = torch.randn(k, 4, 2, 9, 9, generator=gen)
    w = torch.randn(k, 5, 2, 3, 3, generator=gen, requires_grad=True)
    b = torch.randn(k, 5, generator=gen, requires_grad=True)
    lw = torch.randn(k, 6, 5 * 5 * 5, generator=gen, requires_grad=True)
    lb = torch.randn(k, 6, generator=gen, requires_grad=True)
    h = sweep.stacked_conv2d(x, w, b, stride=2, padding=1)
    out = sweep.stacked_linear(h.flatten(2), lw, lb)
    ref = torch.stack([torch.nn.functional.linear(
        torch.nn.functional.conv2d(x[i], w[i], b[i], stride=2, padding=1).flatten(1), lw[i], lb[i])
        for i in range(k)])
    assert out.shape == (k, 4, 6) and torch.allclose(out, ref, atol=1e-4)
    up = torch.randn(out.shape, generator=gen)
    got = torch.autograd.grad((out * up).sum(), [w, b, lw, lb])
    want = torch.autograd.grad((ref * up).sum(), [w, b, lw, lb])
    for g, r in zip(got, want):
        assert torch.allclose(g, r, atol=1e-3, rtol=1e-4)
    assert got[2].is_contiguous()  # the weights' gradient in their own layout: no copy per step


class _Stacked(nn.Module):
    """The 2-16-3 MLP of _mlp with its own stacked_forward, written with sweep.stacked_linear."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b = nn.Linear(2, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

    def stacked_forward(self, p, x):
        h = torch.relu(sweep.stacked_linear(x, p["a.weight"], p["a.bias"]))
        return sweep.stacked_linear(h, p["b.weight"], p["b.bias"])


@pytest.mark.parametrize("name, kw", [
    ("sgd", dict(decoupled=True, sampling="replacement")),
    ("momentum", dict(decoupled=True, schedule=Schedule(kind="cosine", total=30, floor=0.1))),
    ("nesterov", dict(loss="mse")),
    ("adamw", dict(schedule=Schedule(kind="step", milestones=(10, 25)))),
    ("adam", dict(loss="mse", decoupled=True, penalty=0.01)),
])
@pytest.mark.parametrize("shared, own_forward", [(True, False), (False, True)])
def test_fit_stacked_equals_fit_for_more_options(name, kw, shared, own_forward):
    # shared: one data set for all models as an expanded view (gathered without a K-fold copy);
    # own_forward: the model's stacked_forward instead of vmap
    torch.set_default_dtype(torch.float64)
    try:
        seeds, make = [3, 4, 5], (_Stacked if own_forward else _mlp)
        x, y = _blobs(50, seed=7)
        if kw.get("loss") == "mse":
            y = torch.nn.functional.one_hot(y, 3).double()
        xs, ys = ((x.expand(3, *x.shape), y.expand(3, *y.shape)) if shared else
                  (torch.stack([x, x.flip(0), x.roll(5, 0)]), torch.stack([y, y.flip(0), y.roll(5, 0)])))
        cfg = TrainConfig(steps=30, batch_size=7, optimizer=name, lr=0.03, weight_decay=0.02,
                          eval_every=10, **kw)
        _assert_stacked_equals_fit(make, xs, ys, cfg=cfg, seeds=seeds)
    finally:
        torch.set_default_dtype(torch.float32)


def test_fused_step_check_fails_when_the_fast_step_is_wrong(monkeypatch):
    # mutation: a fast step that forgets SGD's decoupled decay must not pass the bit-equality test
    real = optim.fused_step

    def forgetful(opt):
        del opt.decoupled_shrink
        return real(opt)

    monkeypatch.setattr(optim, "fused_step", forgetful)
    with pytest.raises(AssertionError):
        test_fused_step_equals_torch_optimizer_step_bit_for_bit("sgd", True)
