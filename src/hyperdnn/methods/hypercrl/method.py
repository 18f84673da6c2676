"""``HyperCRL``: continual model-based RL with a task-conditioned hypernetwork.

For each task ``t`` the hypernetwork generates the weights of a dynamics model
``f(s, a; H(e_t))`` that predicts the change of state ``s' - s`` (the authors'
``dnn_out = "diff"``). While task ``t`` is learned from its own transitions only,
the output regularizer of continual learning with hypernetworks keeps ``H(e_k)``
of the earlier tasks where they were, so their dynamics models, and the plans
made with them, stay as they were; old transitions are never revisited. A
controller (:class:`hyperdnn.methods.hypercrl.CEMPlanner`) plans with
:meth:`HyperCRL.dynamics`.

Huang, Xie, Bharadhwaj, Shkurti, "Continual Model-Based Reinforcement Learning
with Hypernetworks", ICRA 2021 (arXiv 2009.11997); the regularizer is von
Oswald et al., ICLR 2020 (:class:`hyperdnn.methods.ContinualLearning`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.continual import ContinualLearning, ContinualStep

__all__ = ["HyperCRL", "dynamics_mlp"]


def dynamics_mlp(state_dim: int, action_dim: int, hidden: tuple[int, ...] = (32, 32)) -> nn.Sequential:
    """The dynamics model's network: ``[s, a] (nx + nu) -> s' - s (nx)``, ReLU between layers.

    The authors' Pendulum setting uses ``hidden = (32, 32)`` (``h_dims``) and no input
    normalisation (``normalize_xu = False``).
    """
    for name, v in (("state_dim", state_dim), ("action_dim", action_dim), *((f"hidden[{i}]", h) for i, h in enumerate(hidden))):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"dynamics_mlp: {name} must be an int >= 1 (got {v!r})")
    layers: list[nn.Module] = []
    width = state_dim + action_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, state_dim))
    return nn.Sequential(*layers)


class HyperCRL:
    """Continual model-based RL: a task-conditioned hypernetwork of dynamics models.

    Args:
        model: a ``HyperDNN`` whose target is a dynamics network ``[s, a] -> s' - s``
            (e.g. :func:`dynamics_mlp`) and whose inputs are ``TaskEmbedding(num_tasks, dim)``.
        optimizer: the optimizer over ``model.parameters()`` (Adam; a fresh state per task).
        beta: output-regularizer strength (the authors' Pendulum setting: 0.05, with the
            task loss a per-sample mean as here).
        lookahead: evaluate the regularizer at ``phi + Delta phi`` (the authors' default).

    Use::

        crl = HyperCRL(model, torch.optim.Adam(model.parameters(), lr=1e-4), beta=0.05)
        for t in range(num_tasks):
            crl.start_task(t)
            for _ in range(steps):                     # between rounds of acting in task t's env
                s, a, s2 = buffer_t.sample(batch)
                crl.step(crl.loss(s, a, s2, t))
            action = planner.act(crl.dynamics(t), state)
            crl.end_task()
    """

    def __init__(self, model: HyperDNN, optimizer: torch.optim.Optimizer, *, beta: float = 0.05, lookahead: bool = True) -> None:
        self.cl = ContinualLearning(model, optimizer, beta=beta, lookahead=lookahead, reset_optimizer=True, metric="mse")
        self.model = model
        first = next(iter(model.spec.params))
        self.state_dim = _out_features(model)
        self.in_features = int(first.shape[-1])

    @property
    def learned(self) -> int:
        """Tasks learned so far."""
        return self.cl.learned

    def start_task(self, task: int) -> None:
        """Start learning ``task`` (in order 0, 1, ...): stores ``H*(e_k)`` for ``k < task``, fresh Adam."""
        self.cl.start_task(task)

    def end_task(self) -> None:
        """Finish the current task."""
        self.cl.end_task()

    def loss(self, states: Tensor, actions: Tensor, next_states: Tensor, task: int) -> Tensor:
        """Mean squared error of the predicted change of state on a batch of ``task``.

        Args:
            states: ``(B, nx)``; actions: ``(B, nu)``; next_states: ``(B, nx)``.
        """
        x = self._inputs(states, actions, "HyperCRL.loss")
        return F.mse_loss(self.model(x, task=task), next_states - states)

    def step(self, loss: Tensor) -> ContinualStep:
        """One optimizer step: ``loss`` plus ``beta`` times the output regularizer of the earlier tasks."""
        return self.cl.step(loss)

    @torch.no_grad()
    def dynamics(self, task: int) -> Callable[[Tensor, Tensor], Tensor]:
        """Task ``task``'s dynamics model as ``(K, nx), (K, nu) -> (K, nx)`` next states.

        The weights are generated once here (no gradient), so a planner's many calls run the
        small target network only.
        """
        theta = {k: v.detach() for k, v in self.model.weights(task=task).items()}

        def step(states: Tensor, actions: Tensor) -> Tensor:
            return states + self.model.run_target(self._inputs(states, actions, "HyperCRL.dynamics"), theta)

        return step

    def _inputs(self, states: Tensor, actions: Tensor, part: str) -> Tensor:
        if states.dim() != 2 or actions.dim() != 2 or states.shape[0] != actions.shape[0] or states.shape[1] + actions.shape[1] != self.in_features or states.shape[1] != self.state_dim:
            raise ShapeError(f"{part}: expected states (B, {self.state_dim}) and actions (B, {self.in_features - self.state_dim}) (got {tuple(states.shape)} and {tuple(actions.shape)})")
        return torch.cat([states, actions], dim=-1)

    def state_dict(self) -> dict[str, Any]:
        """The continual-learning state (stored targets, task, tasks learned)."""
        return self.cl.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cl.load_state_dict(state)


def _out_features(model: HyperDNN) -> int:
    """``nx``: the width of the target's last layer's output (its last generated bias or weight)."""
    last = list(model.spec.params)[-1]
    return int(last.shape[0])
