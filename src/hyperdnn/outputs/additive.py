"""Additive outputs (MIP, Ortiz et al. 2023): theta = theta0 + scale * delta.

``theta0`` is a learned copy of the target's own initial weights; ``delta`` comes
from any other output strategy. With ``zero_init`` the generator of ``delta``
starts at zero, so the HyperDNN starts exactly at the target's own init.

Ortiz, Guttag, Dalca, "Magnitude Invariant Parametrizations Improve
Hypernetwork Learning", ICLR 2024 (arXiv:2304.07645).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..config import OutputConfig, checked, flag, number, require_config
from ..errors import ConfigError
from ..target import TargetSpec
from .base import OutputModule, split_flat
from ..factored import Factored
from .generate_once import GenerateOnce


@dataclass
class Additive(OutputConfig):
    """theta = theta0 + scale * inner(z).

    Args:
        inner: the output strategy that makes ``delta`` (default GenerateOnce).
        scale: multiplier of ``delta``.
        zero_init: start ``delta`` at exactly zero (theta = theta0 = the target's init).
        learn_theta0: train ``theta0`` (True) or keep it fixed.
    """

    inner: OutputConfig = field(default_factory=GenerateOnce)  # checked in check()
    scale: float = checked(number(), default=1.0)
    zero_init: bool = checked(flag, default=True)
    learn_theta0: bool = checked(flag, default=True)

    def check(self) -> None:
        if isinstance(self.inner, Additive):
            raise ConfigError("Additive: inner must be another output strategy, not an Additive")
        require_config("Additive", "inner", self.inner, OutputConfig)

    def build(self, spec: TargetSpec, cond_dim: int, body, initial: dict[str, Tensor]) -> OutputModule:
        return AdditiveOutput(spec, self.inner.build(spec, cond_dim, body, initial), initial, self.scale, self.zero_init, self.learn_theta0)


class AdditiveOutput(OutputModule):
    def __init__(self, spec: TargetSpec, inner: OutputModule, initial: dict[str, Tensor], scale: float, zero_init: bool, learn: bool) -> None:
        super().__init__()
        self.spec, self.inner, self.scale, self.zero_init = spec, inner, scale, zero_init
        flat = torch.cat([initial[p.name].detach().reshape(-1).float() for p in spec.params]) if initial else torch.zeros(spec.numel)
        self.theta0 = nn.Parameter(flat.clone(), requires_grad=learn)

    @property
    def body(self):  # type: ignore[override]
        return self.inner.body

    def forward(self, z: Tensor) -> dict[str, Tensor | Factored]:
        base = split_flat(self.theta0, self.spec)
        delta = self.inner(z)
        # A factored delta stays factored (a LoRA: W0 x + s * B (A x) in the target paths).
        return {n: d.with_base(base[n], self.scale) if isinstance(d, Factored) else base[n] + self.scale * d
                for n, d in delta.items()}

    def calibrate(self, probe: Tensor) -> None:
        self.inner.calibrate(probe)
        if self.zero_init:
            self.inner.zero_()

    def has_embeddings(self) -> bool:
        return self.inner.has_embeddings()

    def zero_(self) -> None:
        self.inner.zero_()
