"""Save and load a HyperDNN: safetensors for tensors, JSON for the configuration.

A checkpoint directory holds ``config.json`` (the parts' configs, which target
parameters are generated and frozen, the shapes, and the sha256 of the
tensor file) and ``model.safetensors`` (the state dict). Nothing is unpickled,
and nothing named in a file is imported or run: a part's type name is looked
up among the registered configs only.

Loading trusts no size in the files: ``config.json`` is read with a size cap
and checked field by field; the safetensors header is read (capped too) and
checked against the file's length and against ``config.json``; the configs'
parts are built on the ``meta`` device (no memory) and every tensor they would
make is compared with the header before the model is built for real. Every
failure is a :class:`~hyperdnn.errors.CheckpointError` naming the file and the
field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import BodyConfig, InputConfig, NotStoredError, OutputConfig, from_dict, to_dict
from .errors import CheckpointError, ConfigError, HDTypeError, HyperDNNError

FORMAT = "hyperdnn-checkpoint"
VERSION = 1
CONFIG = "config.json"
TENSORS = "model.safetensors"
MAX_CONFIG_BYTES = 16 << 20  # a config.json lists names and shapes: a few hundred KB for the largest targets
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit on its JSON header
INIT_SCHEMES = ("target", "hyperfan-in", "hyperfan-out")

# safetensors dtype codes of the torch dtypes a state dict holds
_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
           "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


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


def _class_path(cls: type) -> str:
    """``module:qualname``, the class's full name (the colon keeps nested class names apart from the module)."""
    return f"{cls.__module__}:{cls.__qualname__}"


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
    shapes = {p.name: list(p.shape) for p in model.spec.params}
    own = {n: list(p.shape) for n, p in model.target.named_parameters() if n not in shapes}
    config = {
        "format": FORMAT,
        "version": VERSION,
        "inputs": to_dict(cfg["inputs"]) if cfg["inputs"] is not None else None,
        "outputs": to_dict(cfg["outputs"]) if cfg["outputs"] is not None else None,
        "body": to_dict(cfg["body"]) if cfg["body"] is not None else None,
        "generate": [[p.name, list(p.shape)] for p in model.spec.params],
        "freeze": list(model.frozen),
        "batch_dim": model.batch_dim,
        "check_finite": model.check_finite,
        "init": model.init_scheme,
        "target_class": type(model.target).__name__,
        "target_type": _class_path(type(model.target)),
        "target_parameters": [[n, shapes[n] if n in shapes else own[n]] for n in model.param_order],
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


# ------------------------------------------------------------ reading files with caps


def _read_capped(path: Path, cap: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes (a device, a fifo or a larger file is refused unread)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"load: {path} is not a regular file (a device, fifo or directory); "
                                      f"expected the {what} written by hd.save")
            if st.st_size > cap:
                raise CheckpointError(f"load: {path} is {st.st_size:,} bytes, more than the {cap:,} a {what} may have")
            data = f.read(cap + 1)
    except OSError as e:
        raise CheckpointError(f"load: cannot read {path} ({type(e).__name__}: {e})") from None
    if len(data) > cap:
        raise CheckpointError(f"load: {path} is more than the {cap:,} bytes a {what} may have")
    return data


def _parse_json(raw: bytes, path: Path) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, and ints of more than 4300 digits
        raise CheckpointError(f"load: {path} is not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"load: {path} is not a checkpoint config: its JSON is nested too deeply") from None


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)


def _check_structure(config: dict[str, Any], path: Path) -> None:
    """Every top-level field has the type and form ``save`` writes; the parts' configs are checked when decoded."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"load: {path}: {what}")

    gen = config.get("generate")
    if not isinstance(gen, list) or not gen or not all(
        isinstance(g, list) and len(g) == 2 and isinstance(g[0], str) and _is_shape(g[1]) for g in gen
    ):
        raise bad("'generate' must be a non-empty list of [name, shape] pairs")
    freeze = config.get("freeze")
    if not isinstance(freeze, list) or not all(isinstance(f, str) for f in freeze):
        raise bad("'freeze' must be a list of parameter names")
    bd = config.get("batch_dim")
    if not isinstance(bd, int) or isinstance(bd, bool) or bd < 0:
        raise bad(f"'batch_dim' must be a non-negative int (got {bd!r})")
    tensors = config.get("tensors")
    if not isinstance(tensors, dict) or not all(
        isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and _is_shape(v[1]) for v in tensors.values()
    ):
        raise bad("'tensors' must map names to [dtype, shape]")
    for key in ("inputs", "outputs", "body"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise bad(f"'{key}' must be an object (a part's config) or null (got {type(config[key]).__name__})")
    if not isinstance(config.get("target_class"), str):
        raise bad("'target_class' must be the target's class name")
    if "target_type" in config and not isinstance(config["target_type"], str):
        raise bad("'target_type' must be the target's module and class name")
    if "target_parameters" in config and not (isinstance(config["target_parameters"], list) and all(
        isinstance(g, list) and len(g) == 2 and isinstance(g[0], str) and _is_shape(g[1])
        for g in config["target_parameters"]
    )):
        raise bad("'target_parameters' must be a list of [name, shape] pairs")
    if not isinstance(config.get("check_finite", False), bool):
        raise bad(f"'check_finite' must be true or false (got {config.get('check_finite')!r})")
    if config.get("init", "target") not in INIT_SCHEMES:
        raise bad(f"'init' must be one of {list(INIT_SCHEMES)} (got {config.get('init')!r})")
    if not isinstance(config.get("sha256"), str):
        raise bad("'sha256' must be the hex sha256 of the tensor file")
    if not isinstance(config.get("extra", {}), dict):
        raise bad("'extra' must be an object")


def _run_directory_hint(d: Path, config: Any = None) -> str | None:
    """Why ``d`` looks like the directory of a run (``hyperdnn run``) or one of its checkpoints, or None."""
    try:
        if (d / "LATEST").is_file() or any(p.is_dir() for p in d.glob("checkpoint-*")) or \
                (isinstance(config, dict) and "recipe" in config):
            return f"{d} is a run directory (made by 'hyperdnn run')"
        if (d / "state.json").is_file() and (d / "tensors.safetensors").is_file():
            return f"{d} is a checkpoint of a run (made by 'hyperdnn run'); its run directory is {d.parent}"
    except OSError:
        return None
    return None


def _not_a_checkpoint(d: Path, why: str, config: Any = None) -> CheckpointError:
    hint = _run_directory_hint(d, config)
    if hint is not None:
        run_dir = d.parent if (d / "state.json").is_file() else d
        return CheckpointError(f"load: {hint}, not a model saved by hd.save; "
                               f"use hyperdnn.experiments.load_run({str(run_dir)!r}) to load a run")
    return CheckpointError(f"{why}; hd.load reads a directory written by hd.save (a run directory of 'hyperdnn run' "
                           f"loads with hyperdnn.experiments.load_run(run_dir))")


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks a checkpoint's config.json (size-capped, hash-checked, every field's type checked)."""
    d = Path(directory)
    path = d / CONFIG
    if not path.exists():
        raise _not_a_checkpoint(d, f"load: no {CONFIG} in {str(directory)!r}")
    config = _parse_json(_read_capped(path, MAX_CONFIG_BYTES, CONFIG), path)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise _not_a_checkpoint(d, f"load: {path} is not a hyperdnn checkpoint (format {config.get('format')!r})"
                                if isinstance(config, dict) else f"load: {path} is not a hyperdnn checkpoint", config)
    if config.get("version") != VERSION:
        raise CheckpointError(f"load: checkpoint version {config.get('version')!r} is not supported (expected {VERSION})")
    if config.get("config_sha256") != _config_hash(config):
        raise CheckpointError(f"load: {path} does not match its own sha256: modified after saving")
    _check_structure(config, path)
    return config


def read_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """The tensors a safetensors file declares, ``{name: (dtype code, shape)}``, checked against its length.

    Reads only the header (capped): a header that declares more bytes than the file
    holds, or tensors that overlap or leave gaps, is refused before anything is allocated.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"load: cannot read {path} (shorter than a safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise CheckpointError(f"load: cannot read {path} (its header declares {n:,} bytes; the file has {size:,})")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"load: cannot read {path} ({type(e).__name__}: {e})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"load: cannot read {path} (its header is not valid JSON: {type(e).__name__})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"load: cannot read {path} (its header is not a JSON object)")
    out: dict[str, tuple[str, list[int]]] = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(info, dict) and isinstance(info.get("dtype"), str) and info["dtype"] in _DTYPE_BYTES \
            and _is_shape(info.get("shape"))
        offsets = info.get("data_offsets") if ok else None
        if not ok or not _is_shape(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
            raise CheckpointError(f"load: cannot read {path} (its header entry {name!r} is malformed)")
        nbytes = math.prod(info["shape"]) * _DTYPE_BYTES[info["dtype"]]
        if offsets[1] - offsets[0] != nbytes:
            raise CheckpointError(f"load: cannot read {path} (tensor {name!r} of shape {tuple(info['shape'])} "
                                  f"needs {nbytes:,} bytes; its header gives it {offsets[1] - offsets[0]:,})")
        spans.append((offsets[0], offsets[1]))
        out[name] = (info["dtype"], info["shape"])
    end = 0
    for start, stop in sorted(spans):
        if start != end:
            raise CheckpointError(f"load: cannot read {path} (its tensors overlap or leave a gap at byte {end:,})")
        end = stop
    if 8 + n + end != size:
        raise CheckpointError(f"load: cannot read {path} (its header accounts for {8 + n + end:,} bytes; "
                              f"the file has {size:,})")
    return out


# ------------------------------------------------------------ loading


def _check_target(config: dict[str, Any], target: nn.Module, path: Path, shapes: bool = True) -> None:
    """The target is of the checkpoint's class (module and name) and has its parameters' names
    (and, with ``shapes``, their shapes)."""
    if not isinstance(target, nn.Module):
        raise HDTypeError(f"load: target must be a torch.nn.Module (got {type(target).__name__})")
    cls = type(target)
    saved_type = config.get("target_type")
    if saved_type is None:  # written before target_type was stored: the class name is all there is
        same, detail = cls.__name__ == config["target_class"], ""
    else:
        module, _, qualname = saved_type.partition(":")
        # A script's classes live in __main__ when it runs and under the file's name when imported.
        same = qualname == cls.__qualname__ and (module == cls.__module__ or "__main__" in (module, cls.__module__))
        detail = f" (expected {module}.{qualname}, got {cls.__module__}.{cls.__qualname__})"
    if not same:
        raise CheckpointError(f"load: the checkpoint was made for a target of class {config['target_class']!r}; "
                              f"got {cls.__name__!r}{detail}")
    params = dict(target.named_parameters())
    generated = {n for n, _ in config["generate"]}
    expected = [tuple(g) for g in config["generate"]]
    expected += [tuple(g) for g in config.get("target_parameters", []) if g[0] not in generated]
    for name, shape in expected:
        if name not in params:
            what = "generates" if name in generated else "holds"
            raise CheckpointError(f"load: the target has no parameter {name!r}, which the checkpoint {what}")
        if shapes and list(params[name].shape) != list(shape):
            raise CheckpointError(
                f"load: target parameter {name!r} has shape {tuple(params[name].shape)}; the checkpoint was made "
                f"for shape {tuple(shape)}"
            )
    if "target_parameters" in config:
        names = {n for n, _ in expected}
        extra = [n for n in params if n not in names]
        if extra:
            raise CheckpointError(f"load: the target has parameters {extra[:5]} that the checkpoint's target "
                                  f"({config['target_class']}) has not")


def _decode_parts(config: dict[str, Any], path: Path, encoder: nn.Module | None) -> dict[str, Any]:
    given = {} if encoder is None else {"encoder": encoder}
    parts: dict[str, Any] = {}
    for key, base in (("inputs", InputConfig), ("outputs", OutputConfig), ("body", BodyConfig)):
        if config[key] is None:
            parts[key] = None
            continue
        try:
            parts[key] = from_dict(base, config[key], where=key, **given)
        except NotStoredError as e:  # not a fault of the file: the caller must give the module
            raise ConfigError(f"load: {e}") from None
        except (HyperDNNError, RecursionError) as e:
            raise CheckpointError(f"load: {path}: {e}") from None
    return parts


def _first_line(e: BaseException) -> str:
    """An exception's message without the C++ frames torch appends to some."""
    lines = str(e).splitlines()
    return lines[0] if lines else ""


def _check_counts(parts: dict[str, Any], n_tensors: int, path: Path) -> None:
    """Fields that count layers (``counts_tensors``) stay within the file's tensor count, before any build."""
    from dataclasses import fields, is_dataclass

    def walk(cfg: Any, where: str) -> None:
        if not is_dataclass(cfg):
            return
        for f in fields(cfg):
            v = getattr(cfg, f.name)
            if f.metadata.get("counts_tensors"):
                n = len(v) if isinstance(v, tuple) else v
                if n > n_tensors:
                    raise CheckpointError(f"load: {path}: {where}.{f.name} is {v!r}, more layers than the "
                                          f"{n_tensors} tensors {TENSORS} holds")
            for i, sub in enumerate(v if isinstance(v, tuple) else (v,)):
                if is_dataclass(sub) and not isinstance(sub, type):
                    walk(sub, f"{where}.{f.name}" + (f"[{i}]" if isinstance(v, tuple) else ""))

    for key, cfg in parts.items():
        walk(cfg, key)


def _check_sizes(parts: dict[str, Any], config: dict[str, Any], target: nn.Module,
                 header: dict[str, tuple[str, list[int]]], path: Path) -> None:
    """Builds the hypernetwork's parts on the meta device (no memory) and compares every tensor with the header."""
    from .bodies import MLP
    from .conditioning import NoInput
    from .outputs import GenerateOnce
    from .target import prepare_target

    try:
        _, spec, initial = prepare_target(target, [n for n, _ in config["generate"]], list(config["freeze"]) or None)
        with torch.device("meta"):
            inputs = NoInput() if parts["inputs"] is None else parts["inputs"].build()
            outputs = (parts["outputs"] or GenerateOnce()).build(spec, inputs.dim, parts["body"] or MLP(), initial)
    except (HyperDNNError, RuntimeError, TypeError, ValueError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"load: {path}: the configured parts do not build for this target "
                              f"({type(e).__name__}: {_first_line(e)})") from None
    made = {f"hypernetwork.inputs.{k}": list(v.shape) for k, v in inputs.state_dict().items()}
    made.update({f"hypernetwork.outputs.{k}": list(v.shape) for k, v in outputs.state_dict().items()})
    for name, shape in made.items():
        if name not in header:
            raise CheckpointError(f"load: {path}: the configured parts make a tensor {name!r} that {TENSORS} lacks")
        if header[name][1] != shape:
            raise CheckpointError(f"load: {path}: the configured parts make {name!r} of shape {tuple(shape)}; "
                                  f"{TENSORS} holds {tuple(header[name][1])}")
    extra = sorted(k for k in header if k.startswith("hypernetwork.") and k not in made)
    if extra:
        raise CheckpointError(f"load: {path}: {TENSORS} holds {extra[:5]}, which the configured parts do not make")


def load(directory: str | os.PathLike, target: nn.Module, encoder: nn.Module | None = None,
         map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds a HyperDNN from ``directory`` around ``target`` (a fresh instance of the same class).

    The target must be of the class the checkpoint was made for (module and class
    name; a class of a script, in ``__main__``, matches by name) and have the same
    parameter names and shapes.

    Args:
        directory: a directory written by :func:`save`.
        target: the target module (its values are replaced by the checkpoint's).
        encoder: the encoder module, for a model with a ``DataEncoder`` input.
        map_location: device for the loaded tensors.

    Raises:
        CheckpointError: missing, truncated, oversized or tampered files, a
            malformed configuration (the message names the file and the field), a
            run directory instead of a model, or a target whose class or
            parameters do not match the checkpoint (the message names the tensor).
        ConfigError: a ``DataEncoder`` model loaded without ``encoder=``.
    """
    from .hyperdnn import HyperDNN

    d = Path(directory)
    config = read_config(d)
    path = d / CONFIG
    tensor_path = d / TENSORS
    if not tensor_path.is_file():
        raise CheckpointError(f"load: no {TENSORS} in {str(d)!r}")
    if _sha256(tensor_path) != config.get("sha256"):
        raise CheckpointError(f"load: {tensor_path} does not match the sha256 in {CONFIG}: truncated or modified")
    header = read_header(tensor_path)
    listed = config["tensors"]
    for name in sorted(set(listed) | set(header)):
        if name not in header or name not in listed or header[name][1] != listed[name][1] or \
                _DTYPES.get(listed[name][0], header[name][0]) != header[name][0]:
            raise CheckpointError(f"load: {path}: 'tensors' says {name!r} is {listed.get(name)}; "
                                  f"{TENSORS} holds {header.get(name)}")
    parts = _decode_parts(config, path, encoder)
    # An output strategy that serves any target of its family (hd.Implicit) has tensors that do not
    # depend on the target's widths: it loads around any member of the family.
    _check_target(config, target, path, shapes=not (parts["outputs"] is not None and parts["outputs"].any_target))
    _check_counts(parts, len(header), path)
    _check_sizes(parts, config, target, header, path)
    try:
        model = HyperDNN(
            target,
            inputs=parts["inputs"],
            outputs=parts["outputs"],
            body=parts["body"],
            generate=[n for n, _ in config["generate"]],
            freeze=list(config["freeze"]) or None,
            batch_dim=config["batch_dim"],
            check_finite=config.get("check_finite", False),
            init=config.get("init", "target"),
        )
    except (HyperDNNError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"load: {path} does not build a model ({type(e).__name__}: {_first_line(e)})") from None
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
