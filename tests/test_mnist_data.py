"""The MNIST IDX loader: real files, synthetic good files, corrupt and missing ones."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperdnn.data.continual_tasks import permuted_mnist, split_mnist, toy_regression
from hyperdnn.data.mnist import MNIST_FILES, data_root, load_mnist, read_idx
from hyperdnn.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data").resolve()  # absolute: tests link to its files from tmp dirs
HAVE_MNIST = (SHARED / "mnist" / "train-images-idx3-ubyte.gz").is_file()
NO_NET = ("http://127.0.0.1:9/",)  # nothing listens on the discard port: download fails fast


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file for a uint8 array, written independently of the loader."""
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_set(d: Path, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.randint(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.randint(0, 10, size=(n_train,)),
        "t10k-images-idx3-ubyte": rng.randint(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.randint(0, 10, size=(n_test,)),
    }
    d.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        raw = idx_bytes(a)
        if gz:
            (d / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (d / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_files_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = write_set(tmp_path / "mnist", gz=gz, seed=int(gz))
    m = load_mnist(tmp_path, download=False)
    assert torch.equal(m.train_images, torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert torch.equal(m.test_labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    assert m.train_labels.dtype == torch.int64


def test_files_directly_in_dir_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_set(tmp_path, seed=3)  # no mnist/ subfolder
    monkeypatch.setenv("HYPERDNN_DATA", str(tmp_path))
    assert data_root(None) == (tmp_path, "HYPERDNN_DATA")
    assert data_root("/x") == (Path("/x"), "--data-dir")
    assert load_mnist(download=False).train_images.shape == (20, 28, 28)
    monkeypatch.delenv("HYPERDNN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root(None) == (tmp_path / "cache" / "hyperdnn", "cache")


def test_missing_files_offline_says_what_where_how(tmp_path: Path) -> None:
    write_set(tmp_path / "mnist", seed=4)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, mirrors=NO_NET, timeout=2)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images" not in msg.split("not found")[0]
    assert str(tmp_path) in msg and "--data-dir" in msg and "HYPERDNN_DATA" in msg and "download failed" in msg


def test_truncated_gzip(tmp_path: Path) -> None:
    write_set(tmp_path, seed=5)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        load_mnist(tmp_path, download=False)


def test_truncated_idx_payload(tmp_path: Path) -> None:
    write_set(tmp_path, gz=False, seed=6)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated: .* expected"):
        load_mnist(tmp_path, download=False)


def test_bad_magic_and_wrong_ndim_and_label_range(tmp_path: Path) -> None:
    bad = tmp_path / "junk"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)
    lab = tmp_path / "labels"
    lab.write_bytes(idx_bytes(np.zeros(5)))
    with pytest.raises(DataError, match="has 1 dimensions .expected 3"):
        read_idx(lab, 3)
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx(tmp_path / "tiny")
    d = tmp_path / "set"
    write_set(d, seed=7)
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(20, 12))))
    with pytest.raises(DataError, match="label 12"):
        load_mnist(d, download=False)
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(19))))
    with pytest.raises(DataError, match="20 images but .* 19 labels"):
        load_mnist(d, download=False)


@pytest.mark.skipif(not HAVE_MNIST, reason="shared MNIST files not present")
def test_real_mnist_counts_and_tasks() -> None:
    m = load_mnist(SHARED, download=False)
    assert m.train_images.shape == (60000, 28, 28) and m.test_images.shape == (10000, 28, 28)
    assert m.train_labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert m.test_labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    tasks = split_mnist(m)
    assert [t.num_train for t in tasks] == [5923 + 6742, 5958 + 6131, 5842 + 5421, 5918 + 6265, 5851 + 5949]
    assert all(set(t.train_y.unique().tolist()) == {0, 1} for t in tasks)
    perm = permuted_mnist(m, num_tasks=3)
    x0, _ = perm[0].test_set()
    x2, _ = perm[2].test_set()
    assert x0.shape == (10000, 1024) and torch.equal(x0[:, perm[2].perm], x2)
    # task 1 is the padded original image
    assert torch.equal(x0[0].view(32, 32)[2:30, 2:30], m.test_images[0].float() / 255)
    assert perm[1].train_x is perm[2].train_x  # one shared copy


