"""The one owner of a run's checkpoint directories and of the ``LATEST`` pointer.

``run_dir/checkpoint-<N>/`` holds the state after global step N (see
:mod:`hyperdnn.experiments.run_checkpoint`); ``run_dir/LATEST`` names the newest
verified one. A new checkpoint is written to a temporary directory, hashed,
renamed, verified, and only then does ``LATEST`` point at it and the previous
one get deleted: at every moment the last verified checkpoint is on disk.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

from hyperdnn.errors import CheckpointError
from hyperdnn.experiments.files import disk_full_is_an_error, read_small, write_atomic
from hyperdnn.experiments.run_checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint

LATEST = "LATEST"
_NAME = re.compile(r"checkpoint-\d+")


class CheckpointStore:
    """The checkpoints of one run directory.

    Args:
        run_dir: the run directory (exists).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def latest(self) -> Path | None:
        """The checkpoint directory that ``LATEST`` names, or None when LATEST was never written.

        Raises:
            CheckpointError: LATEST not a small regular file, not ``checkpoint-<step>``, or naming
                a directory that does not exist (never a silent start from step 0).
        """
        latest = self.run_dir / LATEST
        if not latest.exists() and not latest.is_symlink():
            return None
        try:
            name = read_small(latest, cap=256, what="runs").strip()
        except FileNotFoundError as e:  # a dangling symlink
            raise CheckpointError(f"runs: {latest} is a link to a file that does not exist; write the name of a checkpoint-<step> directory of this run into it") from e
        if not _NAME.fullmatch(name):
            raise CheckpointError(f"runs: {latest} holds {name[:80]!r} (expected the name of a checkpoint directory, 'checkpoint-<step>')")
        path = self.run_dir / name
        if not path.is_dir():
            raise CheckpointError(
                f"runs: {latest} names {name}, but {path} does not exist; restore that directory "
                f"(or write the name of another checkpoint-<step> directory of this run into LATEST) to resume"
            )
        return path

    def stray(self) -> list[str]:
        """Names of the ``checkpoint-<N>`` directories present (whatever LATEST says)."""
        return sorted(p.name for p in self.run_dir.glob("checkpoint-*") if p.is_dir() and _NAME.fullmatch(p.name))

    def resume_point(self) -> Path | None:
        """LATEST's checkpoint; None (with a note) only when LATEST was never written and no checkpoint exists.

        Raises:
            CheckpointError: no LATEST but checkpoint directories exist (nothing is started
                over on a guess), or LATEST damaged.
        """
        ckpt = self.latest()
        if ckpt is not None:
            return ckpt
        stray = self.stray()
        if stray:
            raise CheckpointError(
                f"run --resume: {self.run_dir} has no LATEST file but holds {stray}; write the name of the newest one into "
                f"{self.run_dir / LATEST} to resume from it (nothing is started over on a guess)"
            )
        print(f"note: {self.run_dir} has no checkpoint yet (LATEST was never written): starting over from step 0 in the same directory", file=sys.stderr)
        return None

    def load(self, path: Path) -> dict[str, Any]:
        """The checkpoint at ``path``, sha256-verified (see :func:`load_checkpoint`)."""
        return load_checkpoint(path)

    def save(self, step: int, objects: dict[str, Any], state: dict[str, Any], meta: dict[str, Any], config_sha256: str | None) -> Path:
        """Write ``checkpoint-<step>``, verify it, point LATEST at it, then delete the previous one.

        A ``checkpoint-<step>`` directory already there is kept only if LATEST names it
        (a second save at the same step); anything else of that name (left by a crash, or
        put there by hand) is replaced, never adopted.

        Raises:
            CheckpointError: the disk is full (the message says how to resume; the previous
                checkpoint is kept), or the checkpoint just written does not verify.
        """
        try:
            previous = self.latest()
        except CheckpointError:  # a damaged LATEST is replaced below
            previous = None
        name = f"checkpoint-{step}"
        target = self.run_dir / name
        if target != previous:
            with disk_full_is_an_error(name, self.run_dir, previous.name if previous else None):
                if target.exists() or target.is_symlink():
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink()
                save_checkpoint(target, objects, state, meta, config_sha256)
            try:
                verify_checkpoint(target)
            except CheckpointError:
                shutil.rmtree(target, ignore_errors=True)
                raise
        with disk_full_is_an_error(LATEST, self.run_dir, previous.name if previous else None):
            write_atomic(self.run_dir / LATEST, name)
        if previous is not None and previous != target:
            shutil.rmtree(previous, ignore_errors=True)
        return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint that ``run_dir/LATEST`` names (see :meth:`CheckpointStore.latest`)."""
    return CheckpointStore(run_dir).latest()
