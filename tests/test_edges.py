"""Chapter 12: the edge-image generator, and the lab's claims at a small, fast scale (3 seeds each)."""

import numpy as np
import pytest
import torch

from dlbook.edge_models import confusion_matrix, make_cnn, make_mlp
from dlbook.edges import (count_patterns, edge_images, edge_split, permute_pixels, pixel_permutation,
                          seen_geometry)
from dlbook.runtime import torch_generator
from dlbook.sweep import SweepConfig, seed_sweep, stacked_logits, train_vectorized

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
CNN_CFG = SweepConfig(steps=200, batch_size=16, lr=0.01)
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


def test_claim_cnn_reaches_90_percent_with_20_images_per_class():
    hist, _ = seed_sweep(lambda s: make_cnn(seed=s), lambda s: edge_split(20, seed=10_000 + s),
                         seeds=SEEDS, cfg=CNN_CFG, device=CPU)
    assert hist["val_acc"][:, -1].min() >= 0.9


def test_claim_mlp_is_exactly_indifferent_to_a_pixel_permutation():
    perm = pixel_permutation(28, generator=torch_generator(2026))
    a = [make_mlp(seed=s, hidden=16).double() for s in (0, 1)]
    b = [make_mlp(seed=s, hidden=16).double() for s in (0, 1)]
    with torch.no_grad():
        for m in b:
            m.fc1.weight.copy_(m.fc1.weight[:, perm])
    parts = [edge_split(5, seed=s) for s in (0, 1)]
    x, y = torch.stack([p[0] for p in parts]).double(), torch.stack([p[1] for p in parts])
    cfg = SweepConfig(steps=20, batch_size=8, lr=0.001)
    train_vectorized(a, x, y, cfg=cfg, seeds=[0, 1], device=CPU)
    train_vectorized(b, permute_pixels(x, perm), y, cfg=cfg, seeds=[0, 1], device=CPU)
    for ma, mb in zip(a, b):
        assert torch.allclose(ma.fc1.weight[:, perm], mb.fc1.weight, atol=1e-10)
        assert torch.allclose(ma.fc2.weight, mb.fc2.weight, atol=1e-10)


def test_claim_permutation_puts_the_cnn_behind_the_mlp():
    perm = pixel_permutation(28, generator=torch_generator(2026))
    n = 200
    cnn, _ = seed_sweep(lambda s: make_cnn(seed=s), lambda s: edge_split(n, seed=10_000 + s, perm=perm),
                        seeds=SEEDS, cfg=CNN_CFG, device=CPU)
    mlp, _ = seed_sweep(lambda s: make_mlp(seed=s), lambda s: edge_split(n, seed=10_000 + s, perm=perm),
                        seeds=SEEDS, cfg=SweepConfig(steps=500, batch_size=32, lr=0.001), device=CPU)
    assert cnn["val_acc"][:, -1].max() < mlp["val_acc"][:, -1].min()
    assert cnn["val_acc"][:, -1].mean() < 0.8


def test_claim_domain_shift_cnn_holds_mlp_calls_shifted_edges_none():
    shift = dict(train_location="first_half", val_location="second_half")
    cnn, _ = seed_sweep(lambda s: make_cnn(seed=s), lambda s: edge_split(50, seed=30_000 + s, **shift),
                        seeds=SEEDS, cfg=CNN_CFG, device=CPU)
    mlp, models = seed_sweep(lambda s: make_mlp(seed=s), lambda s: edge_split(50, seed=30_000 + s, **shift),
                             seeds=SEEDS, cfg=SweepConfig(steps=400, batch_size=32, lr=0.001), device=CPU)
    assert cnn["val_acc"][:, -1].min() >= 0.9
    assert mlp["val_acc"][:, -1].max() < 0.75
    assert (mlp["train_acc"][:, -1] - mlp["val_acc"][:, -1]).min() > 0.25
    yv = torch.stack([edge_split(50, seed=30_000 + s, **shift)[3] for s in SEEDS])
    xv = torch.stack([edge_split(50, seed=30_000 + s, **shift)[2] for s in SEEDS])
    pred = stacked_logits(models, xv, device=CPU).argmax(-1)
    cm = confusion_matrix(yv.flatten(), pred.flatten(), 3).double()
    rate = cm / cm.sum(1, keepdim=True)
    assert (rate[1, 0] + rate[2, 0]) / 2 > 0.5  # shifted stripes are called "none"
    assert rate[0, 0] > 0.9


def test_claim_frozen_hv_bank_cannot_tell_the_diagonals_apart():
    hist, models = seed_sweep(lambda s: make_cnn(seed=s, n_filters=4, n_classes=5, edge_init="hv"),
                              lambda s: edge_split(50, seed=20_000 + s, n_classes=5), seeds=SEEDS,
                              cfg=CNN_CFG, device=CPU, frozen=FROZEN)
    assert hist["val_acc"][:, -1].max() < 0.85  # the ceiling is 3/5 + (2/5) / 2 = 0.8 in expectation
    x, y, _, _ = edge_split(200, seed=99, n_classes=5)
    cm = confusion_matrix(y, models[0](x).argmax(1), 5).double()
    swap = (cm[3, 4] + cm[4, 3]) / (cm[3].sum() + cm[4].sum())
    assert 0.3 < swap < 0.7


def test_claim_average_pooling_fails_where_max_pooling_learns():
    accs = {}
    for pool in ("max", "avg"):
        hist, _ = seed_sweep(lambda s: make_cnn(seed=s, n_classes=5, pool=pool),
                             lambda s: edge_split(20, seed=40_000 + s, n_classes=5), seeds=SEEDS, cfg=CNN_CFG, device=CPU)
        accs[pool] = hist["val_acc"][:, -1]
    assert accs["max"].min() > 0.9 and accs["avg"].max() < 0.4


def test_claim_frozen_edge_bank_beats_learning_the_filters_with_few_images():
    accs = {}
    for name, (make, frozen) in {"trained": (lambda s: make_cnn(seed=s), ()),
                                 "bank": (lambda s: make_cnn(seed=s, edge_init="hvd"), FROZEN),
                                 "random": (lambda s: make_cnn(seed=s), FROZEN)}.items():
        hist, _ = seed_sweep(make, lambda s: edge_split(5, seed=10_000 + s), seeds=SEEDS, cfg=CNN_CFG,
                             device=CPU, frozen=frozen)
        accs[name] = hist["val_acc"][:, -1].mean()
    assert accs["bank"] >= accs["trained"] > accs["random"]
