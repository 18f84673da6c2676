"""Text classification and language-model tasks from the King James Bible, offline.

The corpus (``<data>/kjv/kjv.txt.gz``) prints a heading ``Book chapter`` before each
chapter and one verse per line, so every verse has its book. From it:

- ``testament``: Old or New Testament (2 classes);
- ``genre``: the ten usual genres of the books (law, history, wisdom and poetry,
  major prophets, minor prophets, gospels, acts, Pauline epistles, general
  epistles, apocalyptic);
- ``book-<genre>``: which book within a genre, for each genre of two books or more;
- per-book verse lists for language-model adaptation (:func:`kjv_books`).

Every task has a one-sentence description (the Text-to-LoRA condition). The
split is by position: every 10th verse of each book is held out for testing.
"""

from __future__ import annotations

import gzip
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError, DataError

__all__ = ["GENRES", "TextTask", "kjv_books", "kjv_path", "kjv_tasks"]

#: genre -> its books, in canonical order (Hebrews counted with the general epistles).
GENRES: dict[str, tuple[str, ...]] = {
    "law": ("Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy"),
    "history": ("Joshua", "Judges", "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles",
                "2 Chronicles", "Ezra", "Nehemiah", "Esther"),
    "wisdom and poetry": ("Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon"),
    "major prophets": ("Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel"),
    "minor prophets": ("Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah",
                       "Haggai", "Zechariah", "Malachi"),
    "gospels": ("Matthew", "Mark", "Luke", "John"),
    "acts": ("Acts",),
    "Pauline epistles": ("Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians", "Philippians",
                         "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus",
                         "Philemon"),
    "general epistles": ("Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude"),
    "apocalyptic": ("Revelation",),
}
_OLD = {b for g in ("law", "history", "wisdom and poetry", "major prophets", "minor prophets") for b in GENRES[g]}
_HEADING = re.compile(r"^(\S.*?) (\d+)$")
_VERSE = re.compile(r"^\s+(\d+) (.*)$")


@dataclass(frozen=True)
class TextTask:
    """A text classification task.

    Attributes:
        name: short id (``"testament"``, ``"book-gospels"``).
        description: one sentence saying what the task is (the Text-to-LoRA condition).
        classes: the label names; label ``i`` is ``classes[i]``.
        train_texts: the training examples.
        train_labels: their labels.
        test_texts: the held-out examples.
        test_labels: their labels.
    """

    name: str
    description: str
    classes: tuple[str, ...]
    train_texts: tuple[str, ...]
    train_labels: tuple[int, ...]
    test_texts: tuple[str, ...]
    test_labels: tuple[int, ...]


def kjv_path(data_dir: str | Path | None = None) -> Path:
    """``<data_dir>/kjv/kjv.txt.gz`` (default ``$HYPERDNN_DATA``)."""
    root = data_dir if data_dir is not None else os.environ.get("HYPERDNN_DATA")
    if root is None:
        raise DataError("kjv_path: give data_dir or set HYPERDNN_DATA to the directory holding kjv/kjv.txt.gz")
    p = Path(root) / "kjv" / "kjv.txt.gz"
    if not p.is_file():
        raise DataError(f"kjv_path: no kjv/kjv.txt.gz under {str(root)!r}")
    return p


def kjv_books(data_dir: str | Path | None = None) -> dict[str, list[str]]:
    """``{book: [verse text, ...]}`` for the 66 books, in order (verse numbers dropped)."""
    books: dict[str, list[str]] = {}
    current: list[str] | None = None
    with gzip.open(kjv_path(data_dir), "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            m = _VERSE.match(line)
            if m and current is not None:
                current.append(m.group(2))
                continue
            h = _HEADING.match(line)
            if h:
                current = books.setdefault(h.group(1), [])
    known = {b for g in GENRES.values() for b in g}
    if set(books) != known:
        raise DataError(f"kjv_books: the corpus's books do not match the 66 expected (odd: {sorted(set(books) ^ known)[:5]})")
    return books


def _split(verses: list[str]) -> tuple[list[str], list[str]]:
    return [v for i, v in enumerate(verses) if i % 10 != 9], [v for i, v in enumerate(verses) if i % 10 == 9]


def _task(name: str, description: str, classes: list[str], members: dict[str, list[str]], books: dict[str, list[str]],
          per_class: int | None, test_per_class: int | None, rng: random.Random) -> TextTask:
    splits = []
    for which in (0, 1):
        texts, labels = [], []
        cap = per_class if which == 0 else test_per_class
        for label, cls in enumerate(classes):
            pool = [v for b in members[cls] for v in _split(books[b])[which]]
            if cap is not None and len(pool) > cap:
                pool = rng.sample(pool, cap)
            texts += pool
            labels += [label] * len(pool)
        order = list(range(len(texts)))
        rng.shuffle(order)
        splits.append((tuple(texts[i] for i in order), tuple(labels[i] for i in order)))
    return TextTask(name, description, tuple(classes), *splits[0], *splits[1])


def kjv_tasks(data_dir: str | Path | None = None, *, per_class: int | None = 200, test_per_class: int | None = 100,
              seed: int = 0) -> list[TextTask]:
    """The KJV classification tasks: testament, genre, and book within each genre of 2+ books.

    Args:
        data_dir: holds ``kjv/kjv.txt.gz`` (default ``$HYPERDNN_DATA``).
        per_class: training verses drawn per class (None: all).
        test_per_class: test verses per class (None: all).
        seed: the draw.

    Returns:
        10 tasks: ``testament``, ``genre``, then ``book-<genre>`` for the 8 genres with several books.
    """
    for n, v in (("per_class", per_class), ("test_per_class", test_per_class)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise ConfigError(f"kjv_tasks: {n} must be a positive int or None (got {v!r})")
    books = kjv_books(data_dir)
    rng = random.Random(seed)
    all_books = [b for g in GENRES.values() for b in g]
    tasks = [
        _task("testament", "Say whether a verse comes from the Old Testament or the New Testament.",
              ["Old Testament", "New Testament"],
              {"Old Testament": [b for b in all_books if b in _OLD], "New Testament": [b for b in all_books if b not in _OLD]},
              books, per_class, test_per_class, rng),
        _task("genre", "Name the kind of biblical book a verse comes from: law, history, wisdom and poetry, major "
              "prophets, minor prophets, gospels, acts, Pauline epistles, general epistles or apocalyptic.",
              list(GENRES), {g: list(bs) for g, bs in GENRES.items()}, books, per_class, test_per_class, rng),
    ]
    for genre, members in GENRES.items():
        if len(members) < 2:
            continue
        slug = genre.lower().replace(" ", "-")
        tasks.append(_task(f"book-{slug}", f"Name which book of the {genre} a verse comes from: {', '.join(members)}.",
                           list(members), {b: [b] for b in members}, books, per_class, test_per_class, rng))
    return tasks
