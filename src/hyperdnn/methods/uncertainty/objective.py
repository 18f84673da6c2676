"""What the training objectives share: k draws per step, run batched, and the entry points.

An objective is built around a noise-conditioned HyperDNN; each training step
draws ``k`` fresh members (``z ~ N(0, std^2 I)``), runs the target with all
``k`` weight sets in one batched call (``(k, B, ...)``) and adds the task loss
of every member to a term that keeps the members apart. The subclasses say
which term: :class:`~.hypergan.HyperGAN` (an entropy estimate of the weights)
and :class:`~.svgd.FunctionalSVGD` (Stein repulsion between the members'
functions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError
from hyperdnn.hyperdnn import HyperDNN

from .ensemble import FixedMembers, noise_input
from .evaluate import UncertaintyResults, evaluate
from .likelihood import Likelihood, likelihood_from

__all__ = ["EnsembleObjective", "UncertaintyStep"]


@dataclass(frozen=True)
class UncertaintyStep:
    """One training step's values (detached floats): the total ``loss``, the members' mean
    task loss ``task`` (NLL) and the diversity term ``diversity`` as added to the loss."""

    loss: float
    task: float
    diversity: float


class EnsembleObjective:
    """Base of the training objectives (not used alone).

    Args:
        model: a HyperDNN with a ``Noise`` input.
        samples: members drawn per step (``k``).
        likelihood: ``"categorical"`` (logits), ``"gaussian"`` or ``Gaussian(std)``.
    """

    name = "objective"

    def __init__(self, model: HyperDNN, *, samples: int = 8, likelihood: Any = "categorical") -> None:
        self.noise = noise_input(model, type(self).__name__)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"{type(self).__name__}: samples must be a positive int (got {samples!r})")
        self.model = model
        self.samples = samples
        self.likelihood: Likelihood = likelihood_from(likelihood, type(self).__name__)

    def terms(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(total, task, diversity)`` for one batch, differentiable; subclasses define it."""
        raise NotImplementedError

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The differentiable training loss on a batch ``x (B, ...)``, ``y (B, ...)`` (fresh draws)."""
        return self.terms(x, y)[0]

    def step(self, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> UncertaintyStep:
        """One optimizer step on a batch: zero_grad, backward of :meth:`loss`, ``optimizer.step()``."""
        total, task, div = self.terms(x, y)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return UncertaintyStep(float(total.detach()), float(task.detach()), float(div.detach()))

    def members(self, k: int, *, seed: int | None = None, generator: torch.Generator | None = None) -> FixedMembers:
        """``k`` fixed members of the model (same draws on every call)."""
        return FixedMembers(self.model, k, seed=seed, generator=generator)

    def evaluate(self, data: Any, samples: int = 16, *, ood: Any = None, seed: int = 0) -> UncertaintyResults:
        """The metrics of ``samples`` fixed members (drawn with ``seed``) on ``data`` (and ``ood``)."""
        return evaluate(self.members(samples, seed=seed), data, ood=ood)

    def state_dict(self) -> dict[str, Any]:
        """Nothing is kept between steps (the model and optimizer save themselves)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Accepts the empty state of :meth:`state_dict`."""
        if state:
            raise ConfigError(f"{type(self).__name__}: unexpected state keys {sorted(state)}; this object keeps none")
