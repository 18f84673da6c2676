"""Running a recipe into a run directory, or resuming one: :func:`run_recipe`.

The parts live in their own files: the directory layout and config.json
(:mod:`~hyperdnn.experiments.run_dir`), the context a recipe gets
(:mod:`~hyperdnn.experiments.context`), the checkpoint store and its files
(:mod:`~hyperdnn.experiments.store`, :mod:`~hyperdnn.experiments.run_checkpoint`),
the resume checks (:mod:`~hyperdnn.experiments.resume`), signal handling
(:mod:`~hyperdnn.experiments.signals`) and the rendering of results
(:mod:`~hyperdnn.experiments.render`). This module only puts them in order.

A damaged run directory (config.json, LATEST or a checkpoint unreadable,
malformed, changed since written or missing) raises
:class:`~hyperdnn.errors.CheckpointError` naming the file and what is wrong;
``--resume`` starts over from step 0 only when LATEST was never written.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.experiments import distributed
from hyperdnn.experiments.context import NonFiniteLossError, RunContext, RunInterrupted, file_sha256
from hyperdnn.experiments.files import disk_full_is_an_error
from hyperdnn.experiments.render import write_results
from hyperdnn.experiments.resume import check_device, plan_resume, refuse_fixed_options
from hyperdnn.experiments.run_checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from hyperdnn.experiments.run_dir import CONFIG, METRICS, RunLock, config_from_json, config_to_json, make_run_dir, read_run_config
from hyperdnn.experiments.signals import InterruptFlag
from hyperdnn.experiments.store import LATEST, CheckpointStore, latest_checkpoint

__all__ = [
    "NonFiniteLossError",
    "RunContext",
    "RunInterrupted",
    "RunResult",
    "config_from_json",
    "config_to_json",
    "flatten_state",
    "latest_checkpoint",
    "load_checkpoint",
    "make_run_dir",
    "read_run_config",
    "run_recipe",
    "save_checkpoint",
    "seed_everything",
    "unflatten_state",
]


@dataclass
class RunResult:
    """What :func:`run_recipe` returns: the run directory and the recipe's results dict."""

    run_dir: Path
    results: dict[str, Any]
    tables_markdown: str


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HDTypeError(f"run: {name} must be an int (got {type(value).__name__} {value!r})")
    if value < low:
        raise ConfigError(f"run: {name} must be >= {low} (got {value})")
    return value


@dataclass
class _Setup:
    """A run ready to start: its directory (locked by rank 0), settings and where to resume from."""

    run_dir: Path
    config: Any
    seed: int
    device: str
    torch_device: torch.device
    threads: int
    data_dir: str | Path | None
    checkpoint_every: int
    log_every: int
    skip_nonfinite: bool
    dist: distributed.World
    lock: RunLock | None
    resume_from: Path | None = None


def _setup_resume(run_dir: Path, recipe: Any, threads: int | None, data_dir: str | Path | None) -> _Setup:
    """Check a run directory for ``--resume``, lock it, and find its last checkpoint."""
    plan = plan_resume(run_dir, recipe, threads, data_dir, distributed.world_size())
    dist = distributed.current(plan.device)
    lock = RunLock(run_dir) if dist.is_main else None  # before anything is read or cut: one process per run
    try:
        resume_from = CheckpointStore(run_dir).resume_point()
        if resume_from is None and dist.is_main:  # interrupted before the first checkpoint: start over in the same directory
            metrics = run_dir / METRICS
            if metrics.is_file():
                metrics.write_bytes(b"")
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    return _Setup(run_dir, plan.config, plan.seed, plan.device, dist.device(plan.torch_device), plan.threads, plan.data_dir,
                  plan.checkpoint_every, plan.log_every, plan.skip_nonfinite, dist, lock, resume_from)


