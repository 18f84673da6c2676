"""Outputs axis: how theta is produced. One file per strategy.

| strategy | file | what the hypernetwork makes |
|---|---|---|
| GenerateOnce | generate_once.py | all of theta from one head |
| MultiHead | multi_head.py | one head per target parameter tensor |
| ComponentWise | component_wise.py | tiles from per-tile embeddings (Ha et al.) |
| ChunkWise | chunk_wise.py | chunks from per-chunk embeddings (von Oswald et al.) |
| LowRank | low_rank.py | ``A @ B^T`` factors per weight matrix |
| Additive | additive.py | ``theta0 + scale * delta`` (MIP, Ortiz et al.) |
| Implicit | implicit.py | each weight row from its coordinates, any width (NeuMeta) |
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..errors import ConfigError
from ..factored import Factored
from .additive import Additive
from .base import OutputModule
from .chunk_wise import ChunkWise
from .component_wise import ComponentWise
from .generate_once import GenerateOnce
from .implicit import Implicit
from .low_rank import LowRank
from .multi_head import MultiHead

DYNAMIC_OUTPUTS = ("Implicit",)  # strategies that serve call-time targets (hyperdnn.dynamic_target)
OUTPUT_TYPES = {c.__name__: c for c in (Additive, ChunkWise, ComponentWise, GenerateOnce, Implicit, LowRank, MultiHead)}


def output_to_json(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, Additive):
        return {"type": "Additive", "inner": output_to_json(cfg.inner), "scale": cfg.scale,
                "zero_init": cfg.zero_init, "learn_theta0": cfg.learn_theta0}
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    return {"type": type(cfg).__name__, **d}


def output_is_dynamic(data: dict[str, Any] | None) -> bool:
    """Whether a saved output config (``output_to_json``) makes weights for a target of any shape."""
    return isinstance(data, dict) and data.get("type") in DYNAMIC_OUTPUTS


def output_from_json(data: dict[str, Any]) -> Any:
    data = dict(data)
    kind = data.pop("type")
    if kind not in OUTPUT_TYPES:
        raise ConfigError(f"load: unknown output type {kind!r}; expected one of {sorted(OUTPUT_TYPES)}")
    if kind == "Additive":
        data["inner"] = output_from_json(data["inner"])
    if kind == "ComponentWise":
        data["tile"] = tuple(data["tile"])
    return OUTPUT_TYPES[kind](**data)


__all__ = ["Additive", "ChunkWise", "ComponentWise", "Factored", "GenerateOnce", "Implicit", "LowRank", "MultiHead", "OutputModule",
           "output_from_json", "output_is_dynamic", "output_to_json"]
