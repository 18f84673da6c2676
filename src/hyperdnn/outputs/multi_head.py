"""Multiple heads: a shared body and one linear head per target parameter tensor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import OutputConfig, checked, positive_int
from ..init import hyperfan_in_, zero_
from ..target import TargetSpec
from .base import OutputModule, make_tokens


@dataclass
class MultiHead(OutputConfig):
    """One head per generated parameter tensor, on a shared body.

    Args:
        embedding_dim: width of the learned per-tensor embedding appended to the
            condition when the body mixes tokens (RNN, attention): the body then
            sees one token per tensor, in the target's order.
    """

    embedding_dim: int = checked(positive_int, default=8)

    def build(self, spec: TargetSpec, cond_dim: int, body, initial) -> OutputModule:
        return MultiHeadOutput(spec, cond_dim, body, self.embedding_dim)


class PerTensorTokens(OutputModule):
    """Shared machinery of outputs with one token per tensor (multi-head, low-rank)."""

    def _setup(self, spec: TargetSpec, cond_dim: int, body_cfg, embedding_dim: int) -> None:
        # A body that mixes tokens (RNN, attention) needs to tell the tensors apart.
        if body_cfg.mixes_tokens:
            self.body = body_cfg.build(cond_dim + embedding_dim)
            self.embeddings = nn.Parameter(torch.randn(len(spec.params), embedding_dim))
        else:
            self.embeddings = None
            self.body = body_cfg.build(cond_dim)
        self.spec = spec

    def has_embeddings(self) -> bool:
        return self.embeddings is not None

    def features(self, z: Tensor) -> Tensor:
        """``(..., T, d_h)`` with ``T`` = number of tensors, or ``T = 1`` (shared) for token-wise bodies."""
        return self.body(make_tokens(z, self.embeddings))

    def feature_of(self, h: Tensor, i: int) -> Tensor:
        return h[..., i if self.embeddings is not None else 0, :]


class MultiHeadOutput(PerTensorTokens):
    def __init__(self, spec: TargetSpec, cond_dim: int, body_cfg, embedding_dim: int) -> None:
        super().__init__()
        self._setup(spec, cond_dim, body_cfg, embedding_dim)
        self.heads = nn.ModuleList(nn.Linear(self.body.out_features, p.numel) for p in spec.params)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        h = self.features(z)
        return {
            p.name: head(self.feature_of(h, i)).unflatten(-1, p.shape) if p.shape else head(self.feature_of(h, i)).squeeze(-1)
            for i, (p, head) in enumerate(zip(self.spec.params, self.heads))
        }

    def calibrate(self, probe: Tensor) -> None:
        h = self.features(probe.to(self.heads[0].weight))
        for i, head in enumerate(self.heads):
            hyperfan_in_(head, self.feature_of(h, i), self.spec.init_std[i], self.spec.init_mean[i])

    def zero_(self) -> None:
        for head in self.heads:
            zero_(head)
