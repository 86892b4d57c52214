"""Chapter 12: the edge-image generator, the lab's bookkeeping (which split each figure uses),
and the chapter's claims: small-scale versions here, the chapter's own numbers (10 seeds, read
from the executed notebook of the built book) in tests/claims/ch12.py.
"""

import ast
import dataclasses
import json
from functools import partial

import numpy as np
import pytest
import torch

from conftest import BOOK_ROOT
from dlbook import edges
from dlbook.edge_models import make_cnn, make_mlp
from dlbook.edges import (count_patterns, edge_images, edge_split, lit_map, permute_pixels,
                          pixel_permutation, run_lab, seen_geometry, size_to_reach)
from dlbook.metrics import confusion_matrix
from dlbook.results import compare
from dlbook.runtime import torch_generator
from dlbook.sweep import fit_stacked
from dlbook.train import TrainConfig

CPU = torch.device("cpu")
SEEDS = range(10)
CNN_CFG = TrainConfig(steps=200, batch_size=16, optimizer="adam", lr=0.03)
FROZEN = ("conv.weight", "conv.bias")


def test_shapes_range_balance_and_determinism():
    x, y = edge_images(7, generator=torch_generator(0), n_classes=5, noise=0.1)
    assert x.shape == (35, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (35,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.bincount(y).tolist() == [7] * 5
    x2, y2 = edge_images(7, generator=torch_generator(0), n_classes=5, noise=0.1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = edge_images(7, generator=torch_generator(1), n_classes=5, noise=0.1)
    assert not torch.equal(x, x3)


def test_no_edge_image_is_blank():
    x, y, info = edge_images(500, generator=torch_generator(3), n_classes=5, return_info=True)
    diff = (x[:, 0] - info["background"].view(-1, 1, 1)).abs()
    changed = (diff >= 0.2 - 1e-6).flatten(1).sum(1)
    assert bool((changed[y == 0] == 0).all())
    hv = (y == 1) | (y == 2)
    assert torch.equal(changed[hv], 28 * info["width"][hv])  # the whole stripe lies inside the image
    diag = y >= 3
    assert bool((changed[diag] >= 14 * info["width"][diag]).all())
    assert bool(((info["intensity"] - info["background"]).abs() >= 0.2 - 1e-6).all())
    assert set(info["width"][y > 0].tolist()) == {1, 2, 3, 4, 5}


def test_location_split_puts_stripes_in_opposite_halves():
    for location, rows in (("first_half", range(0, 14)), ("second_half", range(14, 28))):
        x, y, info = edge_images(200, generator=torch_generator(5), location=location, return_info=True)
        lit = (x[:, 0] - info["background"].view(-1, 1, 1)).abs() > 1e-6
        h, v = y == 1, y == 2
        assert bool(lit[h].any(dim=2)[:, [r for r in range(28) if r not in rows]].logical_not().all())
        assert bool(lit[v].any(dim=1)[:, [r for r in range(28) if r not in rows]].logical_not().all())


def test_pattern_count_and_seen_geometry():
    # per orientation: widths 1..5 at 28 - w + 1 offsets each; plus one "none" geometry
    assert count_patterns(n_classes=3) == 1 + 2 * sum(29 - w for w in range(1, 6)) == 261
    x, y, xv, yv, info, info_v = edge_split(30, seed=0, n_val_per_class=30, return_info=True)
    seen = seen_geometry(y, info, yv, info_v)
    assert bool(seen[yv == 0].all())
    assert bool(seen_geometry(y, info, y, info).all())


def test_permutation_is_a_bijection():
    perm = pixel_permutation(28, generator=torch_generator(0))
    assert sorted(perm.tolist()) == list(range(784))
    x, _ = edge_images(3, generator=torch_generator(0))
    xp = permute_pixels(x, perm)
    assert torch.equal(permute_pixels(xp, torch.argsort(perm)), x)
    assert torch.equal(xp.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_bad_arguments_raise():
    g = torch_generator(0)
    with pytest.raises(ValueError, match="n_classes"):
        edge_images(3, generator=g, n_classes=6)
    with pytest.raises(ValueError, match="location"):
        edge_images(3, generator=g, location="left")
    with pytest.raises(ValueError, match="widths"):
        edge_images(3, generator=g, widths=(0, 3))
    with pytest.raises(ValueError, match="min_contrast"):
        edge_images(3, generator=g, min_contrast=0.0)
    with pytest.raises(TypeError, match="generator"):
        edge_images(3, generator=0)
    with pytest.raises(ValueError, match="perm"):
        permute_pixels(torch.zeros(1, 1, 4, 4), torch.arange(15))


def test_claim_cnn_reaches_90_percent_with_20_images_per_class_in_every_seed():
    run = run_lab(make_cnn, 20, seeds=SEEDS, cfg=CNN_CFG, device=CPU)
    assert run.final().min() >= 0.9


def test_claim_mlp_is_exactly_indifferent_to_a_pixel_permutation():
    perm = pixel_permutation(28, generator=torch_generator(2026))
    a = [make_mlp(seed=s, hidden=16).double() for s in (0, 1)]
    b = [make_mlp(seed=s, hidden=16).double() for s in (0, 1)]
    with torch.no_grad():
        for m in b:
            m.fc1.weight.copy_(m.fc1.weight[:, perm])
    parts = [edge_split(5, seed=s) for s in (0, 1)]
    x, y = torch.stack([p[0] for p in parts]).double(), torch.stack([p[1] for p in parts])
    cfg = TrainConfig(steps=20, batch_size=8, optimizer="adam", lr=0.001)
    fit_stacked(a, x, y, cfg=cfg, seeds=[0, 1], device=CPU)
    fit_stacked(b, permute_pixels(x, perm), y, cfg=cfg, seeds=[0, 1], device=CPU)
    for ma, mb in zip(a, b):
        assert torch.allclose(ma.fc1.weight[:, perm], mb.fc1.weight, atol=1e-10)
        assert torch.allclose(ma.fc2.weight, mb.fc2.weight, atol=1e-10)


def test_confusion_and_calibration_use_the_validation_split():
    """The lab's confusion matrices and probabilities come from x_val, which shares no image with x."""
    run = run_lab(partial(make_cnn, n_filters=4, n_classes=5, edge_init="hv"), 30, seeds=[0, 1],
                  cfg=TrainConfig(steps=30, batch_size=16, optimizer="adam", lr=0.03), device=CPU,
                  frozen=FROZEN, n_classes=5)
    x, x_val = run.x.flatten(2), run.x_val.flatten(2)
    for k in range(2):  # no validation image equals a training image
        assert torch.cdist(x_val[k], x[k], compute_mode="donot_use_mm_for_euclid_dist").min() > 0
    by_hand_val = sum(confusion_matrix(run.y_val[k], run.models[k](run.x_val[k]).argmax(1), 5)
                      for k in range(2))
    by_hand_train = sum(confusion_matrix(run.y[k], run.models[k](run.x[k]).argmax(1), 5)
                        for k in range(2))
    cm = run.val_confusion(device=CPU)
    assert torch.equal(cm, by_hand_val) and not torch.equal(cm, by_hand_train)
    probs = run.val_probs(device=CPU)
    assert probs.shape == (2, 500, 5)
    assert torch.allclose(probs[1], run.models[1](run.x_val[1]).softmax(-1), atol=1e-6)


def test_split_check_fails_when_the_lab_evaluates_on_training_images(monkeypatch):
    # mutation: probabilities computed on the training images must not pass the split test
    monkeypatch.setattr(edges.LabRun, "val_probs", lambda self, *, device: edges.stacked_logits(
        self.models, self.x, device=device).softmax(-1))
    monkeypatch.setattr(edges.LabRun, "val_confusion", lambda self, *, device: sum(
        confusion_matrix(self.y[k], self.models[k](self.x[k]).argmax(1), 5) for k in range(2)))
    with pytest.raises(AssertionError):
        test_confusion_and_calibration_use_the_validation_split()


def test_frozen_hv_bank_cannot_tell_the_diagonals_apart():
    run = run_lab(partial(make_cnn, n_filters=4, n_classes=5, edge_init="hv"), 50, seeds=SEEDS,
                  cfg=CNN_CFG, device=CPU, frozen=FROZEN, n_classes=5)
    rate = run.val_confusion(device=CPU).double()
    rate = rate / rate.sum(1, keepdim=True)
    swap = (rate[3, 4] + rate[4, 3]) / 2
    # a coin flip between the diagonals: 0.5 up to the binomial error of ~2000 images
    assert abs(swap - 0.5) < 0.1
    assert run.final().max() < 0.85  # the cap is 3/5 + (2/5)/2 = 0.8 in expectation


def test_size_to_reach_interpolates_in_log_size():
    acc = np.array([[0.5, 0.95], [0.8, 0.99], [1.0, 1.0]])  # sizes 10, 100, 1000; two seeds
    out = size_to_reach([10, 100, 1000], acc, 0.9)
    assert np.isclose(out[0], 10 ** 2.5) and np.isclose(out[1], 10)
    assert np.isnan(size_to_reach([10, 100], np.array([[0.1], [0.2]]), 0.9)[0])


def test_lit_map_marks_the_stripe_pixels():
    x, y, info = edge_images(50, generator=torch_generator(4), return_info=True)
    m = lit_map(x, y, 1)  # horizontal stripes: whole rows lit, every column alike
    assert torch.allclose(m, m[:, :1].expand_as(m))
    assert lit_map(x, y, 0).max() == 0
    assert torch.isclose(m.sum(), 28 * info["width"][y == 1].double().mean())


def wrong_confidence_by_loop(logits, y):
    """Reference: a plain loop over models and images."""
    out = []
    for lk, yk in zip(logits, y):
        confs = [float(torch.softmax(l, 0).max()) for l, t in zip(lk, yk) if int(torch.argmax(l)) != int(t)]
        out.append(sum(confs) / len(confs) if confs else float("nan"))
    return out


def check_wrong_confidence():
    g = torch_generator(0)
    logits, y = torch.randn(3, 40, 5, generator=g), torch.randint(0, 5, (3, 40), generator=g)
    logits[2] = torch.nn.functional.one_hot(y[2], 5) * 10.0  # model 2 is never wrong
    got = edges.wrong_confidence(logits, y).tolist()
    ref = wrong_confidence_by_loop(logits, y)
    assert np.allclose(got[:2], ref[:2], atol=1e-6) and np.isnan(got[2]) and np.isnan(ref[2])


def test_wrong_confidence_matches_a_loop():
    check_wrong_confidence()


def test_wrong_confidence_check_fails_when_right_answers_are_counted(monkeypatch):
    monkeypatch.setattr(edges, "wrong_confidence", lambda logits, y: logits.softmax(-1).amax(-1).double().mean(-1))
    with pytest.raises(AssertionError):
        check_wrong_confidence()


def test_tracked_wrong_confidence_is_on_the_validation_split():
    run = run_lab(make_cnn, 5, seeds=[0, 1], device=CPU, track_wrong=True,
                  cfg=TrainConfig(steps=20, batch_size=8, optimizer="adam", lr=0.03, eval_every=10))
    assert run.hist["val_wrong_conf"].shape == (2, 2)
    on_val = edges.wrong_confidence(edges.stacked_logits(run.models, run.x_val, device=CPU), run.y_val)
    on_train = edges.wrong_confidence(edges.stacked_logits(run.models, run.x, device=CPU), run.y)
    assert np.allclose(run.hist["val_wrong_conf"][:, -1], on_val.numpy(), atol=1e-6, equal_nan=True)
    assert not np.allclose(run.hist["val_wrong_conf"][:, -1], on_train.numpy(), atol=1e-6, equal_nan=True)


def test_claim_errors_grow_more_confident_in_both_models():
    """The chapter's runs at 20 images per class (10 seeds, about 6 s): the confidence of wrong
    predictions rises during training, for the MLP after its validation-loss minimum; at the end
    the two models' errors are equally confident."""
    mlp = run_lab(make_mlp, 20, seeds=SEEDS, device=CPU, track_wrong=True,
                  cfg=TrainConfig(steps=600, batch_size=32, optimizer="adam", lr=1e-3, eval_every=50))
    cnn = run_lab(make_cnn, 20, seeds=SEEDS, device=CPU, track_wrong=True,
                  cfg=dataclasses.replace(CNN_CFG, eval_every=25))
    w = mlp.hist["val_wrong_conf"]
    at_min = w[np.arange(len(w)), mlp.hist["val_loss"].argmin(1)]
    assert compare(w[:, -1], at_min, paired=True).exceeds(2)
    wc = cnn.hist["val_wrong_conf"]
    wc = wc[np.isfinite(wc[:, [0, -1]]).all(1)]
    assert len(wc) >= 8 and compare(wc[:, -1], wc[:, 0], paired=True).exceeds(2)
    level = compare(w[:, -1], wc[:, -1])
    assert abs(level.diff) <= 2 * level.se


def test_global_average_pooling_fits_with_a_smaller_learning_rate_and_more_steps():
    """At the chapter's settings the global-average CNN stays near chance on its own training set;
    with the learning rate 0.01 and 3000 steps it fits it (3 seeds, about 9 s)."""
    gap = partial(make_cnn, n_classes=5, pool="avg")
    run = lambda cfg: run_lab(gap, 20, seeds=range(3), cfg=cfg, device=CPU, n_classes=5,
                              data_seed=300).final("train_acc")
    chapter = run(CNN_CFG)
    fixed = run(TrainConfig(steps=3000, batch_size=16, optimizer="adam", lr=0.01))
    assert chapter.max() < 0.4 and fixed.min() > 0.85 and fixed.mean() > 0.9
    assert run(dataclasses.replace(CNN_CFG, lr=0.1)).max() < 0.3


# ---------- the chapter's own numbers: 10 seeds each, read from the executed notebook ----------

EXECUTED = BOOK_ROOT / "_build" / "jupyter_execute" / "chapters" / "12_inductive_bias.ipynb"


def glued(path=EXECUTED) -> dict:
    """Every value glued in the executed chapter (name -> plain Python value)."""
    if not path.exists():
        pytest.skip("chapter 12 has not been executed in the built book")
    out = {}
    for cell in json.loads(path.read_text())["cells"]:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            text = next((v for k, v in o.get("data", {}).items() if k.endswith("text/plain")), None)
            if name and text is not None:
                text = "".join(text) if isinstance(text, list) else text
                out[name] = ast.literal_eval(text)
    return out


def test_chapter_figures_use_the_validation_split():
    g = glued()
    splits = {k: v for k, v in g.items() if k.startswith("c12_split_")}
    assert set(splits) >= {"c12_split_bias_bank", "c12_split_reliability", "c12_split_wrong_conf",
                           "c12_split_shift", "c12_split_scrambled", "c12_split_pool_width"}
    assert set(splits.values()) == {"validation"}


def test_chapter_checks_fail_on_wrong_numbers(monkeypatch):
    """Mutation: the split check above must fail when a figure names another split (the page's
    claims are checked, and mutated, by the registry: tests/claims/ch12.py)."""
    import sys

    g = glued()
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "glued", lambda path=EXECUTED: g | {"c12_split_shift": "training"})
    with pytest.raises(AssertionError):
        test_chapter_figures_use_the_validation_split()
