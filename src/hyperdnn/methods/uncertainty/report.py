"""Where a recipe's tables, figures and metric rows go: a run context, or a plain folder.

The recipes' ``run(config, report=...)`` functions write through three calls,
``table(title, headers, rows)``, ``save_figure(fig, name)`` and ``log(**metrics)``,
which ``hyperdnn``'s run context provides; :class:`FolderReport` provides them
for a plain output folder (tables printed and written to ``results.md``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FolderReport", "Report"]


class Report(Protocol):
    """What a recipe writes through (a run context satisfies it)."""

    def table(self, title: str, headers: list[str], rows: list[list[Any]], note: str = "") -> None: ...

    def save_figure(self, fig: Any, name: str) -> Path: ...

    def log(self, **metrics: Any) -> None: ...


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


class FolderReport:
    """Writes tables to ``folder/results.md``, figures to ``folder/<name>.png`` and logs to
    ``folder/metrics.jsonl`` (the folder is made)."""

    def __init__(self, folder: str | Path, echo: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.echo = echo

    def table(self, title: str, headers: list[str], rows: list[list[Any]], note: str = "") -> None:
        lines = [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
        text = "\n".join(lines + (["", note] if note else []) + ["", ""])
        with open(self.folder / "results.md", "a") as f:
            f.write(text)
        if self.echo:
            print(text, flush=True)

    def save_figure(self, fig: Any, name: str) -> Path:
        import matplotlib.pyplot as plt

        path = self.folder / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path

    def log(self, **metrics: Any) -> None:
        with open(self.folder / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics, default=str) + "\n")
