"""The layout of a run directory, its config.json record, and the lock that keeps one process per run.

A run lives in ``runs/RECIPE-<time>/``::

    config.json       recipe name, resolved recipe config, seed, threads, device, data_dir,
                      checkpoint_every, log_every, argv
    metrics.jsonl     one JSON object per logged step (every ``log_every`` steps; NaN -> null)
    results.json      final results (whatever the recipe returned, plus tables; NaN -> null);
                      written last: its presence marks a finished run
    results.md        the same as markdown tables
    *.png             figures the recipe and the runner saved
    checkpoint-<N>/   tensors.safetensors + state.json + manifest.json (N = global step)
    LATEST            the name of the newest verified checkpoint
    .lock             held (flock) by the process running the run; holds its pid
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

from hyperdnn.config import from_dict, to_dict
from hyperdnn.errors import CheckpointError, ConfigError
from hyperdnn.experiments.files import read_small

CONFIG, METRICS, RESULTS, RESULTS_MD, LOCK = "config.json", "metrics.jsonl", "results.json", "results.md", ".lock"


# ----------------------------------------------------------------------------- the recipe config codec
# A recipe config is a plain dataclass; hyperdnn.config's to_dict/from_dict (the one codec
# of every config in the library) follow its fields' type hints.


def config_to_json(config: Any) -> dict[str, Any]:
    """A recipe config dataclass as a JSON object (tuples as lists)."""
    return to_dict(config) if is_dataclass(config) else dict(config)


def config_from_json(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a recipe config dataclass from config.json (lists back to tuples, by the type hints)."""
    return from_dict(cls, data)


# ----------------------------------------------------------------------------- making and reading


def make_run_dir(out_dir: Path, recipe: str) -> Path:
    """Create ``out_dir/RECIPE-<YYYYmmdd-HHMMSS>`` (with a suffix if taken).

    Raises:
        ConfigError: ``out_dir`` cannot be created or written to.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = out_dir / f"{recipe}-{stamp}"
    path, i = base, 1
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                path.mkdir()
                return path
            except FileExistsError:
                i += 1
                path = base.with_name(f"{base.name}-{i}")
    except OSError as e:
        raise ConfigError(f"run: cannot create a run directory in {out_dir} ({e}); pass --out-dir to a writable directory") from e


# key -> (types, what is expected); the first four are required
_RUN_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "recipe": ((str,), "a recipe name"),
    "config": ((dict,), "an object of config fields"),
    "seed": ((int,), "an int"),
    "device": ((str,), "'cpu' or 'cuda'"),
    "threads": ((int, type(None)), "an int >= 1"),
    "data_dir": ((str, type(None)), "a path or null"),
    "checkpoint_every": ((int,), "an int >= 0"),
    "log_every": ((int,), "an int >= 1"),
    "world_size": ((int,), "an int >= 1"),
    "skip_nonfinite": ((bool,), "true or false"),
}


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """Read and check ``run_dir/config.json`` as written by :func:`hyperdnn.experiments.runs.run_recipe`.

    Returns:
        The record: ``recipe``, ``config``, ``seed``, ``device`` and, when present,
        ``threads``, ``data_dir``, ``checkpoint_every``, ``log_every``, ``world_size``, ``argv``.

    Raises:
        CheckpointError: missing, not a small regular file, not JSON, not an object, or a key
            missing or of the wrong type (the message names the file and the key).
    """
    path = Path(run_dir) / CONFIG
    try:
        text = read_small(path, what="run --resume")
    except FileNotFoundError:
        raise CheckpointError(f"run --resume: {path} not found (expected a run directory made by 'hyperdnn run')") from None
    try:
        saved = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"run --resume: cannot read {path} ({type(e).__name__}: {e}); the run directory is damaged") from e
    if not isinstance(saved, dict):
        raise CheckpointError(f"run --resume: {path} holds a JSON {type(saved).__name__} (expected an object with keys recipe, config, seed, device)")
    for i, (key, (types, want)) in enumerate(_RUN_KEYS.items()):
        if key not in saved:
            if i < 4:
                raise CheckpointError(f"run --resume: {path} lacks '{key}' (expected {want}; the run directory is damaged)")
            continue
        v = saved[key]
        bad = not isinstance(v, types) or (isinstance(v, bool) and bool not in types)
        if not bad and v is not None and key in ("threads", "log_every", "world_size"):
            bad = v < 1
        elif not bad and key == "checkpoint_every":
            bad = v < 0
        if bad:
            raise CheckpointError(f"run --resume: {path}: '{key}' is {v!r} (expected {want})")
    return saved


# ----------------------------------------------------------------------------- one process per run


class RunLock:
    """An exclusive lock on a run directory (``flock`` on ``run_dir/.lock``), released on close.

    A second process that asks for it fails at once, naming the process that holds it.
    The kernel drops the lock when the holder dies (SIGKILL included), so a stale
    ``.lock`` file never blocks a resume.

    Args:
        run_dir: the run directory.

    Raises:
        CheckpointError: the run is in use by another process.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(self._fd)
                self._fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CheckpointError(
                    f"run: {run_dir} is in use by process {holder} (another 'hyperdnn run' on this run directory); "
                    f"wait for it to finish or stop it (kill -INT {holder} writes a checkpoint), then resume"
                ) from None
            raise CheckpointError(f"run: cannot lock {self.path} ({e})") from e
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        """Release the lock (the file stays; it means nothing once unlocked)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
