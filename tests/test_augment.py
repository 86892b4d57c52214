"""Chapter 14: crops, flips, shifts and AlexNet's PCA colour jitter; what shifted copies buy on few digits."""

import numpy as np
import pytest
import torch

from dlbook import augment as A
from dlbook.results import compare
from dlbook.runtime import torch_generator


def photos(size=64):
    return A.sample_photos()[:, :, 100:100 + size, 200:200 + size]


def check_jitter(x, out, alpha, power=1.0):
    """The jitter against numpy: one shift per image, along numpy's eigenvectors by |alpha_i| lambda_i."""
    pixels = x.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()
    lam, vecs = np.linalg.eigh(np.cov(pixels))
    delta = (out - x).double().numpy()
    for n in range(x.shape[0]):
        d = delta[n].reshape(3, -1)
        assert np.allclose(d, d[:, :1], atol=1e-6), "the shift differs between pixels"
        coef = vecs.T @ d[:, 0]  # coordinates of the shift in numpy's eigenbasis (signs are arbitrary)
        assert np.allclose(np.abs(coef), np.abs(alpha[n].numpy()) * lam ** power, rtol=1e-4, atol=1e-7)


def test_rgb_pca_matches_numpy():
    x = photos()
    lam, vecs = A.rgb_pca(x)
    ref = np.linalg.eigvalsh(np.cov(x.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()))
    assert np.allclose(lam.numpy(), ref, rtol=1e-10)
    assert torch.allclose(vecs.T @ vecs, torch.eye(3, dtype=vecs.dtype), atol=1e-12)


def test_pca_jitter_moves_along_principal_components_by_alpha_lambda():
    x = photos()
    lam, vecs = A.rgb_pca(x)
    out, alpha = A.pca_jitter(x, eigvals=lam, eigvecs=vecs, generator=torch_generator(0))
    check_jitter(x, out, alpha)


@pytest.mark.parametrize("mutation", ["rows", "sqrt", "per_pixel"])
def test_jitter_check_catches_mutations(mutation):
    x = photos()
    lam, vecs = A.rgb_pca(x)
    if mutation == "rows":  # eigenvectors read as rows instead of columns
        vecs = vecs.T.contiguous()
    elif mutation == "sqrt":  # scaled by the standard deviation sqrt(lambda) instead of lambda
        lam = lam.sqrt()
    else:
        g = torch_generator(0)
        out, alpha = A.pca_jitter(x, eigvals=lam, eigvecs=vecs, generator=g)
        out = out + 1e-3 * torch.rand(out.shape, generator=g)  # a different shift per pixel
        with pytest.raises(AssertionError):
            check_jitter(x, out, alpha)
        return
    out, alpha = A.pca_jitter(x, eigvals=lam, eigvecs=vecs, generator=torch_generator(0))
    with pytest.raises(AssertionError):
        check_jitter(x, out, alpha)


def test_standard_deviation_variant_scales_with_the_pixels():
    x = photos()
    lam, vecs = A.rgb_pca(x)
    out, alpha = A.pca_jitter(x, eigvals=lam, eigvecs=vecs, generator=torch_generator(3), power=0.5)
    check_jitter(x, out, alpha, power=0.5)
    lam255, vecs255 = A.rgb_pca(255 * x)
    for power, equivariant in ((0.5, True), (1.0, False)):
        a, _ = A.pca_jitter(x, eigvals=lam, eigvecs=vecs, generator=torch_generator(4), power=power)
        b, _ = A.pca_jitter(255 * x, eigvals=lam255, eigvecs=vecs255, generator=torch_generator(4), power=power)
        shift_a, shift_b = (a - x)[:, :, 0, 0].abs(), (b - 255 * x)[:, :, 0, 0].abs() / 255
        assert torch.allclose(shift_a, shift_b, rtol=1e-3) == equivariant


def test_jitter_variance_along_each_component():
    x = photos(8)
    lam, vecs = A.rgb_pca(x)
    many = x[:1].expand(4000, -1, -1, -1)
    out, _ = A.pca_jitter(many, eigvals=lam, eigvecs=vecs, generator=torch_generator(1))
    coef = (out - many)[:, :, 0, 0].double() @ vecs  # (N, 3) coordinates along p_i
    var = coef.var(0)
    expected = (0.1 * lam) ** 2
    # the sample variance of N normal draws has relative sd sqrt(2 / (N - 1)); allow 4 of them
    assert torch.all((var / expected - 1).abs() < 4 * (2 / 3999) ** 0.5)


def test_crop_is_a_window_and_flip_mirrors():
    x = torch.arange(2 * 3 * 6 * 7, dtype=torch.float32).view(2, 3, 6, 7)
    crops = A.random_crop(x, size=4, generator=torch_generator(0))
    for n in range(2):
        windows = [x[n, :, t:t + 4, l:l + 4] for t in range(3) for l in range(4)]
        assert any(torch.equal(crops[n], w) for w in windows)
    many = x[:1].expand(64, -1, -1, -1)
    flips = A.random_flip(many, generator=torch_generator(0))
    mirrored = [torch.equal(f, x[0].flip(-1)) for f in flips]
    assert all(m or torch.equal(f, x[0]) for m, f in zip(mirrored, flips))
    assert 10 < sum(mirrored) < 54  # p = 0.5: 32 expected, sd 4
    with pytest.raises(ValueError, match="size"):
        A.random_crop(x, size=7, generator=torch_generator(0))


def test_shift_against_a_plain_loop():
    x = torch.randn(1, 1, 5, 6, generator=torch_generator(2))
    for dy, dx in [(1, 0), (-2, 3), (0, -1), (2, 2)]:
        ref = torch.zeros_like(x)
        for i in range(5):
            for j in range(6):
                if 0 <= i - dy < 5 and 0 <= j - dx < 6:
                    ref[0, 0, i, j] = x[0, 0, i - dy, j - dx]
        assert torch.equal(A.shift(x, dy, dx), ref)
    xs, ys = A.shifted_copies(x.expand(4, -1, -1, -1), torch.arange(4), copies=2, max_shift=1, seed=0)
    assert xs.shape == (12, 1, 5, 6) and ys.tolist() == [0, 1, 2, 3] * 3


def test_bad_input_names_the_argument():
    x = photos(8)
    with pytest.raises(TypeError, match="x"):
        A.rgb_pca(x.long())
    with pytest.raises(ValueError, match="eigvals"):
        A.pca_jitter(x, eigvals=torch.ones(2), eigvecs=torch.eye(3), generator=torch_generator(0))
    with pytest.raises(ValueError, match="sigma"):
        A.pca_jitter(x, eigvals=torch.ones(3), eigvecs=torch.eye(3), generator=torch_generator(0), sigma=0)


def test_shifted_copies_raise_test_accuracy_over_seeds():
    seeds = range(10)
    plain = A.augmentation_run(copies=0, seeds=seeds)["val_acc"][:, -1]
    shifted = A.augmentation_run(copies=3, seeds=seeds)["val_acc"][:, -1]
    assert compare(shifted, plain, paired=True).exceeds(2)
