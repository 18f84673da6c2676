"""Multi-MNIST: two MNIST digits on one 36x36 canvas, one label per digit.

Each image places one digit in the top-left corner (rows and columns 0..27) and a
second one shifted 6 pixels down and right (rows and columns 6..33); where they overlap
a pixel is the brighter of the two (``max``). Task 1 is the top-left digit, task 2 the
bottom-right one. This is the construction of Sener & Koltun (NeurIPS 2018; their
``multi_task/loaders/multi_mnist_loader.py``), kept at 36x36 (they then resize to 28x28):
PHN trains on Pareto MTL's (Lin et al. 2019) 36x36 files, whose generating code is not
public; there, each split holds two pairings of its MNIST split (120,000 train, 20,000 test).

The pairings are drawn from a seed, so the data set is a function of (MNIST, seed,
copies): the second digit of copy ``c`` of image ``i`` is image ``perm_c[i]`` of the same
split, ``perm_c`` a permutation from ``numpy.random.default_rng(seed)``. The result is
cached as ``multi_mnist-shift6-seed<S>-copies<C>.npz`` (plain arrays, no pickle) next to a JSON
file holding the arrays' sha256 and the MNIST files' sizes; a cache that does not match
is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hyperdnn.data.mnist import data_root, load_mnist
from hyperdnn.errors import ConfigError, DataError

__all__ = ["MultiMNIST", "load_multi_mnist", "make_multi_mnist"]

CANVAS = 36
SHIFT = 6  # the second digit's offset, rows and columns (Sener & Koltun's)


@dataclass(frozen=True)
class MultiMNIST:
    """Multi-MNIST train and test sets.

    Attributes:
        train_images: ``(N, 36, 36)`` uint8. train_labels: ``(N, 2)`` int64 (top-left, bottom-right).
        test_images: ``(M, 36, 36)`` uint8. test_labels: ``(M, 2)`` int64.
        seed, copies: what the pairings were drawn with.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    seed: int
    copies: int


def make_multi_mnist(images: np.ndarray, labels: np.ndarray, *, copies: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Builds Multi-MNIST images from one MNIST split.

    Args:
        images: ``(N, 28, 28)`` uint8. labels: ``(N,)`` digits.
        copies: pairings per image (Pareto MTL's files: 2).
        seed: seeds the pairings.

    Returns:
        ``(N * copies, 36, 36)`` uint8 images and ``(N * copies, 2)`` int64 labels; copy ``c``
        of image ``i`` is row ``c * N + i`` and has ``images[i]`` top-left.
    """
    if isinstance(copies, bool) or not isinstance(copies, numbers.Integral) or copies < 1:
        raise ConfigError(f"make_multi_mnist: copies must be a positive int (got {copies!r})")
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise DataError(f"make_multi_mnist: expected (N, 28, 28) uint8 images and (N,) labels (got {images.shape} {images.dtype} and {labels.shape})")
    n = images.shape[0]
    rng = np.random.default_rng(seed)
    out = np.zeros((n * copies, CANVAS, CANVAS), dtype=np.uint8)
    out_labels = np.empty((n * copies, 2), dtype=np.int64)
    for c in range(copies):
        perm = rng.permutation(n)
        block = out[c * n : (c + 1) * n]
        block[:, :28, :28] = images
        block[:, SHIFT : SHIFT + 28, SHIFT : SHIFT + 28] = np.maximum(block[:, SHIFT : SHIFT + 28, SHIFT : SHIFT + 28], images[perm])
        out_labels[c * n : (c + 1) * n, 0] = labels
        out_labels[c * n : (c + 1) * n, 1] = labels[perm]
    return out, out_labels


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def load_multi_mnist(data_dir: str | Path | None = None, *, copies: int = 2, seed: int = 0, cache_dir: str | Path | None = None) -> MultiMNIST:
    """Multi-MNIST generated from MNIST (:func:`hyperdnn.data.load_mnist`) and cached.

    Args:
        data_dir: where MNIST is (as for ``load_mnist``).
        copies: pairings per MNIST image (2: 120,000 train and 20,000 test images).
        seed: seeds the pairings.
        cache_dir: where the generated arrays are cached (default: ``<data dir>/multi_mnist``);
            when it cannot be written the data set is generated and returned uncached.

    Returns:
        :class:`MultiMNIST`.
    """
    mnist = load_mnist(data_dir)
    root = Path(cache_dir) if cache_dir is not None else data_root(data_dir)[0] / "multi_mnist"
    stem = f"multi_mnist-shift{SHIFT}-seed{int(seed)}-copies{int(copies)}"
    npz, meta = root / f"{stem}.npz", root / f"{stem}.json"
    # The cache depends on the MNIST files; their sizes name them well enough with their md5 checked by load_mnist.
    source = {name: int(p.stat().st_size) for name, p in sorted((q.name, q) for q in mnist.directory.iterdir()) if name.startswith(("train-", "t10k-"))}
    arrays = _read_cache(npz, meta, source)
    if arrays is None:
        tr_x, tr_y = make_multi_mnist(mnist.train_images.numpy(), mnist.train_labels.numpy(), copies=copies, seed=seed)
        # the test pairings use their own stream, so the test set does not depend on the train set's size
        te_x, te_y = make_multi_mnist(mnist.test_images.numpy(), mnist.test_labels.numpy(), copies=copies, seed=seed + 1_000_003)
        arrays = (tr_x, tr_y, te_x, te_y)
        _write_cache(npz, meta, arrays, source)
    tr_x, tr_y, te_x, te_y = arrays
    return MultiMNIST(torch.from_numpy(tr_x), torch.from_numpy(tr_y), torch.from_numpy(te_x), torch.from_numpy(te_y), int(seed), int(copies))


_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def _read_cache(npz: Path, meta: Path, source: dict[str, int]) -> tuple[np.ndarray, ...] | None:
    if not (npz.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        with np.load(npz, allow_pickle=False) as f:
            arrays = tuple(f[k] for k in _KEYS)
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(info, dict) or info.get("source") != source or info.get("sha256") != _digest(*arrays):
        return None
    return arrays


def _write_cache(npz: Path, meta: Path, arrays: tuple[np.ndarray, ...], source: dict[str, int]) -> None:
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=npz.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, train_images=arrays[0], train_labels=arrays[1], test_images=arrays[2], test_labels=arrays[3])
        os.chmod(tmp, 0o644)
        os.replace(tmp, npz)
        meta.write_text(json.dumps({"sha256": _digest(*arrays), "source": source}))
    except OSError:
        return  # a read-only data directory: the caller still gets the generated arrays
