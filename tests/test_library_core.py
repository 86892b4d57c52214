"""The library's shared parts: device, generators, gluing, the training loop's input checks, source display."""

import numpy as np
import pytest
import torch

from dlbook.gluing import plain, table
from dlbook.runtime import numpy_rng, pick_device, torch_generator
from dlbook.show import source
from dlbook.metrics import evaluate
from dlbook.train import TrainConfig, fit


def test_pick_device_cpu_and_validation():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="prefer"):
        pick_device("tpu")


def test_generators_are_seeded_and_independent_of_global_state():
    torch.manual_seed(123)
    a = torch.rand(3, generator=torch_generator(7))
    torch.manual_seed(999)
    b = torch.rand(3, generator=torch_generator(7))
    assert torch.equal(a, b)
    assert numpy_rng(7).random() == numpy_rng(7).random()
    with pytest.raises(TypeError, match="seed"):
        torch_generator(1.5)
    with pytest.raises(ValueError, match="seed"):
        numpy_rng(-1)


def test_plain_converts_numpy_and_torch_scalars():
    for v, t in [(np.float32(1.5), float), (np.int64(3), int), (torch.tensor(2.0), float),
                 (np.array(4), int), (np.bool_(True), bool)]:
        assert type(plain(v)) is t
    with pytest.raises(ValueError, match="scalar"):
        plain(np.zeros(3))
    with pytest.raises(TypeError):
        plain(object())


def test_table_formats_floats():
    df = table([{"a": np.float64(0.123456), "b": 2}])
    assert df.loc[0, "a"] == "0.1235" and df.loc[0, "b"] == 2
    with pytest.raises(TypeError):
        table([])


def test_train_config_rejects_typos_and_bad_values():
    with pytest.raises(TypeError):
        TrainConfig(step=3)  # typo must raise
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(steps=3, optimizer="sgdd")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(steps=3, lr=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(steps=3, batch_size=0)


def _toy(seed=0, n=64):
    g = torch_generator(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).long()
    return x, y


def _model(seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                   torch.nn.Linear(16, 2))


def test_fit_is_deterministic_and_leaves_global_rng_alone():
    x, y = _toy()
    cfg = TrainConfig(steps=60, batch_size=16, lr=0.2, eval_every=4)
    torch.manual_seed(42)
    before = torch.random.get_rng_state()
    h1 = fit(_model(0), x, y, cfg=cfg, seed=1, device="cpu", x_val=x, y_val=y)
    assert torch.equal(before, torch.random.get_rng_state())
    h2 = fit(_model(0), x, y, cfg=cfg, seed=1, device="cpu", x_val=x, y_val=y)
    assert h1["val_acc"] == h2["val_acc"] and h1["config"].lr == 0.2 and len(h1["val_acc"]) == 15
    assert h1["train_acc"][-1] > 0.8


def test_fit_validates_inputs_and_evaluate_restores_mode():
    x, y = _toy()
    m = _model(0)
    with pytest.raises(TypeError, match="cfg"):
        fit(m, x, y, cfg={"steps": 1}, seed=0, device="cpu")
    with pytest.raises(ValueError, match="length"):
        fit(m, x, y[:-1], cfg=TrainConfig(steps=1), seed=0, device="cpu")
    m.train()
    evaluate(m, x, y, device="cpu")
    assert m.training


def test_source_shows_library_code():
    md = source(fit)
    assert md.data.startswith("```python\ndef fit(")
    with pytest.raises(TypeError):
        source(3)
