"""What a person reads of a run: progress on stderr, results tables, results.md and results.json."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperdnn.experiments.files import write_atomic


def jsonable(v: Any) -> Any:
    """Tensors and numpy values as Python numbers or lists."""
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def json_safe(v: Any) -> Any:
    """``v`` with tensors/numpy as Python values and NaN/inf as None, so that ``allow_nan=False`` holds."""
    v = jsonable(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


@dataclass
class Table:
    """A results table: printed at the end, written to results.md and results.json."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    note: str = ""

    def markdown(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return "nan" if math.isnan(v) else f"{v:.4g}"
            return str(v)

        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


def write_results(run_dir: Path, recipe: str, header: str, results: dict[str, Any], tables: list[Table]) -> str:
    """Write results.md, then results.json (last: it marks a finished run). Returns the tables as markdown."""
    tables_md = "\n\n".join(t.markdown() for t in tables)
    (run_dir / "results.md").write_text(header + tables_md + "\n")
    payload = json_safe({"recipe": recipe, "results": results, "tables": [asdict(t) for t in tables]})
    write_atomic(run_dir / "results.json", json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")
    return tables_md


def _short(v: Any) -> str:
    v = jsonable(v)
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Progress:
    """Progress of a run on stderr over ``total`` global steps.

    On a terminal: a tqdm bar. Elsewhere (a log file, CI): plain lines, one when a
    string-valued metric changes (a new phase, task or model) and one every tenth of the
    run, never carriage returns. ``quiet``: only the lines of a new phase/task/model.

    Args:
        name: shown at the start of each line (the recipe).
        total: global steps of the whole run.
        initial: steps already done (a resumed run).
        quiet: ``--no-progress``.
        stream: where to write (default ``sys.stderr``).
    """

    def __init__(self, name: str, total: int, initial: int = 0, quiet: bool = False, stream: Any = None) -> None:
        self.name, self.total, self.n, self.quiet = name, max(int(total), 1), initial, quiet
        self.stream = stream or sys.stderr
        self.every = max(1, self.total // 10)
        self.started = time.perf_counter()
        self.phase: dict[str, str] = {}
        self.bar = None
        if not quiet and _isatty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True, file=self.stream)

    def update(self, n: int, metrics: dict[str, Any]) -> None:
        """``n`` more steps done; ``metrics`` are the step's values (strings name the phase/task)."""
        self.n += n
        if self.bar is not None:
            if metrics:
                self.bar.set_postfix({k: _short(v) for k, v in metrics.items()}, refresh=False)
            self.bar.update(n)
            return
        phase = {k: str(v) for k, v in metrics.items() if isinstance(v, str)}
        changed = bool(phase) and phase != self.phase
        self.phase = phase or self.phase
        if changed or (not self.quiet and self.n % self.every == 0):
            values = " ".join(f"{k}={_short(v)}" for k, v in metrics.items())
            pct = 100.0 * self.n / self.total
            print(f"{self.name}: step {self.n}/{self.total} ({pct:.0f}%) {values} [{time.perf_counter() - self.started:.1f} s]", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
