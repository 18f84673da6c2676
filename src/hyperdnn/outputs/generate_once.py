"""Generate once: one head makes the whole flattened theta from the body's features."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..bodies import BodyModule
from ..config import OutputConfig
from ..init import hyperfan_in_, zero_
from ..target import TargetSpec
from .base import OutputModule, make_tokens, split_flat, std_mean_rows


@dataclass
class GenerateOnce(OutputConfig):
    """theta = split(W h(z) + b): a single linear head of width ``P`` (all generated parameters).

    The simplest output; its head holds ``d_h * P`` weights, so it suits small targets.
    """

    def build(self, spec: TargetSpec, cond_dim: int, body, initial) -> OutputModule:
        return GenerateOnceOutput(spec, body.build(cond_dim))


class GenerateOnceOutput(OutputModule):
    def __init__(self, spec: TargetSpec, body: BodyModule) -> None:
        super().__init__()
        self.spec, self.body = spec, body
        self.head = nn.Linear(body.out_features, spec.numel)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        h = self.body(make_tokens(z, None)).squeeze(-2)  # (..., d_h)
        return split_flat(self.head(h), self.spec)  # (..., P) -> views

    def calibrate(self, probe: Tensor) -> None:
        std, mean = std_mean_rows(self.spec)
        hyperfan_in_(self.head, self.body(make_tokens(probe.to(self.head.weight), None)), std, mean)

    def has_embeddings(self) -> bool:
        return False

    def zero_(self) -> None:
        zero_(self.head)