def _setup_fresh(recipe: Any, config: Any, seed: int | None, threads: int | None, device: str | None, data_dir: str | Path | None,
                 out_dir: str | Path | None, checkpoint_every: int | None, log_every: int | None, skip_nonfinite: bool | None,
                 argv: list[str] | None) -> _Setup:
    """Check a new run's options, then make its directory (rank 0), lock it and write config.json."""
    seed = _check_int("seed", 0 if seed is None else seed, -(2**63))
    checkpoint_every = _check_int("checkpoint_every", 500 if checkpoint_every is None else checkpoint_every, 0)
    log_every = _check_int("log_every", 1 if log_every is None else log_every, 1)
    device = "cpu" if device is None else device
    skip_nonfinite = bool(skip_nonfinite)
    config = recipe.config() if config is None else config
    if not isinstance(config, recipe.config):
        raise HDTypeError(f"run: config for '{recipe.name}' must be a {recipe.config.__module__}.{recipe.config.__qualname__} (got {type(config).__module__}.{type(config).__qualname__})")
    dev = check_device(device)
    dist = distributed.current(device)
    data_dir = None if data_dir is None else Path(data_dir).expanduser().resolve()
    threads = 1 if threads is None else threads
    run_dir = dist.broadcast_path(make_run_dir(Path("runs" if out_dir is None else out_dir), recipe.name) if dist.is_main else None)
    lock = None
    if dist.is_main:
        lock = RunLock(run_dir)
        record = {
            "recipe": recipe.name,
            "config": config_to_json(config),
            "seed": seed,
            "threads": threads,
            "device": device,
            "data_dir": None if data_dir is None else str(data_dir),
            "checkpoint_every": checkpoint_every,
            "log_every": log_every,
            "skip_nonfinite": skip_nonfinite,
            "world_size": dist.world_size,
            "argv": argv if argv is not None else sys.argv,
            "torch": torch.__version__,
        }
        if recipe.source:
            record["recipe_source"] = recipe.source
        try:
            with disk_full_is_an_error(CONFIG, run_dir, None):
                (run_dir / CONFIG).write_text(json.dumps(record, indent=2, default=str) + "\n")
        except BaseException:
            lock.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return _Setup(run_dir, config, seed, device, dist.device(dev), threads, data_dir, checkpoint_every, log_every, skip_nonfinite, dist, lock)


