"""The run context a recipe's ``run(ctx)`` gets: its config, where to write, and the checkpoint machinery.

A recipe registers the objects whose state must survive an interruption
(modules, optimizers, generators, dicts of tensors) with :meth:`RunContext.track`,
gets its loop state (a JSON-able dict) from :meth:`RunContext.restore`, and calls
:meth:`RunContext.step_done` after every optimizer step. The context writes
checkpoints every ``checkpoint_every`` steps (and on Ctrl-C / SIGTERM, at the next
step boundary), each holding the tracked objects' states, the loop state, the
global step and every RNG state. Resuming restores all of it, so a resumed run
ends with the same weights as an uninterrupted one with the same seed, thread
count and device.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hyperdnn.errors import CheckpointError, ConfigError, HyperDNNError
from hyperdnn.experiments import distributed
from hyperdnn.experiments.files import disk_full_is_an_error, sha256_file
from hyperdnn.experiments.render import Progress, Table, json_safe, jsonable
from hyperdnn.experiments.run_checkpoint import load_state_into, set_rng_states
from hyperdnn.experiments.run_dir import CONFIG, METRICS
from hyperdnn.experiments.store import CheckpointStore


class RunInterrupted(KeyboardInterrupt):
    """Raised at a step boundary after Ctrl-C / SIGTERM, once the checkpoint is written."""

    def __init__(self, run_dir: Path, step: int) -> None:
        super().__init__(f"interrupted at step {step}; resume with: hyperdnn run --resume {run_dir}")
        self.run_dir = run_dir
        self.step = step


class NonFiniteLossError(HyperDNNError, FloatingPointError):
    """The training loss became NaN or infinite; the run stopped without checkpointing that state."""


@dataclass
class RunContext:
    """What a recipe's ``run(ctx)`` gets.

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
        show_progress: progress on stderr (a bar on a terminal, plain lines elsewhere);
            False: only a line per new phase/task.
        log_every: :meth:`step_done` writes its metrics to metrics.jsonl every this many steps.
        skip_nonfinite: optimizer steps with NaN/inf gradients are skipped (not applied) and
            logged instead of stopping the run; after 100 skipped steps in a row the run stops.
        rank: this process's rank under torchrun (0 alone writes the run directory).
        world_size: processes training together (1 without torchrun).
        global_step: optimizer steps done so far.
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
    _bar: Progress | None = None
    _tables: list[Table] = field(default_factory=list)
    log_every: int = 1
    rank: int = 0
    world_size: int = 1
    config_sha256: str | None = None
    _metrics_hash: Any = field(default_factory=hashlib.sha256)
    _hooked: set[int] = field(default_factory=set)
    skip_nonfinite: bool = False
    _skipped: int = 0
    _skipped_in_a_row: int = 0
    _skipping: bool = False

    # -- what the runner reads ----------------------------------------------------------

    @property
    def is_main(self) -> bool:
        """True in the process that writes the run directory (rank 0)."""
        return self.rank == 0

    @property
    def published(self) -> bool:
        """The config is the recipe's defaults (the published configuration): paper numbers apply."""
        try:
            return bool(self.config == type(self.config)())
        except Exception:  # a config without defaults for every field
            return False

    @property
    def interrupted(self) -> bool:
        """A Ctrl-C / SIGTERM asked the run to stop at the next step boundary."""
        return self._interrupted

    def request_stop(self) -> None:
        """Ask for a checkpoint and a stop at the next step boundary (what Ctrl-C does)."""
        self._interrupted = True

    @property
    def started(self) -> bool:
        """The recipe called :meth:`restore` (there is a loop state to checkpoint)."""
        return self._state is not None

    @property
    def tables(self) -> list[Table]:
        """The results tables added so far."""
        return list(self._tables)

    @property
    def store(self) -> CheckpointStore:
        return CheckpointStore(self.run_dir)

    # -- checkpointed state ------------------------------------------------------------

    def track(self, **objects: Any) -> None:
        """Register objects whose state goes into every checkpoint.

        Args:
            **objects: ``name=obj`` with obj an ``nn.Module``, an ``Optimizer``, a
                ``torch.Generator``, a ``dict[str, Tensor]`` (restored in place) or any object
                with ``state_dict()`` / ``load_state_dict()``. Register them before :meth:`restore`.
                Under torchrun the gradients of tracked modules are averaged over the processes.
        """
        self._objects.update(objects)
        if self.skip_nonfinite:
            for obj in objects.values():
                if isinstance(obj, torch.optim.Optimizer):
                    obj.register_step_pre_hook(self._drop_nonfinite_gradients)
        if self.world_size > 1:
            for obj in objects.values():
                if isinstance(obj, torch.nn.Module):
                    distributed.average_gradients(obj, self.world_size, self._hooked)

    def _drop_nonfinite_gradients(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Before a step: if any gradient holds NaN/inf, drop them all, so the optimizer skips this step."""
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if params and not all(bool(torch.isfinite(p.grad).all()) for p in params):
            for p in params:
                p.grad = None  # optimizers leave parameters without a gradient (and their state) untouched
            self._skipping = True

    def shard(self, *tensors: torch.Tensor) -> Any:
        """This process's slice of a global batch (dim 0); the tensors themselves without torchrun.

        Call it on every training batch: with N processes each computes the loss on 1/N of
        the batch and the averaged gradients equal the whole batch's.

        Raises:
            ConfigError: the batch size is not divisible by the number of processes.
        """
        return distributed.shard(tensors, self.rank, self.world_size)

    def restore(self, default: dict[str, Any]) -> dict[str, Any]:
        """The loop state: ``default`` on a fresh run, the checkpointed one on resume.

        On resume this also loads every tracked object, the global step and all RNG
        states, and cuts metrics.jsonl back to the checkpoint's offset. Returns the dict
        the recipe should mutate in place (it is what :meth:`step_done` and
        :meth:`checkpoint` save).

        Raises:
            CheckpointError: the checkpoint, config.json or metrics.jsonl do not match what
                the checkpoint recorded (each named).
        """
        if self._resume_from is None:
            self._state = default
            return default
        ckpt = self.store.load(self._resume_from)
        jpath = self._resume_from / "state.json"
        meta = ckpt["meta"]
        for key in ("global_step", "metrics_bytes"):
            value = meta.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError(f"runs: {jpath}: meta.{key} is {value!r} (expected an int >= 0; the checkpoint is damaged)")
        if self._resume_from.name != f"checkpoint-{meta['global_step']}":
            raise CheckpointError(f"runs: {jpath} says global step {meta['global_step']}, but its directory is {self._resume_from.name}")
        recorded = ckpt["manifest"].get("config_sha256")
        if recorded is not None and self.config_sha256 is not None and recorded != self.config_sha256:
            raise CheckpointError(
                f"runs: {self.run_dir / CONFIG} was changed after the run started (its sha256 differs from the one "
                f"{self._resume_from.name} recorded); restore the original config.json, or start a new run with the new settings"
            )
        if not isinstance(ckpt["state"], dict):
            raise CheckpointError(f"runs: {jpath}: the loop state is a {type(ckpt['state']).__name__} (expected a dict)")
        missing = set(self._objects) ^ set(ckpt["objects"])
        if missing:
            raise CheckpointError(f"runs: checkpoint {self._resume_from} tracks {sorted(ckpt['objects'])} but the recipe tracks {sorted(self._objects)}")
        if self.is_main:  # rank 0 alone writes metrics.jsonl
            self._restore_metrics(meta["metrics_bytes"], meta.get("metrics_sha256"))
        for name, obj in self._objects.items():
            load_state_into(obj, ckpt["objects"][name], name)
        self.global_step = meta["global_step"]
        try:
            set_rng_states(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"runs: {jpath}: the saved RNG states cannot be restored ({type(e).__name__}: {e})") from e
        self._state = ckpt["state"]
        if self._bar is not None:
            self._bar.close()
            self._bar = Progress(self.recipe, self._bar.total, self.global_step, quiet=not self.show_progress)
        return self._state

    def _restore_metrics(self, offset: int, digest: str | None) -> None:
        """Cut metrics.jsonl back to ``offset`` bytes, or refuse if rows before it are lost or changed."""
        path = self.run_dir / METRICS
        size = path.stat().st_size if path.is_file() else (None if not path.exists() else -1)
        if size == -1:
            raise CheckpointError(f"runs: {path} is not a regular file; remove it and restore the run's metrics.jsonl")
        if (size or 0) < offset:
            have = "is missing" if size is None else f"holds {size:,} bytes"
            raise CheckpointError(
                f"runs: {path} {have}, but {self._resume_from.name} was written when it held {offset:,} bytes: rows "
                f"logged before that checkpoint are lost; restore metrics.jsonl from a backup to resume"
            )
        h = hashlib.sha256()
        if offset:
            with open(path, "rb") as f:
                prefix = f.read(offset)
            h.update(prefix)
            if digest is not None and h.hexdigest() != digest:
                raise CheckpointError(f"runs: the first {offset:,} bytes of {path} differ from what {self._resume_from.name} recorded (sha256): the rows were edited or damaged; restore metrics.jsonl from a backup to resume")
            if not prefix.endswith(b"\n"):
                raise CheckpointError(f"runs: {path} does not end a row at byte {offset:,} where {self._resume_from.name} says it should; restore metrics.jsonl to resume")
        if size is not None and size > offset:
            with open(path, "r+b") as f:
                f.truncate(offset)
        self._metrics_hash = h

    def checkpoint(self) -> Path:
        """Write a checkpoint now (at a step boundary) and point LATEST at it; rank 0 only writes."""
        if self._state is None:
            raise ConfigError("RunContext: call restore(default_state) before checkpoint()")
        name = self.run_dir / f"checkpoint-{self.global_step}"
        if not self.is_main:
            return name
        for obj_name, obj in self._objects.items():
            if isinstance(obj, torch.nn.Module):
                bad = [n for n, p in obj.named_parameters() if not torch.isfinite(p).all()]
                if bad:  # never checkpoint a diverged model over the last good one
                    self._stop_nonfinite(float("nan"), {}, f"{obj_name}'s parameters {', '.join(bad[:3])} hold NaN or infinite values")
        metrics = self.run_dir / METRICS
        meta = {
            "global_step": self.global_step,
            "metrics_bytes": metrics.stat().st_size if metrics.exists() else 0,
            "metrics_sha256": self._metrics_hash.hexdigest(),
            "time": time.time(),
        }
        return self.store.save(self.global_step, self._objects, self._state, meta, self.config_sha256)

    def step_done(self, n: int = 1, **metrics: Any) -> None:
        """Call after each optimizer step: counts, logs, shows progress, checkpoints when due.

        Args:
            n: steps done (default 1).
            **metrics: per-step values (e.g. ``loss=0.1, task="2/3"``): shown as progress and
                written to metrics.jsonl every ``log_every`` steps (before any checkpoint, so a
                resumed run's metrics.jsonl equals an uninterrupted run's). String values name
                the phase/task (a progress line when they change).

        Raises:
            NonFiniteLossError: ``loss`` is NaN or infinite (nothing of this step is checkpointed).
            RunInterrupted: after Ctrl-C / SIGTERM, once the checkpoint is on disk.
        """
        self.global_step += n
        if self.world_size > 1:  # the metrics of the whole batch, and a stop asked on any process, on every process
            keys = [k for k, v in metrics.items() if isinstance(jsonable(v), float)]
            means, stop = distributed.mean_over_processes([float(jsonable(metrics[k])) for k in keys], self._interrupted)
            metrics = {**metrics, **dict(zip(keys, means))}
            self._interrupted = stop
        loss = jsonable(metrics.get("loss"))
        bad_loss = isinstance(loss, float) and not math.isfinite(loss)
        if self.skip_nonfinite and (self._skipping or bad_loss):
            self._skipping = False
            self._skipped += n
            self._skipped_in_a_row += n
            self.log(kind="skipped", reason="non-finite gradients or loss")
            if self._skipped_in_a_row >= 100:
                self._stop_nonfinite(loss if isinstance(loss, float) else float("nan"), metrics, "100 steps in a row had non-finite gradients (all skipped)")
        elif bad_loss:
            self._stop_nonfinite(loss, metrics)
        else:
            self._skipped_in_a_row = 0
        if metrics and self.log_every and self.global_step % self.log_every == 0:
            self.log(**metrics)
        if self._bar is not None:
            self._bar.update(n, metrics)
        if self._interrupted:
            self.checkpoint()
            raise RunInterrupted(self.run_dir, self.global_step)
        if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
            self.checkpoint()

    def _stop_nonfinite(self, loss: float, metrics: dict[str, Any], what: str | None = None) -> None:
        self.close_progress()
        try:
            kept = self.store.latest()
        except CheckpointError:
            kept = None
        where = ", ".join(f"{k} {v}" for k, v in metrics.items() if isinstance(v, str))
        last = f"the last good checkpoint, {kept.name}, is kept" if kept else "no checkpoint was written before it"
        raise NonFiniteLossError(
            f"run: {what or f'the training loss is {loss}'} at step {self.global_step}{f' ({where})' if where else ''}; the run stopped "
            f"({last}; no model was saved). Lower --lr or check the data; the settings are in {self.run_dir / CONFIG}"
        )

    # -- outputs -------------------------------------------------------------------------

    def progress(self, total: int, desc: str | None = None) -> None:
        """Start showing progress over ``total`` global steps (resumed runs start where they stopped)."""
        self.close_progress()
        if self.is_main:
            self._bar = Progress(desc or self.recipe, total, self.global_step, quiet=not self.show_progress)

    def log(self, **metrics: Any) -> None:
        """Append ``{"step": global_step, **metrics}`` to metrics.jsonl (NaN and infinities as null)."""
        if not self.is_main:
            return
        row = (json.dumps(json_safe({"step": self.global_step, **metrics}), allow_nan=False, default=str) + "\n").encode()
        with disk_full_is_an_error("a row of metrics.jsonl", self.run_dir, self._kept()):
            with open(self.run_dir / METRICS, "ab") as f:
                f.write(row)
        self._metrics_hash.update(row)

    def _kept(self) -> str | None:
        try:
            kept = self.store.latest()
        except CheckpointError:
            return None
        return kept.name if kept else None

    def table(self, title: str, headers: list[str], rows: list[list[Any]], note: str = "") -> None:
        """Add a results table (printed at the end and written to results.md / results.json)."""
        self._tables.append(Table(title, list(headers), [[jsonable(v) for v in r] for r in rows], note))

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``run_dir/name.png`` (rank 0) and close it."""
        import matplotlib.pyplot as plt

        path = self.run_dir / f"{name}.png"
        if self.is_main:
            with disk_full_is_an_error(path.name, self.run_dir, self._kept()):
                fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path

    def close_progress(self) -> None:
        """End the progress display (the recipe's training is over)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def file_sha256(path: Path) -> str:
    """sha256 of a run file (config.json), for the checkpoints' record."""
    return sha256_file(path, what="run")
