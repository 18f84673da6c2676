"""HyperCRL's baselines: one dynamics network with a shared trunk and one output head per task.

The authors' baselines (``hypercrl/model/mbrl.py``, ``Baseline``/``MTBaseline``)
share the hidden layers and add a linear output layer per task. They differ in
the data each training step sees:

- ``"finetune"``: the current task's transitions only (the trunk forgets);
- ``"multitask"``: a batch of every task seen so far, all their data kept (the upper bound);
- ``"coreset"``: the current task's batch plus a small random subset of each earlier
  task's transitions kept when it ended (``M`` per task; the authors' Pendulum setting: 50).

Each step's loss is the sum over the tasks it sees of their mean squared error of
``s' - s``, as the authors' losses add one term per task.

Huang, Xie, Bharadhwaj, Shkurti, "Continual Model-Based Reinforcement Learning
with Hypernetworks", ICRA 2021.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.methods.hypercrl.buffer import Transitions

__all__ = ["MultiHeadDynamics", "ReplayBaseline"]

MODES = ("finetune", "multitask", "coreset")


class MultiHeadDynamics(nn.Module):
    """``[s, a] -> s' - s``: a shared ReLU trunk and one linear head per task.

    Args:
        state_dim: ``nx``; action_dim: ``nu``.
        hidden: trunk widths.
        num_tasks: heads.
    """

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...], num_tasks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = state_dim + action_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(width, state_dim) for _ in range(num_tasks))

    def forward(self, states: Tensor, actions: Tensor, task: int) -> Tensor:
        """The predicted change of state ``(B, nx)`` for ``task``."""
        return self.heads[task](self.trunk(torch.cat([states, actions], dim=-1)))


class ReplayBaseline:
    """Training of a :class:`MultiHeadDynamics` task after task, with the data a mode allows.

    Args:
        model: the network.
        optimizer: over its parameters (Adam; a fresh state per task, as the authors').
        mode: ``"finetune"``, ``"multitask"`` or ``"coreset"`` (see the module).
        coreset_size: transitions kept per finished task in ``"coreset"`` mode.
        generator: RNG for batches and coresets.
    """

    def __init__(self, model: MultiHeadDynamics, optimizer: torch.optim.Optimizer, mode: str, *, coreset_size: int = 50,
                 generator: torch.Generator | None = None) -> None:
        if not isinstance(model, MultiHeadDynamics):
            raise HDTypeError(f"ReplayBaseline: model must be a MultiHeadDynamics (got {type(model).__name__})")
        if mode not in MODES:
            raise ConfigError(f"ReplayBaseline: mode must be one of {MODES} (got {mode!r})")
        if isinstance(coreset_size, bool) or not isinstance(coreset_size, int) or coreset_size < 1:
            raise ConfigError(f"ReplayBaseline: coreset_size must be an int >= 1 (got {coreset_size!r})")
        self.model, self.optimizer, self.mode = model, optimizer, mode
        self.coreset_size, self.generator = coreset_size, generator
        self.task: int | None = None
        self.kept: list[Transitions] = []  # per earlier task: all its data (multitask) or its coreset

    def start_task(self, task: int) -> None:
        """Start ``task``: a fresh optimizer state."""
        if task != len(self.kept) or task >= len(self.model.heads):
            raise ConfigError(f"ReplayBaseline.start_task: tasks are learned in order and {len(self.kept)} are learned (got task {task})")
        self.optimizer.state.clear()
        self.task = task

    def end_task(self, data: Transitions) -> None:
        """Finish the current task; keep what the mode allows of its ``data``."""
        if self.mode == "multitask":
            self.kept.append(data)
        elif self.mode == "coreset":
            self.kept.append(data.subset(self.coreset_size, self.generator))
        else:
            self.kept.append(Transitions(data.state_dim, data.action_dim))
        self.task = None

    def step(self, data: Transitions, batch_size: int) -> Tensor:
        """One optimizer step on a batch of the current task's ``data`` plus the kept data of the
        earlier tasks (a batch of each for multitask, each whole coreset for coreset).

        Returns:
            The current task's loss, detached.
        """
        if self.task is None:
            raise ConfigError(f"ReplayBaseline.step: no task is being learned; call start_task({len(self.kept)}) first")
        s, a, s2 = data.sample(batch_size, self.generator)
        current = F.mse_loss(self.model(s, a, self.task), s2 - s)
        loss = current
        for k, old in enumerate(self.kept):
            if self.mode == "multitask":
                os_, oa, os2 = old.sample(batch_size, self.generator)
            elif self.mode == "coreset":
                os_, oa, os2 = old.states, old.actions, old.next_states
            else:
                continue
            loss = loss + F.mse_loss(self.model(os_, oa, k), os2 - os_)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return current.detach()

    @torch.no_grad()
    def dynamics(self, task: int) -> Callable[[Tensor, Tensor], Tensor]:
        """Task ``task``'s model as ``(K, nx), (K, nu) -> (K, nx)`` next states."""
        return lambda states, actions: states + self.model(states, actions, task)

    def state_dict(self) -> dict[str, Any]:
        return {"task": -1 if self.task is None else self.task, "kept": [d.state_dict() for d in self.kept]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task = None if state["task"] < 0 else int(state["task"])
        kept: Sequence[dict[str, Tensor]] = state["kept"]
        self.kept = []
        for d in kept:
            t = Transitions(d["states"].shape[1], d["actions"].shape[1])
            t.load_state_dict(d)
            self.kept.append(t)
