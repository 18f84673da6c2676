"""The preference input: a hypernetwork conditioned on a point of the simplex.

``Preference(2)`` reads ``model(x, preference=r)`` with ``r`` of shape ``(2,)`` (one
weight set, static) or ``(B, 2)`` (one per sample), and refuses a vector off the simplex
(a negative entry, or a sum other than 1) with an error saying how to normalise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hyperdnn.conditioning import Condition, InputModule
from hyperdnn.config import InputConfig, checked, keyword, number, positive_int
from hyperdnn.errors import ConfigError
from hyperdnn.methods.pareto.preferences import check_simplex

__all__ = ["Preference", "PreferenceInput"]


@dataclass
class Preference(InputConfig):
    """A preference vector on the simplex, ``model(x, preference=r)``, for Pareto-front learning.

    Like ``External`` with a check: the hypernetwork sees ``r`` itself (PHN feeds the ray
    to its MLP), but a vector with a negative entry or a sum other than 1 (within ``atol``)
    raises ``ConfigError``, because a Pareto hypernetwork is trained on the simplex only and
    its output elsewhere means nothing.

    Args:
        objectives: ``m``, the number of objectives (the vector's width, at least 2).
        name: keyword of the call; ``(m,)`` is static, ``(B, m)`` per-sample.
        atol: tolerance on the sum and on negative entries.
    """

    objectives: int = checked(positive_int)
    name: str = checked(keyword, default="preference")
    atol: float = checked(number(0.0, 0.5), default=1e-5)

    def check(self) -> None:
        if self.objectives < 2:
            raise ConfigError(f"Preference: objectives must be at least 2 (got {self.objectives}); one objective has no trade-off")

    def build(self) -> "PreferenceInput":
        return PreferenceInput(self.objectives, self.name, self.atol)


class PreferenceInput(InputModule):
    """Checks the caller's preference and passes it on as the condition embedding."""

    def __init__(self, objectives: int, name: str = "preference", atol: float = 1e-5) -> None:
        super().__init__()
        self.objectives, self.name, self.atol = objectives, name, atol
        self.dim = objectives
        self.keywords = (name,)

    def forward(self, x: Any, conditions: dict[str, Any]) -> Condition:
        r = conditions.get(self.name)
        if r is None:
            raise ConfigError(f"Preference: this model needs {self.name}=<tensor of shape ({self.objectives},) or "
                              f"(B, {self.objectives}) on the simplex>, e.g. {self.name}=torch.tensor({[round(1 / self.objectives, 3)] * self.objectives})")
        r = check_simplex("Preference", r, self.objectives, self.atol)
        return Condition(r, "static" if r.dim() == 1 else "per_sample")

    def probe(self, count: int) -> Tensor:
        # Calibrate the heads on typical inputs: uniform draws on the simplex.
        g = -torch.log(torch.rand(count, self.objectives).clamp_min(1e-12))
        return g / g.sum(dim=1, keepdim=True)
