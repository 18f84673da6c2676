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
| (Implicit, encoding="grid") | implicit_grid.py | each tensor a grid sampled at any width by interpolation |

A strategy's config derives from :class:`hyperdnn.config.OutputConfig`; defining
the class registers it (``to_dict``/``from_dict`` and checkpoints need nothing
else).
"""

from __future__ import annotations

from ..config import OutputConfig
from ..factored import Factored
from .additive import Additive
from .base import OutputModule
from .chunk_wise import ChunkWise
from .component_wise import ComponentWise
from .generate_once import GenerateOnce
from .implicit import Implicit
from .low_rank import LowRank
from .multi_head import MultiHead

__all__ = ["Additive", "ChunkWise", "ComponentWise", "Factored", "GenerateOnce", "Implicit", "LowRank", "MultiHead",
           "OutputConfig", "OutputModule"]
