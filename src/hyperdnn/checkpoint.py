"""Save and load a HyperDNN: safetensors for tensors, JSON for the configuration.

A checkpoint directory holds ``config.json`` (the parts' configs, which target
parameters are generated and frozen, the shapes, and the sha256 of the
tensor file) and ``model.safetensors`` (the state dict). Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .bodies import body_from_json, body_to_json
from .conditioning import input_from_json, input_to_json
from .errors import CheckpointError
from .outputs import output_from_json, output_is_dynamic, output_to_json

FORMAT = "hyperdnn-checkpoint"
VERSION = 1
CONFIG = "config.json"
TENSORS = "model.safetensors"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def state_for_safetensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, with storage shared between entries broken (safetensors refuses aliases)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for k, v in state.items():
        v = v.detach()
        key = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else (id(v), 0)
        if key in seen or not v.is_contiguous():
            v = v.contiguous().clone()
        seen.add(key)
        out[k] = v
    return out


def save(model: nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Writes ``model`` (a HyperDNN) to ``directory`` as config.json + model.safetensors.

    Args:
        model: the HyperDNN.
        directory: created if missing; existing checkpoint files are overwritten.
        extra: JSON-able metadata stored under ``"extra"`` in config.json.

    Returns:
        The directory path.
    """
    from .hyperdnn import HyperDNN

    if not isinstance(model, HyperDNN):
        raise CheckpointError(f"save: expected a HyperDNN (got {type(model).__name__})")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = state_for_safetensors(model.state_dict())
    tmp = d / (TENSORS + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, d / TENSORS)
    cfg = model.configs
    config = {
        "format": FORMAT,
        "version": VERSION,
        "inputs": input_to_json(cfg["inputs"]),
        "outputs": output_to_json(cfg["outputs"]) if cfg["outputs"] is not None else None,
        "body": body_to_json(cfg["body"]) if cfg["body"] is not None else None,
        "generate": [[p.name, list(p.shape)] for p in model.spec.params],
        "freeze": list(model.frozen),
        "batch_dim": model.batch_dim,
        "check_finite": model.check_finite,
        "init": model.init_scheme,
        "target_class": type(model.target).__name__,
        "tensors": {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in state.items()},
        "sha256": _sha256(d / TENSORS),
        "extra": extra or {},
    }
    config["config_sha256"] = _config_hash(config)
    (d / CONFIG).write_text(json.dumps(config, indent=2))
    return d


def _config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the config, without this hash itself."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_structure(config: dict[str, Any], path: Path) -> None:
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"load: {path}: {what}")

    gen = config.get("generate")
    if not isinstance(gen, list) or not gen or not all(
        isinstance(g, list) and len(g) == 2 and isinstance(g[0], str) and isinstance(g[1], list)
        and all(isinstance(s, int) for s in g[1]) for g in gen
    ):
        raise bad("'generate' must be a non-empty list of [name, shape] pairs")
    freeze = config.get("freeze")
    if not isinstance(freeze, list) or not all(isinstance(f, str) for f in freeze):
        raise bad("'freeze' must be a list of parameter names")
    if not isinstance(config.get("batch_dim"), int) or isinstance(config.get("batch_dim"), bool):
        raise bad("'batch_dim' must be an int")
    tensors = config.get("tensors")
    if not isinstance(tensors, dict):
        raise bad("'tensors' must map names to [dtype, shape]")


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks a checkpoint's config.json."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"load: no {CONFIG} in {str(directory)!r}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"load: {path} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"load: {path} is not a hyperdnn checkpoint (format {config.get('format')!r})"
                              if isinstance(config, dict) else f"load: {path} is not a hyperdnn checkpoint")
    if config.get("version") != VERSION:
        raise CheckpointError(f"load: checkpoint version {config.get('version')!r} is not supported (expected {VERSION})")
    if config.get("config_sha256") != _config_hash(config):
        raise CheckpointError(f"load: {path} does not match its own sha256: modified after saving")
    _check_structure(config, path)
    return config


def load(directory: str | os.PathLike, target: nn.Module, encoder: nn.Module | None = None,
         map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds a HyperDNN from ``directory`` around ``target`` (a fresh instance of the same class).

    Args:
        directory: a directory written by :func:`save`.
        target: the target module (its values are replaced by the checkpoint's).
        encoder: the encoder module, for a model with a ``DataEncoder`` input.
        map_location: device for the loaded tensors.

    Raises:
        CheckpointError: missing, truncated or tampered files, or a target whose
            parameters do not match the checkpoint (the message names the tensor).
    """
    from .hyperdnn import HyperDNN

    d = Path(directory)
    config = read_config(d)
    tensor_path = d / TENSORS
    if not tensor_path.is_file():
        raise CheckpointError(f"load: no {TENSORS} in {str(d)!r}")
    if _sha256(tensor_path) != config.get("sha256"):
        raise CheckpointError(f"load: {tensor_path} does not match the sha256 in {CONFIG}: truncated or modified")
    if type(target).__name__ != config.get("target_class"):
        raise CheckpointError(
            f"load: the checkpoint was made for a target of class {config.get('target_class')!r}; "
            f"got {type(target).__name__!r}"
        )
    shapes = dict(target.named_parameters())
    # An implicit (dynamic-output) model's tensors do not depend on the target's widths:
    # it loads around any member of its family.
    any_width = output_is_dynamic(config.get("outputs"))
    for name, shape in config["generate"]:
        if name not in shapes:
            raise CheckpointError(f"load: the target has no parameter {name!r}, which the checkpoint generates")
        if list(shapes[name].shape) != list(shape) and not any_width:
            raise CheckpointError(
                f"load: target parameter {name!r} has shape {tuple(shapes[name].shape)}; the checkpoint was made "
                f"for shape {tuple(shape)}"
            )
    try:
        model = HyperDNN(
            target,
            inputs=input_from_json(config["inputs"], encoder),
            outputs=output_from_json(config["outputs"]) if config["outputs"] else None,
            body=body_from_json(config["body"]) if config["body"] else None,
            generate=[n for n, _ in config["generate"]],
            freeze=list(config["freeze"]) or None,
            batch_dim=config["batch_dim"],
            check_finite=config.get("check_finite", False),
            init=config.get("init", "target"),
        )
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"load: {CONFIG} is incomplete or malformed ({e!r})") from None
    try:
        state = load_file(str(tensor_path), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"load: cannot read {tensor_path} ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        raise CheckpointError(f"load: tensors do not match the model: missing {missing}, unknown {unknown}")
    for k, v in state.items():
        if v.dtype != expected[k].dtype:
            raise CheckpointError(
                f"load: tensor {k!r} is {v.dtype} in the checkpoint but {expected[k].dtype} in the model; "
                "convert the target (e.g. target.double()) before loading"
            )
        if v.shape != expected[k].shape:
            raise CheckpointError(
                f"load: tensor {k!r} has shape {tuple(v.shape)} in the checkpoint but {tuple(expected[k].shape)} in the model"
            )
    model.load_state_dict(state, strict=True)
    return model.to(map_location)
