"""Run directories, checkpoints and exact resume for the ``hyperdnn`` command.

A run lives in ``runs/RECIPE-<time>/``::

    config.json       recipe name, resolved recipe config, seed, threads, device, data_dir,
                      checkpoint_every, log_every, argv
    metrics.jsonl     one JSON object per logged step (every ``log_every`` steps; NaN -> null)
    results.json      final results (whatever the recipe returned, plus tables; NaN -> null);
                      written last: its presence marks a finished run
    results.md        the same as markdown tables
    *.png             plots the recipe saved
    checkpoint-<N>/   tensors.safetensors + state.json (N = global step); LATEST names the newest

A recipe's ``run(ctx)`` registers the objects whose state must survive an
interruption (modules, optimizers, generators, dicts of tensors) with
:meth:`RunContext.track`, gets its loop state (a JSON-able dict) from
:meth:`RunContext.restore`, and calls :meth:`RunContext.step_done` after every
optimizer step. The context then writes checkpoints every ``checkpoint_every``
steps (and on Ctrl-C / SIGTERM, at the next step boundary), each holding the
tracked objects' states, the loop state, the global step and every RNG state
(python, numpy, torch, CUDA). Resuming restores all of it, so a resumed run ends
with the same weights as an uninterrupted one with the same seed, thread count
and device.

Checkpoints are safetensors + JSON only (never pickle): nested state dicts are
split into a flat ``{key: tensor}`` map and a JSON skeleton that refers to the
tensors by key.

A damaged run directory (config.json, LATEST or a checkpoint unreadable,
malformed or missing) raises :class:`~hyperdnn.errors.CheckpointError` naming
the file and what is wrong; ``--resume`` starts over from step 0 only when
LATEST was never written.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperdnn.errors import CheckpointError, ConfigError, HDTypeError, HyperDNNError
from hyperdnn.experiments.run_checkpoint import (  # noqa: F401  (re-exported)
    _LATEST,
    _load_state_into,
    _set_rng_states,
    flatten_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)

__all__ = [
    "RunContext",
    "RunInterrupted",
    "RunResult",
    "flatten_state",
    "load_checkpoint",
    "latest_checkpoint",
    "make_run_dir",
    "read_run_config",
    "run_recipe",
    "save_checkpoint",
    "unflatten_state",
]



class RunInterrupted(KeyboardInterrupt):
    """Raised at a step boundary after Ctrl-C / SIGTERM, once the checkpoint is written."""

    def __init__(self, run_dir: Path, step: int) -> None:
        super().__init__(f"interrupted at step {step}; resume with: hyperdnn run --resume {run_dir}")
        self.run_dir = run_dir
        self.step = step


# ----------------------------------------------------------------------------- the run context


@dataclass
class _Table:
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


@dataclass
class RunContext:
    """What a recipe's ``run(ctx)`` gets: its config, where to write, and the checkpoint machinery.

    Attributes:
        recipe: the recipe's name.
        config: the resolved config (an instance of the recipe's config dataclass).
        run_dir: the run directory (exists).
        seed: the run's seed; global RNGs are already seeded with it.
        device: ``torch.device`` to train on.
        threads: torch CPU threads in use.
        data_dir: ``--data-dir`` as an absolute path, or None (the data loaders then use
            ``HYPERDNN_DATA`` or the cache directory).
        checkpoint_every: write a checkpoint every this many global steps (0 = only at
            explicit :meth:`checkpoint` calls, on interrupt and at the end).
        show_progress: draw a tqdm bar.
        log_every: :meth:`step_done` writes its metrics to metrics.jsonl every this many steps.
    """

    recipe: str
    config: Any
    run_dir: Path
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    threads: int = 1
    data_dir: Path | None = None
    checkpoint_every: int = 500
    show_progress: bool = True
    global_step: int = 0
    _objects: dict[str, Any] = field(default_factory=dict)
    _state: dict[str, Any] | None = None
    _resume_from: Path | None = None
    _interrupted: bool = False
    _bar: Any = None
    _tables: list[_Table] = field(default_factory=list)
    log_every: int = 1

    # -- checkpointed state ------------------------------------------------------------

    def track(self, **objects: Any) -> None:
        """Register objects whose state goes into every checkpoint.

        Args:
            **objects: ``name=obj`` with obj an ``nn.Module``, an ``Optimizer``, a
                ``torch.Generator``, a ``dict[str, Tensor]`` (restored in place) or any object
                with ``state_dict()`` / ``load_state_dict()``. Register them before :meth:`restore`.
        """
        self._objects.update(objects)

    def restore(self, default: dict[str, Any]) -> dict[str, Any]:
        """The loop state: ``default`` on a fresh run, the checkpointed one on resume.

        On resume this also loads every tracked object, the global step and all RNG
        states. Returns the dict the recipe should mutate in place (it is what
        :meth:`step_done` and :meth:`checkpoint` save).
        """
        if self._resume_from is None:
            self._state = default
            return default
        ckpt = load_checkpoint(self._resume_from)
        jpath = self._resume_from / "state.json"
        meta = ckpt["meta"]
        for key in ("global_step", "metrics_bytes"):
            value = meta.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError(f"runs: {jpath}: meta.{key} is {value!r} (expected an int >= 0; the checkpoint is damaged)")
        if self._resume_from.name != f"checkpoint-{meta['global_step']}":
            raise CheckpointError(f"runs: {jpath} says global step {meta['global_step']}, but its directory is {self._resume_from.name}")
        if not isinstance(ckpt["state"], dict):
            raise CheckpointError(f"runs: {jpath}: the loop state is a {type(ckpt['state']).__name__} (expected a dict)")
        missing = set(self._objects) ^ set(ckpt["objects"])
        if missing:
            raise CheckpointError(f"runs: checkpoint {self._resume_from} tracks {sorted(ckpt['objects'])} but the recipe tracks {sorted(self._objects)}")
        for name, obj in self._objects.items():
            _load_state_into(obj, ckpt["objects"][name], name)
        self.global_step = meta["global_step"]
        _truncate(self.run_dir / "metrics.jsonl", meta["metrics_bytes"])
        try:
            _set_rng_states(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"runs: {jpath}: the saved RNG states cannot be restored ({type(e).__name__}: {e})") from e
        self._state = ckpt["state"]
        if self._bar is not None:
            self._bar.n = self.global_step
            self._bar.refresh()
        return self._state

    def checkpoint(self) -> Path:
        """Write a checkpoint now (at a step boundary) and point LATEST at it."""
        if self._state is None:
            raise ConfigError("RunContext: call restore(default_state) before checkpoint()")
        metrics = self.run_dir / "metrics.jsonl"
        meta = {"global_step": self.global_step, "metrics_bytes": metrics.stat().st_size if metrics.exists() else 0, "time": time.time()}
        name = f"checkpoint-{self.global_step}"
        target = self.run_dir / name
        try:
            previous = latest_checkpoint(self.run_dir)
        except CheckpointError:  # a damaged LATEST is replaced below
            previous = None
        # already saved at this step (e.g. periodic + end of task): keep it, but LATEST must name it
        if not target.exists():
            save_checkpoint(target, self._objects, self._state, meta)
        tmp = self.run_dir / (_LATEST + ".tmp")
        tmp.write_text(name)
        os.replace(tmp, self.run_dir / _LATEST)
        if previous is not None and previous != target:
            shutil.rmtree(previous, ignore_errors=True)
        return target

    def step_done(self, n: int = 1, **metrics: Any) -> None:
        """Call after each optimizer step: counts, logs, updates the bar, checkpoints when due.

        Args:
            n: steps done (default 1).
            **metrics: per-step values (e.g. ``loss=0.1, task=2``): shown on the progress bar and
                written to metrics.jsonl every ``log_every`` steps (before any checkpoint, so a
                resumed run's metrics.jsonl equals an uninterrupted run's).

        Raises:
            RunInterrupted: after Ctrl-C / SIGTERM, once the checkpoint is on disk.
        """
        self.global_step += n
        if metrics and self.log_every and self.global_step % self.log_every == 0:
            self.log(**metrics)
            if self._bar is not None:
                self._bar.set_postfix({k: (f"{_jsonable(v):.4g}" if isinstance(_jsonable(v), float) else v) for k, v in metrics.items()}, refresh=False)
        if self._bar is not None:
            self._bar.update(n)
        if self._interrupted:
            self.checkpoint()
            raise RunInterrupted(self.run_dir, self.global_step)
        if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
            self.checkpoint()

    # -- outputs -------------------------------------------------------------------------

    def progress(self, total: int, desc: str | None = None) -> None:
        """Start the progress bar over ``total`` global steps (resumed runs start where they stopped)."""
        if not self.show_progress:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, initial=self.global_step, desc=desc or self.recipe, dynamic_ncols=True, file=sys.stderr)

    def log(self, **metrics: Any) -> None:
        """Append ``{"step": global_step, **metrics}`` to metrics.jsonl (NaN and infinities as null)."""
        row = _json_safe({"step": self.global_step, **metrics})
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row, allow_nan=False, default=str) + "\n")

    def table(self, title: str, headers: list[str], rows: list[list[Any]], note: str = "") -> None:
        """Add a results table (printed at the end and written to results.md / results.json)."""
        self._tables.append(_Table(title, list(headers), [[_jsonable(v) for v in r] for r in rows], note))

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``run_dir/name.png`` and close it."""
        import matplotlib.pyplot as plt

        path = self.run_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path

    def close_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _json_safe(v: Any) -> Any:
    """``v`` with tensors/numpy as Python values and NaN/inf as None, so that ``allow_nan=False`` holds."""
    v = _jsonable(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _truncate(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size > size:
        with open(path, "r+b") as f:
            f.truncate(size)


# ----------------------------------------------------------------------------- running a recipe


@dataclass
class RunResult:
    """What :func:`run_recipe` returns: the run directory and the recipe's results dict."""

    run_dir: Path
    results: dict[str, Any]
    tables_markdown: str


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


def _config_to_json(config: Any) -> dict[str, Any]:
    if is_dataclass(config):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    return dict(config)


def config_from_json(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a recipe config dataclass from config.json (lists back to tuples)."""
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ConfigError(f"runs: config.json has fields {sorted(unknown)} that {cls.__name__} does not know")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return cls(**kwargs)


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
}


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """Read and check ``run_dir/config.json`` as written by :func:`run_recipe`.

    Returns:
        The record: ``recipe``, ``config``, ``seed``, ``device`` and, when present,
        ``threads``, ``data_dir``, ``checkpoint_every``, ``log_every``, ``argv``.

    Raises:
        CheckpointError: missing, not JSON, not an object, or a key missing or of the wrong type
            (the message names the file and the key).
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"run --resume: {path} not found (expected a run directory made by 'hyperdnn run')")
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
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
        if not bad and key == "threads" and v is not None:
            bad = v < 1
        elif not bad and key == "checkpoint_every":
            bad = v < 0
        elif not bad and key == "log_every":
            bad = v < 1
        if bad:
            raise CheckpointError(f"run --resume: {path}: '{key}' is {v!r} (expected {want})")
    return saved


def _device(name: str, saved_in: Path | None = None) -> torch.device:
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ConfigError(f"run: device must be 'cpu' or 'cuda' (or 'cuda:N') (got {name!r})")
    if name.startswith("cuda"):
        problem = None
        if not torch.cuda.is_available():
            problem = f"torch.cuda.is_available() is False (torch {torch.__version__})"
        elif ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
            problem = f"only {torch.cuda.device_count()} CUDA device(s) are visible"
        if problem is not None:
            if saved_in is not None:
                raise ConfigError(
                    f"run --resume: the run was made on device {name!r} ({saved_in}), but here {problem}; resume it where "
                    f"{name!r} exists (the device cannot change on resume: the result would differ from the uninterrupted run's)"
                )
            raise ConfigError(f"run: device {name!r} asked for but {problem}")
    return torch.device(name)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HDTypeError(f"run: {name} must be an int (got {type(value).__name__} {value!r})")
    if value < low:
        raise ConfigError(f"run: {name} must be >= {low} (got {value})")
    return value


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resume_checkpoint(run_dir: Path) -> Path | None:
    """LATEST's checkpoint; None (with a note) only when LATEST was never written and no checkpoint exists."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        return ckpt
    stray = sorted(p.name for p in run_dir.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name))
    if stray:
        raise CheckpointError(
            f"run --resume: {run_dir} has no LATEST file but holds {stray}; write the name of the newest one into "
            f"{run_dir / _LATEST} to resume from it (nothing is started over on a guess)"
        )
    print(f"note: {run_dir} has no checkpoint yet (LATEST was never written): starting over from step 0 in the same directory", file=sys.stderr)
    return None


def run_recipe(
    recipe: Any,
    config: Any = None,
    *,
    seed: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    checkpoint_every: int | None = None,
    log_every: int | None = None,
    show_progress: bool = True,
    print_tables: bool = True,
    argv: list[str] | None = None,
) -> RunResult:
    """Run a registered recipe into a run directory (or resume one).

    Everything is checked before the run directory is made, and a fresh run that fails
    before its first step (bad data, a recipe check) leaves no directory behind.

    Args:
        recipe: a :class:`hyperdnn.experiments.recipes.Recipe` or its name.
        config: an instance of the recipe's config dataclass (default: its defaults).
        seed: seeds python/numpy/torch before the recipe starts (default 0).
        threads: ``torch.set_num_threads`` for the run (default 1; on resume: the run's own,
            or this count with a note).
        device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.
        data_dir: data directory handed to the recipe, stored resolved to an absolute path
            (None: ``HYPERDNN_DATA`` / cache). On resume: the run's own, or this one with a note
            (the data moved; the MNIST loader's md5 check keeps it the same data).
        out_dir: where new run directories are created (default ``runs``).
        resume: an existing run directory to continue from its LATEST checkpoint. Its
            config.json fixes config, seed, device, checkpoint_every and log_every: passing
            any of them with ``resume`` is a ConfigError (they would change the result or the
            run's record), as is ``out_dir``.
        checkpoint_every: global steps between periodic checkpoints (default 500; 0 = only at
            the ends of the recipe's phases, on Ctrl-C and at the end).
        log_every: metrics.jsonl gets a row every this many steps (default 1).
        show_progress: draw a tqdm bar on stderr.
        print_tables: print the results tables to stdout at the end.
        argv: the command line, recorded in config.json.

    Returns:
        :class:`RunResult`.

    Raises:
        RunInterrupted: on Ctrl-C / SIGTERM, also during the final evaluation (the checkpoint
            is written first; results.json is not).
        ConfigError: bad options; CheckpointError: a damaged run directory on resume.
    """
    from hyperdnn.experiments.recipes import get_recipe

    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    if threads is not None:
        _check_int("threads", threads, 1)
    resume_from: Path | None = None
    if resume is not None:
        fixed = {"config": config, "seed": seed, "device": device, "out_dir": out_dir, "checkpoint_every": checkpoint_every, "log_every": log_every}
        given = sorted(k for k, v in fixed.items() if v is not None)
        if given:
            raise ConfigError(f"run --resume: the run's config.json fixes {', '.join(given)}; drop them (only threads and data_dir may be given on resume)")
        run_dir = Path(resume)
        saved = read_run_config(run_dir)
        cfg_path = run_dir / "config.json"
        if saved["recipe"] != recipe.name:
            raise ConfigError(f"run --resume: {run_dir} is a '{saved['recipe']}' run (asked to resume it as '{recipe.name}')")
        try:
            config = config_from_json(recipe.config, saved["config"])
        except (HyperDNNError, TypeError) as e:
            raise CheckpointError(f"run --resume: {cfg_path} holds a config that '{recipe.name}' does not accept: {e}") from e
        seed, device = saved["seed"], saved["device"]
        checkpoint_every = saved.get("checkpoint_every", 500)
        log_every = saved.get("log_every", 10)  # runs made before log_every was recorded logged every 10 steps
        if data_dir is not None:
            data_dir = Path(data_dir).expanduser().resolve()
            if str(data_dir) != saved.get("data_dir"):
                print(f"note: reading data from {data_dir} (the run used {saved.get('data_dir') or 'the default data directory'})", file=sys.stderr)
        else:
            data_dir = saved.get("data_dir")
        if (run_dir / "results.json").exists():
            raise CheckpointError(f"run --resume: {run_dir} has already finished (results.json exists); start a new run instead")
        dev = _device(device, saved_in=cfg_path)
        if threads is None:
            threads = saved.get("threads") or 1
        elif saved.get("threads") != threads:
            print(f"note: the run used {saved.get('threads')} threads, resuming with {threads}; results may differ in the last digits", file=sys.stderr)
        resume_from = _resume_checkpoint(run_dir)
        if resume_from is None:  # interrupted before the first checkpoint: start over in the same directory
            _truncate(run_dir / "metrics.jsonl", 0)
    else:
        seed = _check_int("seed", 0 if seed is None else seed, -(2**63))
        checkpoint_every = _check_int("checkpoint_every", 500 if checkpoint_every is None else checkpoint_every, 0)
        log_every = _check_int("log_every", 1 if log_every is None else log_every, 1)
        device = "cpu" if device is None else device
        config = recipe.config() if config is None else config
        if not isinstance(config, recipe.config):
            raise HDTypeError(f"run: config for '{recipe.name}' must be a {recipe.config.__module__}.{recipe.config.__qualname__} (got {type(config).__module__}.{type(config).__qualname__})")
        dev = _device(device)
        data_dir = None if data_dir is None else Path(data_dir).expanduser().resolve()
        threads = 1 if threads is None else threads
        run_dir = make_run_dir(Path("runs" if out_dir is None else out_dir), recipe.name)
    torch.set_num_threads(threads)
    if resume is None:
        record = {
            "recipe": recipe.name,
            "config": _config_to_json(config),
            "seed": seed,
            "threads": threads,
            "device": device,
            "data_dir": None if data_dir is None else str(data_dir),
            "checkpoint_every": checkpoint_every,
            "log_every": log_every,
            "argv": argv if argv is not None else sys.argv,
            "torch": torch.__version__,
        }
        try:
            (run_dir / "config.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    seed_everything(seed)
    ctx = RunContext(
        recipe=recipe.name,
        config=config,
        run_dir=run_dir,
        seed=seed,
        device=dev,
        threads=threads,
        data_dir=None if data_dir is None else Path(data_dir),
        checkpoint_every=checkpoint_every,
        show_progress=show_progress,
        log_every=log_every,
        _resume_from=resume_from,
    )
    try:
        with _interrupt_flag(ctx):
            try:
                results = recipe.run(ctx) or {}
            finally:
                ctx.close_progress()
            if ctx._state is not None:
                ctx.checkpoint()  # the final state, loadable like any other checkpoint
            if ctx._interrupted:  # Ctrl-C after the last step (final evaluation): the same as during training
                if ctx._state is None:
                    raise KeyboardInterrupt
                raise RunInterrupted(run_dir, ctx.global_step)
    except Exception:
        # a fresh run that failed before its first step (data missing, a recipe's own check) leaves nothing to resume
        if resume is None and ctx.global_step == 0 and not (run_dir / _LATEST).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    tables_md = "\n\n".join(t.markdown() for t in ctx._tables)
    header = f"# {recipe.name}: results\n\nRun directory `{run_dir}`, seed {seed}, {threads} thread(s), device {device}.\n\n"
    (run_dir / "results.md").write_text(header + tables_md + "\n")
    payload = _json_safe({"recipe": recipe.name, "results": results, "tables": [asdict(t) for t in ctx._tables]})
    tmp = run_dir / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")
    os.replace(tmp, run_dir / "results.json")  # last: results.json marks a finished run
    if print_tables and tables_md:
        print(tables_md)
        print(f"\nrun directory: {run_dir}")
    return RunResult(run_dir=run_dir, results=results, tables_markdown=tables_md)


class _interrupt_flag:
    """While active, the first SIGINT / SIGTERM only sets a flag; the second one interrupts at once."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.saved: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.ctx._interrupted:
            raise KeyboardInterrupt
        self.ctx._interrupted = True
        print("\ninterrupt: writing a checkpoint at the end of this step (press again to stop at once)", file=sys.stderr)

    def __enter__(self) -> "_interrupt_flag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.saved[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: keep default behaviour
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)

