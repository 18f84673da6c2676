"""Component-wise outputs (Ha, Dai, Le 2016): tiles generated from learned embeddings.

Every generated parameter is seen as ``(out, in, *k)`` (vectors as ``(out, 1)``)
and cut into tiles of ``(t_out, t_in, *k)``. Each tile has its own learned
embedding ``e``; a shared two-layer generator makes the tile, as in section
3.1 of Ha et al.:

    a_i = W_in^(i) h + b_in^(i)          for i = 1 .. t_in     (a_i of size d)
    K[:, i] = W_out a_i + b_out          (t_out * prod(k) numbers per input channel)

with ``h = body([z, e])`` (the identity body, ``MLP(hidden=())``, gives the
paper's exact formulation). Tiles with the same shape share one generator;
the tiles of a tensor are assembled and the edges trimmed when the channel
counts are not multiples of the tile.

Ha, Dai, Le, "HyperNetworks", arXiv:1609.09106 (ICLR 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import OutputConfig, checked, optional, positive_int, sizes
from ..init import hyperfan_in_, zero_
from ..target import TargetSpec
from .base import OutputModule, make_tokens, pooled_std_mean


@dataclass
class ComponentWise(OutputConfig):
    """Tile-wise generation with one learned embedding per tile.

    Args:
        tile: ``(t_out, t_in)``, the basic tile's output and input channels (> 0);
            smaller tensors use their own sizes.
        embedding_dim: width of each tile's embedding (Ha et al.'s ``N_z``).
        inner_dim: width ``d`` of the per-input-channel vectors ``a_i`` (default ``embedding_dim``).
    """

    tile: tuple[int, int] = checked(sizes(length=2, example=(16, 16)), default=(16, 16))
    embedding_dim: int = checked(positive_int, default=4)
    inner_dim: int | None = checked(optional(positive_int), default=None)

    def build(self, spec: TargetSpec, cond_dim: int, body, initial) -> OutputModule:
        return ComponentWiseOutput(
            spec, body.build(cond_dim + self.embedding_dim), self.tile, self.embedding_dim, self.inner_dim or self.embedding_dim
        )


class ComponentWiseOutput(OutputModule):
    def __init__(self, spec: TargetSpec, body, tile: tuple[int, int], embedding_dim: int, inner_dim: int) -> None:
        super().__init__()
        self.spec, self.body, self.inner_dim = spec, body, inner_dim
        # Per parameter: (group key, tiles along out, tiles along in, full shape as (out, in, *k)).
        self.layout: list[tuple[str, int, int, tuple[int, ...]]] = []
        self.group_shapes: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        self.group_members: dict[str, list[int]] = {}
        n_tiles = 0
        for i, p in enumerate(spec.params):
            shape = tuple(p.shape) if len(p.shape) >= 2 else (p.shape[0] if p.shape else 1, 1)
            out_c, in_c, k = shape[0], shape[1], shape[2:]
            t_out, t_in = min(tile[0], out_c), min(tile[1], in_c)
            key = f"{t_out}x{t_in}" + "".join(f"x{s}" for s in k)
            self.group_shapes[key] = (t_out, t_in, k)
            self.group_members.setdefault(key, []).append(i)
            n_o, n_i = math.ceil(out_c / t_out), math.ceil(in_c / t_in)
            self.layout.append((key, n_o, n_i, shape))
            n_tiles += n_o * n_i
        self.num_tiles = n_tiles
        self.tile_embeddings = nn.Parameter(torch.randn(n_tiles, embedding_dim))
        d_h = body.out_features
        self.w_in = nn.ModuleDict({key: nn.Linear(d_h, t_in * inner_dim) for key, (t_out, t_in, k) in self.group_shapes.items()})
        self.w_out = nn.ModuleDict(
            {key: nn.Linear(inner_dim, t_out * math.prod(k)) for key, (t_out, t_in, k) in self.group_shapes.items()}
        )

    def _tiles(self, h: Tensor) -> list[Tensor]:
        """Per parameter, its tiles ``(..., n_o, n_i, t_out, t_in, *k)`` from body features ``(..., n_tiles, d_h)``."""
        lead = h.shape[:-2]
        out, start = [], 0
        for key, n_o, n_i, shape in self.layout:
            t_out, t_in, k = self.group_shapes[key]
            hp = h[..., start : start + n_o * n_i, :]
            start += n_o * n_i
            a = self.w_in[key](hp).unflatten(-1, (t_in, self.inner_dim))  # (..., tiles, t_in, d)
            kern = self.w_out[key](a).unflatten(-1, (t_out, *k))  # (..., tiles, t_in, t_out, *k)
            kern = kern.transpose(-1 - len(k), -2 - len(k))  # (..., tiles, t_out, t_in, *k)
            out.append(kern.reshape(*lead, n_o, n_i, t_out, t_in, *k))
        return out

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        h = self.body(make_tokens(z, self.tile_embeddings))  # (..., n_tiles, d_h)
        theta = {}
        for p, tiles, (key, n_o, n_i, shape) in zip(self.spec.params, self._tiles(h), self.layout):
            t_out, t_in, k = self.group_shapes[key]
            lead = tiles.shape[:-4 - len(k)]
            nl = len(lead)
            # (n_o, n_i, t_out, t_in, *k) -> (n_o, t_out, n_i, t_in, *k) -> (n_o*t_out, n_i*t_in, *k)
            full = tiles.transpose(nl + 1, nl + 2).reshape(*lead, n_o * t_out, n_i * t_in, *k)
            full = full[..., : shape[0], : shape[1], *([slice(None)] * len(k))]
            theta[p.name] = full.reshape(*lead, *p.shape)
        return theta

    def calibrate(self, probe: Tensor) -> None:
        h = self.body(make_tokens(probe[:4].to(self.tile_embeddings), self.tile_embeddings))
        start = 0
        feats: dict[str, list[Tensor]] = {}
        for key, n_o, n_i, shape in self.layout:
            feats.setdefault(key, []).append(h[..., start : start + n_o * n_i, :])
            start += n_o * n_i
        for key, members in self.group_members.items():
            a = self.w_in[key](torch.cat(feats[key], dim=-2))
            std, mean = pooled_std_mean(self.spec, members)
            hyperfan_in_(self.w_out[key], a, std, mean)

    def zero_(self) -> None:
        for layer in self.w_out.values():
            zero_(layer)
