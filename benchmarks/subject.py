"""What every benchmarked implementation (limit, hyperdnn, peer) provides to the harness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


class Unavailable(Exception):
    """An implementation that cannot run a workload.

    Args:
        status: "missing" (library not installed), "n/a" (the library has no such strategy),
            "refuses" (it raises on this input), "wrong" (its output differs from the loop).
        reason: one line saying why.
    """

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass
class Subject:
    """One implementation of one workload.

    Args:
        name: row label in the tables.
        module: nn.Module holding every trainable tensor of the implementation.
        forward: x (B, in) -> logits (B, out); static workloads use the fixed task inside.
        loop_forward: dynamic workloads only: the per-sample loop reference, x -> logits,
            generating each sample's weights from a batch of one.
        note: free text shown in the tables (e.g. "loop over samples").
    """

    name: str
    module: nn.Module
    forward: Callable[[Tensor], Tensor]
    loop_forward: Callable[[Tensor], Tensor] | None = None
    note: str = ""

    def params(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def n_params(self) -> int:
        return sum(p.numel() for p in self.params())

    def make_step(self, x: Tensor, y: Tensor, lr: float = 1e-4) -> Callable[[], Tensor]:
        """A closure doing one forward + cross-entropy backward + Adam step."""
        opt = torch.optim.Adam(self.params(), lr=lr)
        forward = self.forward

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(forward(x), y)
            loss.backward()
            opt.step()
            return loss.detach()

        return step
