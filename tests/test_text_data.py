"""Character corpus loader: reading, split, vocab, BPTT batching, errors."""

from __future__ import annotations

import gzip
import math
import random
import zlib
from collections import Counter
from pathlib import Path

import pytest
import torch

from hyperdnn.data.text import batchify, bptt_batch, bptt_batches, load_char_corpus, num_bptt_batches
from hyperdnn.errors import ConfigError, DataError, HDTypeError, ShapeError

TEXT = "In the beginning God created the heaven and the earth.\n" * 7 + "Amen. é"


@pytest.fixture(params=["plain", "gzip"])
def corpus_file(tmp_path, request):
    if request.param == "plain":
        path = tmp_path / "c.txt"
        path.write_text(TEXT, encoding="utf-8")
    else:
        path = tmp_path / "c.dat"  # gzip recognised by content, not by name
        path.write_bytes(gzip.compress(TEXT.encode("utf-8")))
    return path


def test_load_split_vocab_roundtrip(corpus_file):
    c = load_char_corpus(corpus_file)
    n = len(TEXT)
    assert c.vocab == tuple(sorted(set(TEXT)))
    assert c.train.numel() == int(0.9 * n) and c.valid.numel() == int(0.05 * n)
    assert c.train.numel() + c.valid.numel() + c.test.numel() == n
    assert c.decode(torch.cat([c.train, c.valid, c.test])) == TEXT  # contiguous, in order
    assert torch.equal(c.encode(TEXT[:20]), c.train[:20])


def test_missing_empty_and_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_char_corpus(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="no text"):
        load_char_corpus(tmp_path / "empty.txt")
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="no text"):
        load_char_corpus(tmp_path / "empty.gz")
    (tmp_path / "short.txt").write_text("abc")
    with pytest.raises(DataError, match="too few"):
        load_char_corpus(tmp_path / "short.txt")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa" * 10)
    with pytest.raises(DataError, match="UTF-8"):
        load_char_corpus(tmp_path / "bad.txt")
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(TEXT.encode())[:20])
    with pytest.raises(DataError, match="gzip"):
        load_char_corpus(tmp_path / "trunc.gz")
    with pytest.raises(ConfigError, match="split"):
        load_char_corpus(tmp_path / "short.txt", split=(0.5, 0.5, 0.5))
    with pytest.raises(HDTypeError, match="split"):
        load_char_corpus(tmp_path / "short.txt", split=None)
    with pytest.raises(HDTypeError, match="split"):
        load_char_corpus(tmp_path / "short.txt", split=(True, 0.5, 0.5))


def test_gzip_corrupted_in_the_middle_is_a_data_error(tmp_path):
    rnd = random.Random(0)
    text = "".join(rnd.choice("abcdefghij klmnop\n") for _ in range(20000)).encode()
    raw = bytearray(gzip.compress(text, mtime=0))
    mid = len(raw) // 2
    raw[mid : mid + 16] = b"\xff" * 16  # damage the deflate stream, keep header and trailer
    path = tmp_path / "mid.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="gzip but cannot be decompressed"):
        load_char_corpus(path)


@pytest.mark.parametrize(
    "error",
    [zlib.error("Error -3 while decompressing data: invalid distance too far back"),
     gzip.BadGzipFile("CRC check failed"), EOFError("Compressed file ended before the end-of-stream marker")],
)
def test_every_gzip_failure_is_a_data_error(tmp_path, monkeypatch, error):
    # which of the three a damaged file raises depends on where it is damaged (and on zlib's version):
    # zlib.error used to escape as it is
    path = tmp_path / "c.gz"
    path.write_bytes(gzip.compress(TEXT.encode()))

    def fail(data):
        raise error

    monkeypatch.setattr("hyperdnn.data.text.gzip.decompress", fail)
    with pytest.raises(DataError, match="gzip but cannot be decompressed") as info:
        load_char_corpus(path)
    assert info.value.__cause__ is error


def test_unreadable_plain_file_message_is_not_about_gzip(tmp_path, monkeypatch):
    path = tmp_path / "locked.txt"
    path.write_text(TEXT)

    def deny(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(DataError, match="cannot read") as info:
        load_char_corpus(path)
    assert "gzip" not in str(info.value) and isinstance(info.value.__cause__, PermissionError)


def test_batchify_and_bptt_match_a_loop():
    data = torch.arange(103)
    stream = batchify(data, 4)  # 25 per column, 3 dropped
    assert stream.shape == (25, 4)
    for b in range(4):
        assert torch.equal(stream[:, b], torch.arange(25 * b, 25 * (b + 1)))
    chunks = list(bptt_batches(stream, 10))
    assert len(chunks) == num_bptt_batches(stream, 10) == 3
    assert [x.shape[0] for x, _ in chunks] == [10, 10, 4]  # last chunk shorter, targets stay in range
    xs = torch.cat([x for x, _ in chunks])
    ys = torch.cat([y for _, y in chunks])
    assert torch.equal(xs, stream[:-1]) and torch.equal(ys, stream[1:])
    x1, y1 = bptt_batch(stream, 1, 10)
    assert torch.equal(x1, chunks[1][0]) and torch.equal(y1, chunks[1][1])


def test_batching_errors():
    with pytest.raises(ShapeError):
        batchify(torch.zeros(3, 3), 2)
    with pytest.raises(ConfigError):
        batchify(torch.arange(10), 0)
    with pytest.raises(DataError):
        batchify(torch.arange(10), 8)
    with pytest.raises(ConfigError):
        list(bptt_batches(batchify(torch.arange(10), 2), 0))
    with pytest.raises(ConfigError):
        bptt_batch(batchify(torch.arange(10), 2), 5, 2)
    with pytest.raises(HDTypeError, match="index"):
        bptt_batch(batchify(torch.arange(10), 2), True, 2)
    with pytest.raises(HDTypeError, match="index"):
        bptt_batch(batchify(torch.arange(10), 2), 1.0, 2)


def test_char_lm_recipe_end_to_end_on_a_small_corpus(tmp_path):
    from hyperdnn.experiments.recipes.char_lm import MODELS, Config
    from hyperdnn.experiments.runs import run_recipe

    corpus = tmp_path / "tiny.txt.gz"
    corpus.write_bytes(gzip.compress((TEXT * 10).encode()))
    cfg = Config(corpus=str(corpus), hidden=16, hyper_size=8, embed_dim=8, seq_len=16, batch_size=8,
                 steps=60, lr=1e-2, eval_every=30, eval_batch=2)
    res = run_recipe("char-lm", cfg, threads=1, out_dir=tmp_path / "runs", show_progress=False, print_tables=False)
    assert set(res.results["models"]) == set(MODELS)
    # every model must beat the best context-free predictor: the unigram entropy of the text
    train = load_char_corpus(corpus).decode(load_char_corpus(corpus).train)
    counts = Counter(train)
    unigram_bits = -sum(n / len(train) * math.log2(n / len(train)) for n in counts.values())
    for kind, r in res.results["models"].items():
        assert 0 < r["test_bpc"] < unigram_bits - 0.5, (kind, r["test_bpc"], unigram_bits)
    with pytest.raises(DataError, match="kjv"):
        run_recipe("char-lm", Config(steps=1), threads=1, data_dir=tmp_path, out_dir=tmp_path / "runs",
                   show_progress=False, print_tables=False)