def test_toy_tasks_match_the_paper_functions() -> None:
    tasks = toy_regression()
    assert [t.num_train for t in tasks] == [100, 100, 100]
    for t, f, (lo, hi) in zip(tasks, [lambda x: x + 3, lambda x: 2 * x**2 - 1, lambda x: (x - 3) ** 3], [(-4, -2), (-1, 1), (2, 4)]):
        assert t.train_x.min() >= lo and t.train_x.max() <= hi
        assert torch.allclose(t.test_y, f(t.test_x.double()).float(), atol=1e-5)
        resid = t.train_y - f(t.train_x.double()).float()
        assert 0.03 < resid.std().item() < 0.07


def test_md5_table_is_the_readme_one() -> None:
    readme = SHARED / "mnist" / "README.md"
    if not readme.is_file():
        pytest.skip("shared README not present")
    text = readme.read_text()
    for name, md5 in MNIST_FILES.items():
        assert md5 in text and name in text


def test_download_from_a_mirror_checks_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools
    import hashlib
    import http.server
    import threading

    import hyperdnn.data.mnist as mnist_mod

    served = tmp_path / "mirror"
    arrays = write_set(served, seed=8)
    md5 = {name: hashlib.md5(idx_bytes(a)).hexdigest() for name, a in arrays.items()}
    md5["t10k-labels-idx1-ubyte"] = "0" * 32  # this one will not match
    monkeypatch.setattr(mnist_mod, "MNIST_FILES", md5)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mirror = (f"http://127.0.0.1:{server.server_address[1]}/",)
        dest = tmp_path / "dest"
        with pytest.raises(DataError, match=r"t10k-labels.*md5 0{32}|md5 .* \(expected 0{32}\)"):
            load_mnist(dest, mirrors=mirror, timeout=5)
        assert (dest / "mnist" / "train-images-idx3-ubyte.gz").is_file()  # the good ones were kept
        assert not (dest / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
        md5["t10k-labels-idx1-ubyte"] = hashlib.md5(idx_bytes(arrays["t10k-labels-idx1-ubyte"])).hexdigest()
        m = load_mnist(dest, mirrors=mirror, timeout=5)
        assert torch.equal(m.test_labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    finally:
        server.shutdown()


class _FakeResponse:
    """What urllib.request.urlopen returns, for a download that needs no server."""

    def __init__(self, body: bytes | None = None, error: Exception | None = None) -> None:
        self.body, self.error = body, error

    def __enter__(self) -> "_FakeResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.body or b""


def serve_synthetic(monkeypatch: pytest.MonkeyPatch, error: Exception | None = None) -> dict[str, np.ndarray]:
    """Make every download return a synthetic (gzipped) set whose md5s are the expected ones, or raise ``error``."""
    import hashlib
    import urllib.request

    import hyperdnn.data.mnist as mnist_mod

    rng = np.random.RandomState(11)
    arrays = {name: rng.randint(0, 10 if "labels" in name else 256, size=(10,) if "labels" in name else (10, 28, 28)) for name in MNIST_FILES}
    blobs = {name: idx_bytes(a) for name, a in arrays.items()}
    monkeypatch.setattr(mnist_mod, "MNIST_FILES", {name: hashlib.md5(b).hexdigest() for name, b in blobs.items()})

    def urlopen(url: str, timeout: float = 0) -> _FakeResponse:
        name = url.rsplit("/", 1)[1].removesuffix(".gz")
        return _FakeResponse(gzip.compress(blobs[name]), error)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return arrays


def test_download_into_an_unwritable_place_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = serve_synthetic(monkeypatch)
    mirror = ("http://mirror.invalid/",)
    # the data directory is a file
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"data directory .*file .* is a file, not a directory"):
        load_mnist(tmp_path / "file", mirrors=mirror)
    # <dir>/mnist, where downloads go, is a file
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mnist").write_text("x")
    with pytest.raises(DataError, match=r"cannot write to .*d/mnist .*FileExistsError.*pass --data-dir to a writable directory"):
        load_mnist(tmp_path / "d", mirrors=mirror)
    # a read-only directory (simulated: the tests may run as root, who can write anywhere)
    real_write = Path.write_bytes

    def read_only(self: Path, data: bytes) -> int:
        if self.name.endswith(".part"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    with pytest.raises(DataError, match=r"cannot write to .*ro/mnist .*PermissionError.*--data-dir"):
        load_mnist(tmp_path / "ro", mirrors=mirror)
    assert not list((tmp_path / "ro" / "mnist").iterdir())  # no partial file left
    monkeypatch.setattr(Path, "write_bytes", real_write)
    m = load_mnist(tmp_path / "ok", mirrors=mirror)  # the same download, writable: works
    assert torch.equal(m.train_labels, torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)))