def _draw_figures(recipe: Any, ctx: RunContext, results: dict[str, Any]) -> None:
    """The runner's figures (loss curves) and the recipe's own from its results; a plotting failure is a note."""
    from hyperdnn.experiments.figures import loss_curves

    try:
        loss_curves(ctx.run_dir, recipe.name)
        if recipe.figures is not None:
            recipe.figures(ctx.run_dir, recipe.name, results, ctx.published)
    except (ImportError, ValueError, KeyError, TypeError) as e:  # the results are saved either way
        print(f"note: a figure of {ctx.run_dir} could not be drawn ({type(e).__name__}: {e})", file=sys.stderr)


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
    skip_nonfinite: bool | None = None,
    show_progress: bool = True,
    print_tables: bool = True,
    argv: list[str] | None = None,
) -> RunResult:
    """Run a registered recipe into a run directory (or resume one).

    Everything is checked before the run directory is made, and a fresh run that fails
    before its first step (bad data, a recipe check) leaves no directory behind. Under
    ``torchrun`` every process trains and rank 0 alone writes the run directory.

    Args:
        recipe: a :class:`hyperdnn.experiments.recipes.Recipe` or its name.
        config: an instance of the recipe's config dataclass (default: its defaults).
        seed: seeds python/numpy/torch before the recipe starts (default 0).
        threads: ``torch.set_num_threads`` for the run (default 1; on resume: the run's own,
            or this count with a note).
        device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.
        data_dir: data directory handed to the recipe, stored resolved to an absolute path
            (None: ``HYPERDNN_DATA`` / cache). On resume: the run's own, or this one with a note.
        out_dir: where new run directories are created (default ``runs``).
        resume: an existing run directory to continue from its LATEST checkpoint. Its
            config.json fixes config, seed, device, checkpoint_every and log_every: passing
            any of them with ``resume`` is a ConfigError, as is ``out_dir``.
        checkpoint_every: global steps between periodic checkpoints (default 500; 0 = only at
            the ends of the recipe's phases, on Ctrl-C and at the end).
        log_every: metrics.jsonl gets a row every this many steps (default 1).
        skip_nonfinite: skip optimizer steps whose gradients hold NaN or infinities (their
            update is not applied; a row ``{"kind": "skipped"}`` goes to metrics.jsonl) instead
            of stopping the run (default False: a NaN loss stops it).
        show_progress: progress on stderr (bar on a terminal, plain lines otherwise).
        print_tables: print the results tables to stdout at the end.
        argv: the command line, recorded in config.json.

    Returns:
        :class:`RunResult`.

    Raises:
        RunInterrupted: on Ctrl-C / SIGTERM, also during the final evaluation (the checkpoint
            is written first; results.json is not).
        NonFiniteLossError: the loss became NaN or infinite (the last good checkpoint is kept).
        ConfigError: bad options; CheckpointError: a damaged or busy run directory, or a full disk.
    """
    from hyperdnn.experiments.recipes import get_recipe

    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    if threads is not None:
        _check_int("threads", threads, 1)
    if resume is not None:
        fixed = {"config": config, "seed": seed, "device": device, "out_dir": out_dir, "checkpoint_every": checkpoint_every, "log_every": log_every, "skip_nonfinite": skip_nonfinite}
        refuse_fixed_options([k for k, v in fixed.items() if v is not None], as_flags=False)
        setup = _setup_resume(Path(resume), recipe, threads, data_dir)
    else:
        setup = _setup_fresh(recipe, config, seed, threads, device, data_dir, out_dir, checkpoint_every, log_every, skip_nonfinite, argv)
    run_dir, dist, lock = setup.run_dir, setup.dist, setup.lock
    config, seed, device, threads = setup.config, setup.seed, setup.device, setup.threads
    torch.set_num_threads(threads)
    try:
        dist.barrier()
        seed_everything(seed)
        ctx = RunContext(
            recipe=recipe.name,
            config=config,
            run_dir=run_dir,
            seed=seed,
            device=setup.torch_device,
            threads=threads,
            data_dir=None if setup.data_dir is None else Path(setup.data_dir),
            checkpoint_every=setup.checkpoint_every,
            show_progress=show_progress,
            log_every=setup.log_every,
            skip_nonfinite=setup.skip_nonfinite,
            rank=dist.rank,
            world_size=dist.world_size,
            config_sha256=file_sha256(run_dir / CONFIG),
            _resume_from=setup.resume_from,
        )
        try:
            with InterruptFlag(ctx.request_stop, lambda: ctx.interrupted):
                try:
                    results = recipe.run(ctx) or {}
                finally:
                    ctx.close_progress()
                if ctx.started:
                    ctx.checkpoint()  # the final state, loadable like any other checkpoint
                if ctx.interrupted:  # Ctrl-C after the last step (final evaluation): the same as during training
                    if not ctx.started:
                        raise KeyboardInterrupt
                    raise RunInterrupted(run_dir, ctx.global_step)
        except Exception:
            # a fresh run that failed before its first step (data missing, a recipe's own check) leaves nothing to resume
            if resume is None and ctx.global_step == 0 and dist.is_main and not (run_dir / LATEST).exists():
                if lock is not None:
                    lock.close()
                    lock = None
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        tables_md = "\n\n".join(t.markdown() for t in ctx.tables)
        if dist.is_main:
            _draw_figures(recipe, ctx, results)
            header = f"# {recipe.name}: results\n\nRun directory `{run_dir}`, seed {seed}, {threads} thread(s), device {device}" + (f", {dist.world_size} processes" if dist.world_size > 1 else "") + ".\n\n"
            kept = latest_checkpoint(run_dir)
            with disk_full_is_an_error("results.json", run_dir, kept.name if kept else None):
                tables_md = write_results(run_dir, recipe.name, header, results, ctx.tables)
            if print_tables and tables_md:
                print(tables_md)
                print(f"\nrun directory: {run_dir}")
        return RunResult(run_dir=run_dir, results=results, tables_markdown=tables_md)
    finally:
        if lock is not None:
            lock.close()
