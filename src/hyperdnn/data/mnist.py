"""MNIST from the four standard IDX files (gzip-compressed or plain).

Where the files are looked for, first match wins:

1. ``data_dir`` (the CLI's ``--data-dir``),
2. the ``HYPERDNN_DATA`` environment variable,
3. the cache directory ``~/.cache/hyperdnn`` (``$XDG_CACHE_HOME/hyperdnn`` if set).

In the chosen directory the files may sit directly or in a ``mnist/``
subdirectory, named ``train-images-idx3-ubyte[.gz]`` etc. Files that are
missing are downloaded into ``<dir>/mnist/`` and checked against the md5 of the
official uncompressed bytes; without a network (or without write access to the
directory) the loader raises a :class:`~hyperdnn.errors.DataError` that names
the files, the directories searched and how to provide them. Corrupt or
truncated files raise a ``DataError`` naming the file and what is wrong with
it. A local file with the official item count (60,000 or 10,000) must also
have the official md5 (the gzip CRC protects only what was compressed, and a
plain IDX file has no check at all); files of other sizes (subsets, synthetic
test data) are read without it.

Reference: LeCun, Cortes and Burges, "The MNIST database of handwritten digits"
(CC BY-SA 3.0).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from hyperdnn.errors import DataError

__all__ = ["MNIST", "MNIST_COUNTS", "MNIST_FILES", "MNIST_MIRRORS", "data_root", "load_mnist", "read_idx"]

# name -> md5 of the uncompressed bytes (the official files)
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# items in each official file: a file of this size is checked against its md5
MNIST_COUNTS: dict[str, int] = {
    "train-images-idx3-ubyte": 60000,
    "train-labels-idx1-ubyte": 60000,
    "t10k-images-idx3-ubyte": 10000,
    "t10k-labels-idx1-ubyte": 10000,
}

_IDX_DTYPES = {0x08: np.uint8}  # MNIST uses only unsigned bytes


@dataclass(frozen=True)
class MNIST:
    """The MNIST train and test sets as tensors.

    Attributes:
        train_images: ``(60000, 28, 28)`` uint8.
        train_labels: ``(60000,)`` int64, digits 0..9.
        test_images: ``(10000, 28, 28)`` uint8.
        test_labels: ``(10000,)`` int64.
        directory: where the files were read from.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    directory: Path


