"""Checkpoints of a run: every tensor in safetensors, the rest in JSON, RNG states included.

A checkpoint is a directory ``checkpoint-<step>/`` with ``tensors.safetensors``
(model, optimizer and other tensors, flattened to dotted keys) and
``state.json`` (the non-tensor state, the RNG states, the step); ``LATEST`` in
the run directory names the newest complete one. Nothing is unpickled.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hyperdnn.errors import CheckpointError

_LATEST = "LATEST"
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


def _state_of(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, dict):
        return dict(obj)
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise CheckpointError(f"runs: cannot track a {type(obj).__name__} (expected nn.Module, Optimizer, torch.Generator, dict of tensors or an object with state_dict/load_state_dict)")


def _load_state_into(obj: Any, state: Any, name: str) -> None:
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


def _rng_states() -> dict[str, Any]:
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


def _set_rng_states(states: dict[str, Any]) -> None:
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(states["cuda"]))


def save_checkpoint(directory: Path, objects: dict[str, Any], state: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write tracked objects, loop state, RNG states and meta into ``directory`` (safetensors + JSON).

    Args:
        directory: created; must not exist yet.
        objects: ``{name: tracked object}``.
        state: the recipe's JSON-able loop state.
        meta: extra JSON (global step, metrics offset).
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {
        "format": _FORMAT,
        "meta": meta,
        "state": flatten_state(state, "state", tensors),
        "objects": {name: flatten_state(_state_of(obj), f"obj.{name}", tensors) for name, obj in objects.items()},
        "rng": flatten_state(_rng_states(), "rng", tensors),
    }
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / "tensors.safetensors"))
    (tmp / "state.json").write_text(json.dumps(skeleton))
    tmp.rename(directory)


def load_checkpoint(directory: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``{"meta", "state", "objects", "rng"}`` with tensors restored.

    Raises:
        CheckpointError: files missing, unreadable or of another format.
    """
    jpath, tpath = directory / "state.json", directory / "tensors.safetensors"
    if not jpath.is_file() or not tpath.is_file():
        raise CheckpointError(f"runs: checkpoint {directory} lacks state.json or tensors.safetensors")
    try:
        skeleton = json.loads(jpath.read_text())
        tensors = load_file(str(tpath))
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
        return {k: unflatten_state(skeleton[k], tensors) for k in keys}
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"runs: {jpath} is damaged ({type(e).__name__}: {e})") from e


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint directory that ``run_dir/LATEST`` names, or None when LATEST was never written.

    Raises:
        CheckpointError: LATEST unreadable, not ``checkpoint-<step>``, or naming a directory
            that does not exist (never a silent start from step 0).
    """
    latest = Path(run_dir) / _LATEST
    if not latest.exists():
        return None
    try:
        name = latest.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"runs: cannot read {latest}: {e}") from e
    if not re.fullmatch(r"checkpoint-\d+", name):
        raise CheckpointError(f"runs: {latest} holds {name[:80]!r} (expected the name of a checkpoint directory, 'checkpoint-<step>')")
    path = Path(run_dir) / name
    if not path.is_dir():
        raise CheckpointError(
            f"runs: {latest} names {name}, but {path} does not exist; restore that directory "
            f"(or write the name of another checkpoint-<step> directory of this run into LATEST) to resume"
        )
    return path

