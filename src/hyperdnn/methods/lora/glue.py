"""GLUE tasks through the ``datasets`` library (HyperFormer's benchmark), as :class:`TextTask` values.

Where the user is online, ``glue_task("sst2")`` reads ``nyu-mll/glue`` from the
hub; ``glue_task("sst2", source=path)`` reads a local copy saved with
``DatasetDict.save_to_disk`` (the same columns: ``sentence`` or a sentence pair,
``label`` as a ``ClassLabel``). The test split is GLUE's ``validation`` (its test
labels are hidden).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, DataError
from .kjv import TextTask

__all__ = ["GLUE_TASKS", "glue_task"]

#: task -> (text columns, one-sentence description)
GLUE_TASKS: dict[str, tuple[tuple[str, ...], str]] = {
    "cola": (("sentence",), "Say whether an English sentence is grammatically acceptable."),
    "sst2": (("sentence",), "Say whether the sentiment of a movie review sentence is positive or negative."),
    "mrpc": (("sentence1", "sentence2"), "Say whether two news sentences are paraphrases of each other."),
    "qqp": (("question1", "question2"), "Say whether two Quora questions ask the same thing."),
    "stsb": (("sentence1", "sentence2"), "Rate how similar in meaning two sentences are."),
    "mnli": (("premise", "hypothesis"), "Say whether a premise entails, contradicts or is neutral to a hypothesis."),
    "qnli": (("question", "sentence"), "Say whether a sentence contains the answer to a question."),
    "rte": (("sentence1", "sentence2"), "Say whether the first sentence entails the second."),
    "wnli": (("sentence1", "sentence2"), "Say whether a sentence with a pronoun replaced is entailed by the original."),
}


def glue_task(name: str, *, source: str | Path | None = None, max_train: int | None = None,
              max_test: int | None = None, sep: str = " [SEP] ") -> TextTask:
    """One GLUE classification task.

    Args:
        name: a GLUE task (``"sst2"``, ``"mrpc"``, ...; ``stsb`` is regression and refused).
        source: None (the hub's ``nyu-mll/glue``) or a local directory from ``save_to_disk``.
        max_train: keep the first training examples only (None: all).
        max_test: keep the first test examples only (None: all).
        sep: joins the two sentences of a pair task into one text.
    """
    if name not in GLUE_TASKS:
        raise ConfigError(f"glue_task: unknown task {name!r}; expected one of {sorted(GLUE_TASKS)}")
    if name == "stsb":
        raise ConfigError("glue_task: stsb is a regression task; choose a classification task")
    import datasets

    if source is None:
        data = datasets.load_dataset("nyu-mll/glue", name)
    else:
        if not Path(source).is_dir():
            raise DataError(f"glue_task: no dataset directory {str(source)!r} (save one with DatasetDict.save_to_disk)")
        data = datasets.load_from_disk(str(source))
    columns, description = GLUE_TASKS[name]
    test_split = "validation_matched" if name == "mnli" else "validation"
    for split in ("train", test_split):
        if split not in data:
            raise DataError(f"glue_task: {name} has no {split!r} split (has {list(data)})")
        missing = [c for c in (*columns, "label") if c not in data[split].column_names]
        if missing:
            raise DataError(f"glue_task: {name}/{split} lacks the columns {missing} (has {data[split].column_names})")
    feature = data["train"].features["label"]
    classes = tuple(feature.names) if hasattr(feature, "names") else tuple(str(i) for i in sorted(set(data["train"]["label"])))

    def rows(split: str, cap: int | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
        d = data[split]
        if cap is not None:
            d = d.select(range(min(cap, len(d))))
        cols = [d[c] for c in columns]
        texts = tuple(sep.join(str(v) for v in parts) for parts in zip(*cols))
        return texts, tuple(int(v) for v in d["label"])

    return TextTask(name, description, classes, *rows("train", max_train), *rows(test_split, max_test))
