"""A task's transitions ``(s, a, s')``, grown as the agent acts, sampled for training."""

from __future__ import annotations

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["Transitions"]


class Transitions:
    """The transitions one task's agent collected.

    Args:
        state_dim: ``nx``.
        action_dim: ``nu``.

    Attributes:
        states, actions, next_states: ``(N, nx)``, ``(N, nu)``, ``(N, nx)``.
    """

    def __init__(self, state_dim: int, action_dim: int) -> None:
        self.state_dim, self.action_dim = state_dim, action_dim
        self.states = torch.zeros(0, state_dim)
        self.actions = torch.zeros(0, action_dim)
        self.next_states = torch.zeros(0, state_dim)

    def __len__(self) -> int:
        return self.states.shape[0]

    def add(self, states: Tensor, actions: Tensor, next_states: Tensor) -> None:
        """Append ``(n, nx)``, ``(n, nu)``, ``(n, nx)`` transitions."""
        s, a, s2 = (torch.as_tensor(t, dtype=torch.float32).reshape(-1, d) for t, d in ((states, self.state_dim), (actions, self.action_dim), (next_states, self.state_dim)))
        if not s.shape[0] == a.shape[0] == s2.shape[0]:
            raise ShapeError(f"Transitions.add: states, actions and next_states must hold the same number of rows (got {s.shape[0]}, {a.shape[0]}, {s2.shape[0]})")
        self.states = torch.cat([self.states, s])
        self.actions = torch.cat([self.actions, a])
        self.next_states = torch.cat([self.next_states, s2])

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` transitions drawn uniformly with replacement: ``(s, a, s')``."""
        if len(self) == 0:
            raise ConfigError("Transitions.sample: no transitions collected yet; add some first")
        idx = torch.randint(len(self), (n,), generator=generator)
        return self.states[idx], self.actions[idx], self.next_states[idx]

    def subset(self, n: int, generator: torch.Generator | None = None) -> "Transitions":
        """``min(n, len)`` transitions drawn without replacement (a coreset)."""
        idx = torch.randperm(len(self), generator=generator)[:n]
        out = Transitions(self.state_dim, self.action_dim)
        out.add(self.states[idx], self.actions[idx], self.next_states[idx])
        return out

    def state_dict(self) -> dict[str, Tensor]:
        return {"states": self.states.clone(), "actions": self.actions.clone(), "next_states": self.next_states.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.states, self.actions, self.next_states = state["states"].clone(), state["actions"].clone(), state["next_states"].clone()
