"""Reading and writing a run directory's files safely: size-capped reads of control files,
sha256 of a file, atomic small writes, and disk-full errors that say how to resume.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from pathlib import Path
from typing import Iterator

from hyperdnn.errors import CheckpointError

# control files are a few hundred bytes (LATEST) to a few MB (state.json of a long run)
SMALL = 1 << 20
STATE_CAP = 256 << 20


def read_small(path: Path, cap: int = SMALL, what: str = "run") -> str:
    """The text of a small control file, read only if it is a regular file of at most ``cap`` bytes.

    A symlink to ``/dev/zero`` or to a huge file is refused before anything is read.

    Args:
        path: the file (symlinks are followed, then the target is checked).
        cap: the most bytes accepted.
        what: the part named in the message.

    Raises:
        FileNotFoundError: ``path`` does not exist (the caller says what that means).
        CheckpointError: not a regular file, larger than ``cap``, unreadable or not UTF-8.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CheckpointError(f"{what}: cannot open {path} ({e})") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{what}: {path} is not a regular file (a device, pipe or directory); the run directory is damaged: restore the file")
        if st.st_size > cap:
            raise CheckpointError(f"{what}: {path} is {st.st_size:,} bytes (expected at most {cap:,}); the run directory is damaged: restore the file")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise CheckpointError(f"{what}: {path} holds more than {cap:,} bytes; the run directory is damaged: restore the file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{what}: {path} is not UTF-8 text ({e}); the run directory is damaged: restore the file") from e


def sha256_file(path: Path, what: str = "run") -> str:
    """Hex sha256 of a regular file, read in 1 MiB blocks.

    Raises:
        CheckpointError: not a regular file or unreadable.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CheckpointError(f"{what}: {path} is not a regular file; the checkpoint is damaged")
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise CheckpointError(f"{what}: cannot read {path} ({e})") from e
    return h.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_disk_full(e: BaseException) -> bool:
    """True for the errors of a full disk or an exceeded quota."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def disk_full_is_an_error(what: str, run_dir: Path, kept: str | None) -> Iterator[None]:
    """Turn a full disk while writing ``what`` into a :class:`CheckpointError` that says how to resume.

    Args:
        what: what was being written, e.g. ``"checkpoint-500"``.
        run_dir: the run directory (for the resume command).
        kept: the last verified checkpoint still on disk, or None.
    """
    try:
        yield
    except OSError as e:
        if not is_disk_full(e):
            raise
        last = f"the last verified checkpoint, {kept}, is intact" if kept else "no checkpoint was written yet, so the run starts over"
        raise CheckpointError(
            f"run: cannot write {what} in {run_dir}: {e.strerror} (errno {e.errno}); {last}. "
            f"Free some space, then continue with: hyperdnn run --resume {run_dir}"
        ) from e