def data_root(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """The data directory to use and where it came from (``"--data-dir"``, ``"HYPERDNN_DATA"``, ``"cache"``)."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "--data-dir"
    env = os.environ.get("HYPERDNN_DATA")
    if env:
        return Path(env).expanduser(), "HYPERDNN_DATA"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hyperdnn"
    return cache, "cache"


def _find(root: Path, name: str) -> Path | None:
    for d in (root / "mnist", root):
        for candidate in (d / (name + ".gz"), d / name):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip or plain) into a numpy array, checking header and size.

    A gzip file is decompressed as a stream and never further than its IDX
    header declares (plus one byte, to tell a file that is too long), so a small
    gzip that would expand to gigabytes fails fast.

    Args:
        path: the file.
        expected_ndim: 3 for images, 1 for labels; None accepts any.

    Returns:
        The array, dtype uint8, shape from the header.

    Raises:
        DataError: not gzip/IDX, wrong magic, wrong dimensions, a size no file of
            this length can hold, truncated or too long.
    """
    return _read_idx(Path(path), expected_ndim)[1]


# deflate never expands by more than about 1032:1, so a gzip file cannot hold more than this per byte
_MAX_GZIP_RATIO = 1032
_BLOCK = 1 << 20


def _read_idx(path: Path, expected_ndim: int | None) -> tuple[bytearray, np.ndarray]:
    """The uncompressed bytes of an IDX file (for its md5) and its array."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"MNIST: cannot read {path}: {e}") from e
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            is_gzip = f.read(2) == b"\x1f\x8b"
            f.seek(0)
        except OSError as e:
            raise DataError(f"MNIST: cannot read {path}: {e}") from e
        if not is_gzip:
            return _read_stream(f, path, expected_ndim, size, exact=True)
        try:
            with gzip.GzipFile(fileobj=f) as stream:
                return _read_stream(stream, path, expected_ndim, size * _MAX_GZIP_RATIO, exact=False)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"MNIST: {path} is a corrupt or truncated gzip file ({e}); delete it and provide a fresh copy") from e


def _read_upto(stream: BinaryIO, n: int) -> bytearray:
    """At most ``n`` bytes from ``stream``, read in blocks (fewer at its end)."""
    out = bytearray()
    while len(out) < n:
        block = stream.read(min(n - len(out), _BLOCK))
        if not block:
            break
        out += block
    return out


def _read_stream(stream: BinaryIO, path: Path, expected_ndim: int | None, limit: int, exact: bool) -> tuple[bytearray, np.ndarray]:
    """Reads header and payload from ``stream``, never more than the header declares plus one byte.

    Args:
        limit: the most bytes the stream can give (the plain file's size; for gzip,
            the compressed size times deflate's largest ratio).
        exact: ``limit`` is the stream's exact length (a plain file).
    """
    raw = _read_upto(stream, 4)
    if len(raw) < 4:
        raise DataError(f"MNIST: {path} is too short to be an IDX file ({len(raw)} bytes; expected a 4-byte magic number and a header)")
    zero, dtype_code, ndim = raw[0] | raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code not in _IDX_DTYPES:
        raise DataError(f"MNIST: {path} is not an IDX file of unsigned bytes (magic {bytes(raw[:4]).hex()}; expected 0000 08 0N)")
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"MNIST: {path} has {ndim} dimensions (expected {expected_ndim})")
    header = 4 + 4 * ndim
    raw += _read_upto(stream, 4 * ndim)
    if len(raw) < header:
        raise DataError(f"MNIST: {path} is truncated inside its header ({len(raw)} bytes; header needs {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # Python ints: no overflow, however large the dimensions
    if expected > limit:
        if exact:
            raise DataError(f"MNIST: {path} is truncated: {limit} bytes, expected {expected} for shape {shape}")
        raise DataError(f"MNIST: {path} declares shape {shape} ({expected:,} bytes), more than its {limit // _MAX_GZIP_RATIO:,} "
                        f"compressed bytes can hold; the header is corrupt")
    raw += _read_upto(stream, expected - header)
    if len(raw) < expected:
        raise DataError(f"MNIST: {path} is truncated: {len(raw)} bytes, expected {expected} for shape {shape}")
    if stream.read(1):  # for gzip this also reads to the end of the stream, which checks its CRC
        size = f"{limit} bytes" if exact else f"more than {expected} bytes uncompressed"
        raise DataError(f"MNIST: {path} is longer than its header says: {size}, expected {expected} for shape {shape}")
    return raw, np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _download(name: str, dest_dir: Path, mirrors: tuple[str, ...], timeout: float, dead: set[str]) -> tuple[Path | None, list[str]]:
    errors: list[str] = []
    for base in mirrors:
        if base in dead:
            continue
        url = base + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                blob = resp.read()
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            # HTTPException (IncompleteRead, RemoteDisconnected...) is not an OSError
            if not isinstance(e, (urllib.error.HTTPError, http.client.IncompleteRead)):
                dead.add(base)  # unreachable: do not wait on it again for the other files
            errors.append(f"{url}: {type(e).__name__}: {e}")
            continue
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(blob)) as stream:
                raw = _read_stream(stream, Path(url), 3 if "images" in name else 1, len(blob) * _MAX_GZIP_RATIO, exact=False)[0]
        except (OSError, EOFError, zlib.error) as e:
            errors.append(f"{url}: not a gzip file ({e})")
            continue
        except DataError as e:
            errors.append(f"{url}: {e}")
            continue
        digest = hashlib.md5(raw).hexdigest()
        if digest != MNIST_FILES[name]:
            errors.append(f"{url}: md5 {digest} (expected {MNIST_FILES[name]})")
            continue
        dest = dest_dir / (name + ".gz")
        tmp = dest.with_suffix(".gz.part")
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(blob)
            os.replace(tmp, dest)
        except OSError as e:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise DataError(f"MNIST: cannot write to {dest_dir} ({type(e).__name__}: {e}); pass --data-dir to a writable directory (or one that already holds the four MNIST files)") from e
        return dest, errors
    return None, errors


def _read_checked(name: str, path: Path) -> np.ndarray:
    """read_idx, plus the md5 of the uncompressed bytes when the file has the official item count."""
    raw, arr = _read_idx(path, 3 if "images" in name else 1)
    if arr.shape[0] == MNIST_COUNTS[name]:
        digest = hashlib.md5(raw).hexdigest()
        if digest != MNIST_FILES[name]:
            raise DataError(
                f"MNIST: {path} has the official size of {name} ({arr.shape[0]} items) but md5 {digest} of its "
                f"uncompressed bytes (expected {MNIST_FILES[name]}): damaged, or another data set under MNIST's "
                f"names (e.g. Fashion-MNIST); delete it and provide the official file"
            )
    return arr


_CACHE: dict[tuple, MNIST] = {}


def load_mnist(
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    timeout: float = 30.0,
) -> MNIST:
    """Load MNIST, downloading missing files when possible.

    Args:
        data_dir: directory holding the files (or a ``mnist/`` subdirectory with them).
            Default: ``$HYPERDNN_DATA``, else ``~/.cache/hyperdnn``.
        download: fetch missing files into ``<dir>/mnist/`` (md5-checked). Default True.
        mirrors: base URLs tried in order.
        timeout: seconds per download attempt.

    Returns:
        :class:`MNIST` (cached in memory per set of files).

    Raises:
        DataError: files missing and not downloadable, or corrupt / truncated / inconsistent.
    """
    root, source = data_root(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"MNIST: the data directory {root} (from {source}) is a file, not a directory; pass --data-dir DIR (or set HYPERDNN_DATA=DIR) to a directory")
    paths: dict[str, Path] = {}
    missing = [n for n in MNIST_FILES if _find(root, n) is None]
    failures: list[str] = []
    if missing and download:
        dead: set[str] = set()
        for name in missing:
            got, errs = _download(name, root / "mnist", mirrors, timeout, dead)
            failures += errs
    for name in MNIST_FILES:
        found = _find(root, name)
        if found is not None:
            paths[name] = found
    still = [n for n in MNIST_FILES if n not in paths]
    if still:
        files = ", ".join(n + "[.gz]" for n in still)
        why = ("download failed: " + "; ".join(failures[:4])) if failures else "download is off"
        raise DataError(
            f"MNIST: {files} not found in {root} or {root / 'mnist'} (directory from {source}); {why}. "
            f"Provide them by copying the four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into {root / 'mnist'}, or pass --data-dir DIR "
            f"(or set HYPERDNN_DATA=DIR) to a directory that holds them, or connect to the internet to download them."
        )
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values())
    if key in _CACHE:
        return _CACHE[key]
    arrays = {name: _read_checked(name, p) for name, p in paths.items()}
    for split in ("train", "t10k"):
        imgs, labs = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if imgs.shape[0] != labs.shape[0]:
            raise DataError(f"MNIST: {paths[f'{split}-images-idx3-ubyte']} holds {imgs.shape[0]} images but {paths[f'{split}-labels-idx1-ubyte']} holds {labs.shape[0]} labels")
        if imgs.shape[1:] != (28, 28):
            raise DataError(f"MNIST: {paths[f'{split}-images-idx3-ubyte']} has images of shape {imgs.shape[1:]} (expected (28, 28))")
        if labs.size and int(labs.max()) > 9:
            raise DataError(f"MNIST: {paths[f'{split}-labels-idx1-ubyte']} holds label {int(labs.max())} (expected digits 0..9)")
    out = MNIST(
        train_images=torch.from_numpy(arrays["train-images-idx3-ubyte"].copy()),
        train_labels=torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["t10k-images-idx3-ubyte"].copy()),
        test_labels=torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)),
        directory=paths["train-images-idx3-ubyte"].parent,
    )
    _CACHE[key] = out
    return out
