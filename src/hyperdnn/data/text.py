"""Character-level text corpora for language modelling: load, split, batch for truncated BPTT.

The file is plain text or gzip (recognised by its first bytes, not its name),
decoded as UTF-8. The vocabulary is every distinct character of the whole file
(as usual for character-level corpora such as enwik8), sorted by code point.
The split is contiguous: the first 90 % of the characters for training, the
next 5 % for validation, the last 5 % for test (enwik8's convention, which the
bundled King James Bible corpus suggests in its README).

Example:
    >>> corpus = load_char_corpus("kjv.txt.gz")
    >>> stream = batchify(corpus.train, batch_size=64)      # (L, 64)
    >>> for x, y in bptt_batches(stream, seq_len=100):      # (T, 64) each, y = x shifted by one
    ...     ...
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, DataError, HDTypeError, ShapeError

__all__ = ["CharCorpus", "batchify", "bptt_batch", "bptt_batches", "load_char_corpus", "num_bptt_batches"]

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class CharCorpus:
    """A character corpus split into train/valid/test index streams.

    Attributes:
        train, valid, test (Tensor): int64 character indices, (N_split,).
        vocab (tuple[str, ...]): the characters; index i is ``vocab[i]``.
        path (str): the file it was read from.
    """

    train: Tensor
    valid: Tensor
    test: Tensor
    vocab: tuple[str, ...]
    path: str

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self.vocab)

    def encode(self, text: str) -> Tensor:
        """Indices of ``text``'s characters, (len(text),); DataError for a character outside the vocab."""
        table = {ch: i for i, ch in enumerate(self.vocab)}
        missing = sorted({ch for ch in text if ch not in table})
        if missing:
            raise DataError(f"CharCorpus: characters not in the vocabulary: {missing[:10]!r}")
        return torch.tensor([table[ch] for ch in text], dtype=torch.long)

    def decode(self, indices: Tensor) -> str:
        """The text of a 1-d tensor of indices."""
        return "".join(self.vocab[int(i)] for i in indices.reshape(-1))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"load_char_corpus: no such file {str(path)!r} (give the path of a plain or gzip text file)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"load_char_corpus: cannot read {str(path)!r}: {e}") from e
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a damaged stream is zlib.error
            raise DataError(
                f"load_char_corpus: {str(path)!r} starts like gzip but cannot be decompressed "
                f"(truncated or corrupted?): {e}"
            ) from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"load_char_corpus: {str(path)!r} is not UTF-8 text: {e}") from e


def load_char_corpus(
    path: str | os.PathLike[str], split: tuple[float, float, float] = (0.9, 0.05, 0.05)
) -> CharCorpus:
    """Read a text file (plain or gzip) into a :class:`CharCorpus`.

    Args:
        path (str | PathLike): the text file.
        split (tuple[float, float, float], default (0.9, 0.05, 0.05)): fractions of the
            characters for train, valid, test, in file order; must be > 0 and sum to 1.

    Returns:
        CharCorpus with int64 index streams.

    Raises:
        DataError: the file is missing, unreadable, a damaged gzip, not UTF-8, empty,
            or too short for every split to hold at least two characters.
        ConfigError: bad split fractions.
        HDTypeError: split is not a tuple/list of numbers.
    """
    if not isinstance(split, (tuple, list)) or any(isinstance(f, bool) or not isinstance(f, (int, float)) for f in split):
        raise HDTypeError(
            f"load_char_corpus: split must be a tuple of three numbers (got {type(split).__name__} {split!r})"
        )
    if len(split) != 3 or any(f <= 0 for f in split) or not math.isclose(sum(split), 1.0):
        raise ConfigError(f"load_char_corpus: split must be three fractions > 0 summing to 1 (got {split!r})")
    p = Path(path).expanduser()
    text = _read_text(p)
    if not text:
        raise DataError(f"load_char_corpus: {str(p)!r} holds no text")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,) code points
    alphabet, idx = np.unique(codes, return_inverse=True)
    data = torch.from_numpy(idx.astype(np.int64))  # (N,)
    n = data.numel()
    n_train, n_valid = int(n * split[0]), int(n * split[1])
    parts = (data[:n_train], data[n_train : n_train + n_valid], data[n_train + n_valid :])
    if min(t.numel() for t in parts) < 2:
        raise DataError(
            f"load_char_corpus: {str(p)!r} has {n} characters, too few for split {split} "
            f"(each part needs at least 2)"
        )
    vocab = tuple(chr(int(c)) for c in alphabet)
    return CharCorpus(train=parts[0], valid=parts[1], test=parts[2], vocab=vocab, path=str(p))


def batchify(data: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-d stream into ``batch_size`` contiguous columns, dropping the remainder.

    Args:
        data (Tensor): (N,) indices.
        batch_size (int): B.

    Returns:
        Tensor (N // B, B): column b is ``data[b*L:(b+1)*L]``, so consecutive BPTT
        chunks continue each column's text (the hidden state can be carried over).
    """
    if not isinstance(data, Tensor):
        raise HDTypeError(f"batchify: data must be a Tensor (got {type(data).__name__})")
    if data.dim() != 1:
        raise ShapeError(f"batchify: data must be 1-d (N,) (got {tuple(data.shape)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batchify: batch_size must be an int > 0 (got {batch_size!r})")
    length = data.numel() // batch_size
    if length < 2:
        raise DataError(f"batchify: {data.numel()} characters are too few for batch_size={batch_size} (need 2 per column)")
    return data[: length * batch_size].view(batch_size, length).t().contiguous()  # (L, B)


def num_bptt_batches(stream: Tensor, seq_len: int) -> int:
    """How many chunks :func:`bptt_batches` yields for a (L, B) stream."""
    _check_stream(stream, seq_len)
    return math.ceil((stream.shape[0] - 1) / seq_len)


def bptt_batch(stream: Tensor, index: int, seq_len: int) -> tuple[Tensor, Tensor]:
    """Chunk ``index`` of a (L, B) stream: inputs and next-character targets.

    Returns:
        (x, y), each (T, B) with T = seq_len except for a shorter last chunk;
        ``y[t] = x[t+1]`` within the column's text.
    """
    n = num_bptt_batches(stream, seq_len)
    if isinstance(index, bool) or not isinstance(index, int):
        raise HDTypeError(f"bptt_batch: index must be an int (got {type(index).__name__})")
    if not 0 <= index < n:
        raise ConfigError(f"bptt_batch: index must be in [0, {n}) (got {index})")
    start = index * seq_len
    t = min(seq_len, stream.shape[0] - 1 - start)
    return stream[start : start + t], stream[start + 1 : start + 1 + t]


def bptt_batches(stream: Tensor, seq_len: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Every chunk of a (L, B) stream in order, as (x, y) pairs of (T, B); see :func:`bptt_batch`."""
    for i in range(num_bptt_batches(stream, seq_len)):
        yield bptt_batch(stream, i, seq_len)


def _check_stream(stream: Tensor, seq_len: int) -> None:
    if not isinstance(stream, Tensor) or stream.dim() != 2 or stream.shape[0] < 2:
        shape = tuple(stream.shape) if isinstance(stream, Tensor) else type(stream).__name__
        raise ShapeError(f"bptt: stream must be a (L, B) tensor from batchify with L >= 2 (got {shape})")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0:
        raise ConfigError(f"bptt: seq_len must be an int > 0 (got {seq_len!r})")
