"""Data augmentation as in AlexNet: random crops, horizontal flips, PCA colour jitter; shifted digits.

Topic module of chapter 14; imports only the core (checks, data, runtime, train, sweep).

Used by chapters: 14.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import checks
from .data import mnist
from .runtime import torch_generator
from .sweep import fit_stacked
from .train import TrainConfig


def sample_photos() -> torch.Tensor:
    """scikit-learn's two sample photographs (china, flower) as floats in [0, 1]: (2, 3, 427, 640)."""
    from sklearn.datasets import load_sample_images

    images = np.stack(load_sample_images().images).astype(np.float32) / 255.0
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _images(x):
    checks.tensor("x", x, ndim=4)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    return x


def random_crop(x: torch.Tensor, *, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random size x size window of each image: (N, C, H, W) -> (N, C, size, size)."""
    _images(x)
    checks.positive_int("size", size)
    n, _, h, w = x.shape
    if size > min(h, w):
        raise ValueError(f"size: a {size} x {size} crop does not fit a {h} x {w} image")
    top = torch.randint(h - size + 1, (n,), generator=generator)
    left = torch.randint(w - size + 1, (n,), generator=generator)
    return torch.stack([x[i, :, t:t + size, l:l + size] for i, (t, l) in enumerate(zip(top.tolist(), left.tolist()))])


def random_flip(x: torch.Tensor, *, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p: (N, C, H, W) -> same shape."""
    _images(x)
    checks.probability("p", p, allow_one=True)
    flip = torch.rand(x.shape[0], generator=generator) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate images by (dy, dx) pixels, filling with zeros: (N, C, H, W) -> same shape."""
    _images(x)
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"dy, dx: a shift of ({dy}, {dx}) moves a {h} x {w} image out of view")
    padded = F.pad(x, (abs(dx), abs(dx), abs(dy), abs(dy)))
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[..., top:top + h, left:left + w]


def random_shift(x: torch.Tensor, *, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by its own uniform (dy, dx) in [-max_shift, max_shift]^2, zero fill."""
    _images(x)
    checks.nonnegative_int("max_shift", max_shift)
    d = torch.randint(-max_shift, max_shift + 1, (x.shape[0], 2), generator=generator).tolist()
    return torch.cat([shift(x[i:i + 1], dy, dx) for i, (dy, dx) in enumerate(d)])


def rgb_pca(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (3,), ascending, and eigenvectors (3, 3), as columns,
    of the RGB covariance of all pixels of x (N, 3, H, W)."""
    _images(x)
    if x.shape[1] != 3:
        raise ValueError(f"x must have 3 colour channels, got {x.shape[1]}")
    pixels = x.permute(1, 0, 2, 3).reshape(3, -1).double()
    return torch.linalg.eigh(torch.cov(pixels))


def pca_jitter(x: torch.Tensor, *, eigvals: torch.Tensor,
               eigvecs: torch.Tensor, generator: torch.Generator,
               sigma: float = 0.1, power: float = 1.0):
    """AlexNet's colour jitter: add sum_i alpha_i lambda_i^power p_i,
    alpha_i ~ N(0, sigma^2), to every pixel of each image.

    power=1 is the paper's text (eigenvalues); power=0.5 uses standard
    deviations, which keeps the shift in proportion when the pixel scale
    changes. Returns the jittered images (N, 3, H, W) and the draws
    alpha (N, 3); one draw per image.
    """
    _images(x)
    checks.positive("sigma", sigma)
    if eigvals.shape != (3,) or eigvecs.shape != (3, 3):
        raise ValueError("eigvals must be (3,) and eigvecs (3, 3), got "
                         f"{tuple(eigvals.shape)}, {tuple(eigvecs.shape)}")
    alpha = sigma * torch.randn(x.shape[0], 3, generator=generator,
                                dtype=torch.float64)
    checks.real("power", power, low=0.0)
    # (N, 3): row n is sum_i alpha_ni lambda_i^power p_i
    delta = (alpha * eigvals.double() ** power) @ eigvecs.double().T
    return x + delta.to(x.dtype).view(-1, 3, 1, 1), alpha


def shifted_copies(x: torch.Tensor, y: torch.Tensor, *, copies: int, max_shift: int, seed: int):
    """The originals plus `copies` randomly shifted versions of each: (N (1 + copies), ...) images and labels."""
    checks.tensor("y", y, ndim=1)
    checks.nonnegative_int("copies", copies)
    checks.same_length(x=x, y=y)
    g = torch_generator(checks.seed(seed))
    xs = [x] + [random_shift(x, max_shift=max_shift, generator=g) for _ in range(copies)]
    return torch.cat(xs), y.repeat(copies + 1)


def small_cnn(*, seed: int, n_classes: int = 10) -> torch.nn.Sequential:
    """A LeNet-sized CNN for 28 x 28 digits: conv 5x5 (8), pool, conv 5x5 (16), pool, linear; (N, 1, 28, 28) -> (N, 10)."""
    from torch import nn

    torch.manual_seed(checks.seed(seed))
    return nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, n_classes))


AUGMENT_CFG = TrainConfig(steps=300, batch_size=32, optimizer="momentum", lr=0.05, eval_every=100)


def augmentation_run(*, copies: int, seeds, n_train: int = 300, max_shift: int = 2, n_test: int = 1000,
                     cfg: TrainConfig = AUGMENT_CFG, device="cpu") -> dict:
    """small_cnn per seed on its own n_train MNIST digits plus `copies` shifted copies; history with test accuracy as val."""
    seeds = [checks.seed(s) for s in seeds]
    xs, ys = [], []
    for s in seeds:
        d = mnist(n_train=n_train, n_test=1, seed=s)
        x, y = shifted_copies(d.x_train, d.y_train, copies=copies, max_shift=max_shift, seed=s)
        xs.append(x)
        ys.append(y)
    k, test = len(seeds), mnist(n_train=1, n_test=n_test, seed=0)  # one test set for every seed
    x_test, y_test = test.x_test.expand(k, *test.x_test.shape), test.y_test.expand(k, -1)
    return fit_stacked([small_cnn(seed=s) for s in seeds], torch.stack(xs), torch.stack(ys), cfg=cfg,
                       seeds=seeds, device=device, x_val=x_test, y_val=y_test)
