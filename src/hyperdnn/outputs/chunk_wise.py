"""Chunk-wise outputs (von Oswald et al., 2020): theta is made chunk by chunk.

The flattened theta (``P`` numbers) is cut into ``ceil(P / chunk_size)`` chunks;
each chunk ``c`` has a learned embedding ``e_c`` and the shared body+head makes
it from ``[z, e_c]``. The last chunk is trimmed to ``P``. The head holds
``d_h * chunk_size`` weights, so the hypernetwork can be much smaller than theta.

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..bodies import BodyModule
from ..config import OutputConfig, checked, number, positive_int
from ..init import hyperfan_in_, zero_
from ..target import TargetSpec
from .base import OutputModule, make_tokens, pooled_std_mean, split_flat


@dataclass
class ChunkWise(OutputConfig):
    """Chunked generation with learned chunk embeddings.

    Args:
        chunk_size: numbers per chunk (> 0).
        chunk_dim: width of each chunk's learned embedding (> 0).
        chunk_init_std: std of the initial chunk embeddings.
    """

    chunk_size: int = checked(positive_int, default=4096)
    chunk_dim: int = checked(positive_int, default=64)
    chunk_init_std: float = checked(number(0.0), default=1.0)

    def build(self, spec: TargetSpec, cond_dim: int, body, initial) -> OutputModule:
        return ChunkWiseOutput(spec, body.build(cond_dim + self.chunk_dim), self.chunk_size, self.chunk_dim, self.chunk_init_std)


class ChunkWiseOutput(OutputModule):
    def __init__(self, spec: TargetSpec, body: BodyModule, chunk_size: int, chunk_dim: int, init_std: float) -> None:
        super().__init__()
        self.spec, self.body, self.chunk_size = spec, body, chunk_size
        self.num_chunks = math.ceil(spec.numel / chunk_size)
        self.chunk_embeddings = nn.Parameter(torch.randn(self.num_chunks, chunk_dim) * init_std)
        self.head = nn.Linear(body.out_features, chunk_size)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        h = self.body(make_tokens(z, self.chunk_embeddings))  # (..., n_chunks, d_h)
        chunks = self.head(h)  # (..., n_chunks, chunk_size)
        return split_flat(chunks.flatten(-2), self.spec)  # (..., P); the last chunk's tail is dropped

    def calibrate(self, probe: Tensor) -> None:
        std, mean = pooled_std_mean(self.spec)
        h = self.body(make_tokens(probe[:4].to(self.head.weight), self.chunk_embeddings))
        hyperfan_in_(self.head, h, std, mean)

    def zero_(self) -> None:
        zero_(self.head)
