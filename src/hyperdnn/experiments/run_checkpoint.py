"""The contents of a run checkpoint: every tensor in safetensors, the rest in JSON, RNG states included.

A checkpoint is a directory ``checkpoint-<step>/`` with ``tensors.safetensors``
(model, optimizer and other tensors, flattened to dotted keys), ``state.json``
(the non-tensor state, the RNG states, the step) and ``manifest.json`` (the
sha256 of both files and of the run's config.json). Which checkpoint is the
newest is :class:`hyperdnn.experiments.store.CheckpointStore`'s job. Nothing is
unpickled.
"""

from __future__ import annotations

import json
import os
import random
import stat
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hyperdnn.errors import CheckpointError
from hyperdnn.experiments.files import STATE_CAP, read_small, sha256_file

_FORMAT = "hyperdnn-run-checkpoint-v1"

# ----------------------------------------------------------------------------- state (de)serialisation


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Split a nested state (dicts, lists, tuples, tensors, scalars) into JSON + tensors.

    Args:
        obj: the nested state, e.g. ``optimizer.state_dict()``.
        prefix: key prefix for the tensors found in ``obj``.
        tensors: filled in place with ``{key: tensor}`` (detached, contiguous, CPU copies).

    Returns:
        A JSON-able skeleton: tensors become ``{"__tensor__": key}``, tuples
        ``{"__tuple__": [...]}``, dicts with non-string keys ``{"__items__": [[k, v], ...]}``.
    """
    if isinstance(obj, torch.Tensor):
        key = prefix
        if key in tensors:  # {"a.b": t} and {"a": {"b": t}} both map to "a.b"
            raise CheckpointError(f"runs: two tensors would be stored under the key '{key}' (a dict key holding '.' collides with a nested dict's key path); rename one of them")
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten_state(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_json_key(k), flatten_state(v, f"{prefix}.{i}", tensors)] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise CheckpointError(f"runs: cannot store a {type(obj).__name__} at '{prefix}' (expected tensors, numbers, strings, lists, dicts)")


def _json_key(k: Any) -> Any:
    if isinstance(k, (str, int, float, bool)) or k is None:
        return k
    raise CheckpointError(f"runs: cannot store a dict key of type {type(k).__name__} ({k!r})")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"runs: checkpoint refers to tensor '{key}' that tensors.safetensors does not hold")
            return tensors[key]
        if set(obj) == {"__tuple__"}:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__items__"}:
            return {k: unflatten_state(v, tensors) for k, v in obj["__items__"]}
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def state_of(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, dict):
        return dict(obj)
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise CheckpointError(f"runs: cannot track a {type(obj).__name__} (expected nn.Module, Optimizer, torch.Generator, dict of tensors or an object with state_dict/load_state_dict)")


def load_state_into(obj: Any, state: Any, name: str) -> None:
    try:
        if isinstance(obj, torch.Generator):
            obj.set_state(state)
        elif isinstance(obj, dict):
            obj.clear()
            obj.update(state)
        elif isinstance(obj, torch.nn.Module):
            obj.load_state_dict(state, strict=True)
        else:
            obj.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"runs: checkpoint state for '{name}' does not fit the tracked {type(obj).__name__}: {e}") from e


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _numpy_state() -> tuple:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (str(name), keys.tolist(), int(pos), int(has_gauss), float(cached))


def set_rng_states(states: dict[str, Any]) -> None:
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(states["cuda"]))


# ----------------------------------------------------------------------------- checkpoint files

TENSORS, STATE, MANIFEST = "tensors.safetensors", "state.json", "manifest.json"


def save_checkpoint(directory: Path, objects: dict[str, Any], state: dict[str, Any], meta: dict[str, Any], config_sha256: str | None = None) -> None:
    """Write tracked objects, loop state, RNG states and meta into ``directory`` (safetensors + JSON + manifest).

    The files go into ``directory.tmp`` first, are hashed, and the directory is renamed
    only once everything is written, so a crash or a full disk never leaves a
    ``checkpoint-<N>`` that looks complete.

    Args:
        directory: created; must not exist yet.
        objects: ``{name: tracked object}``.
        state: the recipe's JSON-able loop state.
        meta: extra JSON (global step, metrics offset).
        config_sha256: sha256 of the run's config.json, recorded so that an edited
            config.json is found on resume.
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {
        "format": _FORMAT,
        "meta": meta,
        "state": flatten_state(state, "state", tensors),
        "objects": {name: flatten_state(state_of(obj), f"obj.{name}", tensors) for name, obj in objects.items()},
        "rng": flatten_state(rng_states(), "rng", tensors),
    }
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / TENSORS))
        (tmp / STATE).write_text(json.dumps(skeleton))
        names = (TENSORS, STATE)
        manifest = {"format": _FORMAT, "sha256": {n: sha256_file(tmp / n) for n in names}, "bytes": {n: (tmp / n).stat().st_size for n in names}, "config_sha256": config_sha256}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def verify_checkpoint(directory: Path) -> dict[str, Any]:
    """Check every file of a checkpoint against its manifest's sha256.

    Returns:
        The manifest (``format``, ``sha256``, ``config_sha256``).

    Raises:
        CheckpointError: a file missing, too large, or whose sha256 differs (named).
    """
    for name in (STATE, TENSORS, MANIFEST):
        if not (directory / name).exists():  # present but not a regular file: read_small / sha256_file say so
            raise CheckpointError(f"runs: checkpoint {directory} lacks {name} (expected {TENSORS}, {STATE} and {MANIFEST}; the checkpoint is damaged)")
    try:
        manifest = json.loads(read_small(directory / MANIFEST, what="runs"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"runs: cannot read checkpoint {directory}: {MANIFEST} is not JSON ({e})") from e
    hashes = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(hashes, dict) or set(hashes) != {TENSORS, STATE}:
        raise CheckpointError(f"runs: {directory / MANIFEST} does not list the sha256 of {TENSORS} and {STATE}; the checkpoint is damaged")
    sizes = manifest.get("bytes") if isinstance(manifest.get("bytes"), dict) else {}
    for name, want in hashes.items():
        st = os.stat(directory / name)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"runs: {directory / name} is not a regular file (a device, pipe or directory); the checkpoint is damaged: restore it or resume from another checkpoint")
        size = st.st_size
        if name in sizes and size != sizes[name]:  # checked first: a huge file is not read to be hashed
            raise CheckpointError(
                f"runs: {directory / name} is {size:,} bytes, but {MANIFEST} recorded {sizes[name]:,}: the file was changed or "
                f"damaged after it was written; restore it or resume from another checkpoint"
            )
        got = sha256_file(directory / name, what="runs")
        if got != want:
            raise CheckpointError(
                f"runs: {directory / name} does not match its sha256 in {MANIFEST} (got {got[:12]}..., recorded {str(want)[:12]}...): "
                f"the file was changed or damaged after it was written; restore it or resume from another checkpoint"
            )
    return manifest


