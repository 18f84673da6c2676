"""Low-rank outputs: every weight matrix as ``A @ B^T`` of a chosen rank.

A parameter of shape ``(out, *rest)`` with ``in = prod(rest)`` is made as
``A (out, r) @ B (in, r)^T``, reshaped; vectors (biases, norm scales) are
generated in full. The heads then hold ``d_h * r * (out + in)`` weights per
matrix instead of ``d_h * out * in``. (In the spirit of LoGAH, Zhou et al. 2024.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import OutputConfig, checked, choice, positive_int
from ..errors import ConfigError
from ..init import hyperfan_in_, zero_
from ..target import TargetSpec
from ..factored import Factored
from .multi_head import PerTensorTokens


@dataclass
class LowRank(OutputConfig):
    """Rank-``rank`` factors per weight matrix.

    Args:
        rank: rank of every generated matrix (> 0).
        embedding_dim: per-tensor embedding width (used with RNN/attention bodies).
        on_small: what to do with a matrix whose smaller side is below ``rank``:
            'error' (default) or 'full' (generate that matrix in full).
    """

    rank: int = checked(positive_int, default=4)
    embedding_dim: int = checked(positive_int, default=8)
    on_small: str = checked(choice("error", "full"), default="error")

    def build(self, spec: TargetSpec, cond_dim: int, body, initial) -> "LowRankOutput":
        for p in spec.params:
            if len(p.shape) >= 2:
                small = min(p.shape[0], math.prod(p.shape[1:]))
                if self.rank > small and self.on_small == "error":
                    raise ConfigError(
                        f"LowRank: rank {self.rank} is larger than the matrix {p.name!r} of shape {p.shape} "
                        f"(at most {small}); use a smaller rank, exclude it from generate=, or on_small='full'"
                    )
        return LowRankOutput(spec, cond_dim, body, self.rank, self.embedding_dim)


class LowRankOutput(PerTensorTokens):
    def __init__(self, spec: TargetSpec, cond_dim: int, body_cfg, rank: int, embedding_dim: int) -> None:
        super().__init__()
        self._setup(spec, cond_dim, body_cfg, embedding_dim)
        self.rank = rank
        self.factored: list[bool] = []
        heads = []
        d = self.body.out_features
        for p in spec.params:
            fac = len(p.shape) >= 2 and rank <= min(p.shape[0], math.prod(p.shape[1:]))
            self.factored.append(fac)
            width = rank * (p.shape[0] + math.prod(p.shape[1:])) if fac else p.numel
            heads.append(nn.Linear(d, width))
        self.heads = nn.ModuleList(heads)

    def forward(self, z: Tensor) -> dict[str, Tensor | Factored]:
        """``{name: Factored}`` for factored matrices (``A: (..., out, r)``, ``B: (..., in, r)``),
        dense tensors for the rest (vectors, and matrices generated in full)."""
        h = self.features(z)
        out: dict[str, Tensor | Factored] = {}
        for i, (p, head, fac) in enumerate(zip(self.spec.params, self.heads, self.factored)):
            y = head(self.feature_of(h, i))
            if fac:
                rows = p.shape[0]
                a = y[..., : rows * self.rank].unflatten(-1, (rows, self.rank))  # (..., out, r)
                b = y[..., rows * self.rank :].unflatten(-1, (-1, self.rank))  # (..., in, r)
                out[p.name] = Factored(a, b, p.shape)
            else:
                out[p.name] = y.unflatten(-1, p.shape) if p.shape else y.squeeze(-1)
        return out

    @torch.no_grad()
    def calibrate(self, probe: Tensor) -> None:
        h = self.features(probe.to(self.heads[0].weight))
        for i, (p, head, fac) in enumerate(zip(self.spec.params, self.heads, self.factored)):
            std, mean = self.spec.init_std[i], self.spec.init_mean[i]
            if not fac:
                hyperfan_in_(head, self.feature_of(h, i), std, mean)
                continue
            # Var(A B^T) = r Var(A) Var(B): both factors get std (Var_target / r) ** 0.25. A is
            # generated from the condition; B starts as a constant (its head's bias), learned
            # from there: a product of two generated factors would scale with |h|^4 and put
            # some conditions' weights far from the target's scale.
            factor_std = (std**2 / self.rank) ** 0.25
            rows_a = p.shape[0] * self.rank
            stds = torch.zeros(head.out_features)
            stds[:rows_a] = factor_std
            hyperfan_in_(head, self.feature_of(h, i), stds, 0.0)
            head.bias[rows_a:].normal_(0.0, factor_std)

    @torch.no_grad()
    def zero_(self) -> None:
        # Like LoRA, zero only B: A @ B^T starts at 0 and gradients still reach both factors.
        for p, head, fac in zip(self.spec.params, self.heads, self.factored):
            if fac:
                head.weight[p.shape[0] * self.rank :].zero_()
                head.bias[p.shape[0] * self.rank :].zero_()
            else:
                zero_(head)