def test_incomplete_read_during_download_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import http.client

    serve_synthetic(monkeypatch, error=http.client.IncompleteRead(b"abc", 100))
    with pytest.raises(DataError, match="download failed: .*IncompleteRead"):
        load_mnist(tmp_path, mirrors=("http://mirror.invalid/",))


@pytest.mark.parametrize("gz", [False, True])
def test_local_file_of_official_size_with_wrong_md5(tmp_path: Path, gz: bool) -> None:
    import hashlib

    write_set(tmp_path, gz=gz, seed=9)
    labels = np.random.RandomState(0).randint(0, 10, size=10000)  # the official count, not the official bytes
    raw = idx_bytes(labels)
    name = "t10k-labels-idx1-ubyte"
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, download=False)
    msg = str(e.value)
    assert str(path) in msg and hashlib.md5(raw).hexdigest() in msg and MNIST_FILES[name] in msg, msg


@pytest.mark.skipif(not HAVE_MNIST, reason="shared MNIST files not present")
def test_damaged_plain_copy_of_the_real_labels(tmp_path: Path) -> None:
    raw = bytearray(gzip.decompress((SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    for name in MNIST_FILES:
        if name != "t10k-labels-idx1-ubyte":
            (tmp_path / (name + ".gz")).symlink_to(SHARED / "mnist" / (name + ".gz"))
    raw[500] = (raw[500] + 1) % 10  # one label changed: still a valid IDX file of digits
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte has the official size .* md5 [0-9a-f]{32} .*expected 27ae3e4e09519cfbb04c329615203637"):
        load_mnist(tmp_path, download=False)


def _gzip_of_zeros(path: Path, header: bytes, zeros: int) -> None:
    """A gzip file of ``header`` then ``zeros`` zero bytes, written as a stream (a few hundred KB on disk)."""
    block = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        for _ in range(zeros // len(block)):
            f.write(block)


def test_gzip_bomb_behind_a_valid_header_fails_fast(tmp_path: Path) -> None:
    import time
    import tracemalloc

    bomb = tmp_path / "train-labels-idx1-ubyte.gz"
    _gzip_of_zeros(bomb, struct.pack(">BBBBI", 0, 0, 0x08, 1, 1000), 256 << 20)  # declares 1000 labels, holds 256 MB
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataError, match=r"longer than its header says: more than 1008 bytes uncompressed, expected 1008 for shape \(1000,\)"):
            read_idx(bomb, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 10 and peak < 16 << 20  # never decompressed whole (256 MB)


def test_a_header_declaring_more_than_a_gzip_can_hold_fails_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(struct.pack(">BBBBIII", 0, 0, 0x08, 3, 10**7, 28, 28) + bytes(1000)))
    with pytest.raises(DataError, match=r"declares shape \(10000000, 28, 28\) \(7,840,000,016 bytes\), more than its \d+ compressed bytes can hold"):
        read_idx(p, 3)


@pytest.mark.parametrize("gz", [False, True])
def test_dimensions_whose_product_overflows_int64_are_a_data_error(tmp_path: Path, gz: bool) -> None:
    raw = struct.pack(">BBBBIII", 0, 0, 0x08, 3, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF) + bytes(64)
    p = tmp_path / ("x.gz" if gz else "x")
    p.write_bytes(gzip.compress(raw) if gz else raw)
    expected = 16 + 0xFFFFFFFF**3  # beyond int64: numpy's product would wrap around
    assert expected > 2**63
    message = (r"declares shape \(4294967295, 4294967295, 4294967295\)" if gz
               else rf"is truncated: 80 bytes, expected {expected} for shape \(4294967295, 4294967295, 4294967295\)")
    with pytest.raises(DataError, match=message):
        read_idx(p, 3)


def test_a_plain_file_longer_than_its_header_and_a_link_to_dev_zero(tmp_path: Path) -> None:
    p = tmp_path / "labels"
    p.write_bytes(idx_bytes(np.zeros(5)) + b"\x00")
    with pytest.raises(DataError, match=r"longer than its header says: 14 bytes, expected 13 for shape \(5,\)"):
        read_idx(p, 1)
    z = tmp_path / "zero"
    z.symlink_to("/dev/zero")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(z)
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:  # 4 GB of zeros on no disk: the header is refused unread
        f.write(struct.pack(">BBBBI", 0, 0, 0x08, 1, 10))
        f.truncate(4 << 30)
    with pytest.raises(DataError, match=r"longer than its header says: 4294967296 bytes, expected 18 for shape \(10,\)"):
        read_idx(sparse, 1)
