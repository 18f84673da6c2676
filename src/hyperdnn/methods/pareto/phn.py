"""``ParetoHyperNetwork``: one hypernetwork for every trade-off between objectives (PHN).

A HyperDNN whose input is a :class:`Preference` maps a preference ``r`` on the simplex to
the target's weights. Each training step draws ``r ~ Dirichlet(alpha)``, the caller
computes the loss vector of the model at ``r`` on a batch, and the step scalarises it:

- ``solver="ls"`` (PHN-LS): ``sum_i r_i l_i``;
- ``solver="epo"`` (PHN-EPO): ``sum_i beta_i l_i`` with EPO's weights, from the gradients
  of each loss w.r.t. the hypernetwork's parameters (see :mod:`.epo`).

Navon, Shamsian, Chechik, Fetaya, "Learning the Pareto Front with Hypernetworks", ICLR 2021.
Their code's defaults: ``alpha = 0.2``, Adam, learning rate 1e-4, batch 256.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, HDTypeError, ShapeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.pareto.epo import epo_loss
from hyperdnn.methods.pareto.evaluation import ParetoResults, evaluate_front
from hyperdnn.methods.pareto.preference_input import PreferenceInput
from hyperdnn.methods.pareto.preferences import check_simplex, circle_rays, sample_dirichlet
from hyperdnn.methods.pareto.scalarization import linear_scalarization

__all__ = ["ParetoHyperNetwork", "ParetoStep"]


@dataclass(frozen=True)
class ParetoStep:
    """What one :meth:`ParetoHyperNetwork.step` did.

    Attributes:
        loss: the scalarised loss that was minimised (detached scalar).
        losses: the loss vector ``(m,)`` (detached).
        weights: the weights the losses were scalarised with ``(m,)`` (``r`` for LS, ``beta`` for EPO).
        mode: ``"ls"``, or EPO's ``"balance"`` / ``"descent"`` / ``"fallback"``.
    """

    loss: Tensor
    losses: Tensor
    weights: Tensor
    mode: str


class ParetoHyperNetwork:
    """Pareto-front learning with a preference-conditioned HyperDNN (PHN-LS or PHN-EPO).

    Args:
        model: a HyperDNN whose input is ``Preference(m)``.
        optimizer: over the hypernetwork's parameters (PHN: Adam, lr 1e-4).
        solver: ``"ls"`` or ``"epo"``.
        alpha: the Dirichlet concentration of the training preferences (PHN: 0.2).
        seed: seeds the numpy generator the preferences are drawn from.

    In your loop::

        r = phn.sample_preference()
        out1, out2 = model(x, preference=r)
        phn.step(torch.stack([ce(out1, y1), ce(out2, y2)]), r)
    """

    def __init__(self, model: HyperDNN, optimizer: torch.optim.Optimizer, *, solver: str = "epo", alpha: float = 0.2, seed: int | None = None) -> None:
        if not isinstance(model, HyperDNN):
            raise HDTypeError(f"ParetoHyperNetwork: model must be a HyperDNN (got {type(model).__name__})")
        inputs = model.hypernetwork.inputs
        if not isinstance(inputs, PreferenceInput):
            raise ConfigError(f"ParetoHyperNetwork: the model's input is {type(inputs).__name__}; build it with "
                              f"inputs=hd.methods.Preference(m) so that it is conditioned on a preference on the simplex")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise HDTypeError(f"ParetoHyperNetwork: optimizer must be a torch.optim.Optimizer (got {type(optimizer).__name__})")
        if solver not in ("ls", "epo"):
            raise ConfigError(f"ParetoHyperNetwork: solver must be 'ls' or 'epo' (got {solver!r})")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
            raise ConfigError(f"ParetoHyperNetwork: alpha must be a number > 0 (got {alpha!r})")
        self.model: HyperDNN = model
        self.optimizer: torch.optim.Optimizer = optimizer
        self.solver: str = solver
        self.alpha: float = float(alpha)
        self.objectives: int = inputs.objectives
        self.keyword: str = inputs.name
        self.rng: np.random.Generator = np.random.default_rng(seed)

    def sample_preference(self) -> Tensor:
        """One training preference ``(m,)`` from ``Dirichlet(alpha)``, on the model's device."""
        r = sample_dirichlet(1, self.objectives, self.alpha, rng=self.rng)[0]
        return r.to(self._device())

    def loss(self, losses: Tensor, preference: Tensor) -> tuple[Tensor, Tensor, str]:
        """The scalarised loss, its weights and the mode, without stepping (for a custom update)."""
        if not isinstance(losses, Tensor) or losses.shape != (self.objectives,):
            shape = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ShapeError(f"ParetoHyperNetwork: losses must be a tensor of shape ({self.objectives},) (got {shape}); "
                             f"stack the per-objective losses: torch.stack([l1, l2])")
        r = check_simplex("ParetoHyperNetwork", preference, self.objectives).reshape(self.objectives).to(losses)
        if self.solver == "ls":
            return linear_scalarization(losses, r), r, "ls"
        total, sol = epo_loss(losses, r, list(self.model.hypernetwork.parameters()))
        return total, torch.as_tensor(sol.weights, dtype=losses.dtype), sol.mode

    def step(self, losses: Tensor, preference: Tensor) -> ParetoStep:
        """One update: scalarise ``losses`` (computed by the model at ``preference``), backward, optimizer step."""
        total, weights, mode = self.loss(losses, preference)
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step()
        return ParetoStep(total.detach(), losses.detach(), weights.detach(), mode)

    def evaluate(self, losses_at: Callable[[Tensor], Any], preferences: Tensor | None = None, reference: Sequence[float] = (2.0, 2.0)) -> ParetoResults:
        """Losses over a preference grid and their hypervolume, in eval mode and without gradients.

        Args:
            losses_at: ``r -> (m,)`` losses of ``self.model`` at ``r`` on the test data (or
                ``(losses, extras)``).
            preferences: ``(R, m)``; default PHN's 25 rays (:func:`circle_rays`, two objectives).
            reference: the hypervolume's reference point (PHN/COSMOS on Multi-MNIST: (2, 2)).
        """
        if preferences is None:
            if self.objectives != 2:
                raise ConfigError("ParetoHyperNetwork.evaluate: pass preferences=(R, m) for more than two objectives")
            preferences = circle_rays(25)
        check_simplex("ParetoHyperNetwork.evaluate", preferences, self.objectives)
        was = self.model.training
        self.model.eval()
        try:
            return evaluate_front(losses_at, preferences.to(self._device()), reference)
        finally:
            self.model.train(was)

    def state_dict(self) -> dict[str, Any]:
        """The preference generator's state (model and optimizer save themselves)."""
        return {"solver": self.solver, "alpha": self.alpha, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output; the solver and alpha must match."""
        if state.get("solver") != self.solver or state.get("alpha") != self.alpha:
            raise ConfigError(f"ParetoHyperNetwork.load_state_dict: saved solver/alpha {state.get('solver')!r}/{state.get('alpha')!r} "
                              f"differ from this object's {self.solver!r}/{self.alpha!r}; build it with the saved ones")
        self.rng.bit_generator.state = state["rng"]

    def _device(self) -> torch.device:
        return next(self.model.hypernetwork.parameters()).device