def load_checkpoint(directory: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, after checking its sha256s.

    Returns:
        ``{"meta", "state", "objects", "rng", "manifest"}`` with tensors restored.

    Raises:
        CheckpointError: files missing, changed since written, unreadable or of another format.
    """
    jpath, tpath = directory / STATE, directory / TENSORS
    if not jpath.exists() or not tpath.exists():
        raise CheckpointError(f"runs: checkpoint {directory} lacks {STATE} or {TENSORS}")
    manifest = verify_checkpoint(directory)
    try:
        skeleton = json.loads(read_small(jpath, STATE_CAP, what="runs"))
        tensors = load_file(str(tpath))
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"runs: cannot read checkpoint {directory}: {e}") from e
    if not isinstance(skeleton, dict):
        raise CheckpointError(f"runs: {jpath} holds a JSON {type(skeleton).__name__} (expected an object with format, meta, state, objects, rng)")
    if skeleton.get("format") != _FORMAT:
        raise CheckpointError(f"runs: {jpath} has format {skeleton.get('format')!r} (expected {_FORMAT!r})")
    keys = ("meta", "state", "objects", "rng")
    missing = [k for k in keys if k not in skeleton]
    if missing:
        raise CheckpointError(f"runs: {jpath} lacks {missing} (expected the keys {list(keys)}; the checkpoint is damaged)")
    for k in ("meta", "objects", "rng"):
        if not isinstance(skeleton[k], dict):
            raise CheckpointError(f"runs: {jpath}: '{k}' is a JSON {type(skeleton[k]).__name__} (expected an object; the checkpoint is damaged)")
    try:
        out = {k: unflatten_state(skeleton[k], tensors) for k in keys}
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"runs: {jpath} is damaged ({type(e).__name__}: {e})") from e
    out["manifest"] = manifest
    return out
