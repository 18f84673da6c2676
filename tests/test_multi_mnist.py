"""Multi-MNIST (hyperdnn.data.multi_mnist): deterministic, the right labels, both digits on the canvas, cached safely."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import hyperdnn as hd
from hyperdnn.data.multi_mnist import load_multi_mnist, make_multi_mnist

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data").resolve()
HAVE_MNIST = any((SHARED / d / "t10k-images-idx3-ubyte.gz").exists() for d in ("", "mnist"))


def _digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n)


def test_make_multi_mnist_places_both_digits_and_labels_them():
    imgs, labels = _digits(50)
    out, lab = make_multi_mnist(imgs, labels, copies=2, seed=5)
    assert out.shape == (100, 36, 36) and out.dtype == np.uint8 and lab.shape == (100, 2)
    rng = np.random.default_rng(5)
    for c in range(2):
        perm = rng.permutation(50)  # the same draws, written out by hand
        for i in (0, 17, 49):
            canvas, left, right = out[c * 50 + i], imgs[i], imgs[perm[i]]
            assert lab[c * 50 + i].tolist() == [labels[i], labels[perm[i]]]
            want = np.zeros((36, 36), np.uint8)
            want[:28, :28] = left
            want[6:34, 6:34] = np.maximum(want[6:34, 6:34], right)
            assert np.array_equal(canvas, want)
            # both digits present: the first alone in the top rows, the second alone in rows 28..33
            assert np.array_equal(canvas[:6, :28], left[:6]) and np.array_equal(canvas[28:34, 6:34], right[22:])
            assert (canvas[:28, :28] >= left).all() and (canvas[6:34, 6:34] >= right).all()
            assert not canvas[34:].any() and not canvas[:, 34:].any()


def test_make_multi_mnist_is_deterministic_in_its_seed():
    imgs, labels = _digits(40)
    a = make_multi_mnist(imgs, labels, seed=1)
    b = make_multi_mnist(imgs, labels, seed=1)
    c = make_multi_mnist(imgs, labels, seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_make_multi_mnist_refuses_bad_input():
    imgs, labels = _digits(4)
    with pytest.raises(hd.DataError, match=r"\(N, 28, 28\) uint8"):
        make_multi_mnist(imgs.astype(np.float32), labels)
    with pytest.raises(hd.ConfigError, match="copies"):
        make_multi_mnist(imgs, labels, copies=0)


@pytest.mark.skipif(not HAVE_MNIST, reason="shared MNIST files not present")
def test_load_multi_mnist_from_mnist_is_cached_and_checked(tmp_path):
    data = load_multi_mnist(SHARED, copies=1, seed=3, cache_dir=tmp_path)
    mnist = hd.data.load_mnist(SHARED)
    assert data.train_images.shape == (60000, 36, 36) and data.test_images.shape == (10000, 36, 36)
    assert torch.equal(data.test_labels[:, 0], mnist.test_labels)  # copy 0: image i top-left
    assert sorted(data.test_labels[:, 1].tolist()) == sorted(mnist.test_labels.tolist())  # a permutation of the split
    assert torch.equal(data.test_images[:, :6, :28], mnist.test_images[:, :6, :])
    cached = load_multi_mnist(SHARED, copies=1, seed=3, cache_dir=tmp_path)
    assert torch.equal(cached.train_images, data.train_images) and torch.equal(cached.test_labels, data.test_labels)
    # a damaged cache is rebuilt, not trusted
    meta = tmp_path / "multi_mnist-shift6-seed3-copies1.json"
    info = json.loads(meta.read_text())
    info["sha256"] = "0" * 64
    meta.write_text(json.dumps(info))
    rebuilt = load_multi_mnist(SHARED, copies=1, seed=3, cache_dir=tmp_path)
    assert torch.equal(rebuilt.train_images, data.train_images)
    assert json.loads(meta.read_text())["sha256"] != "0" * 64
