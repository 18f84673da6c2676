"""One episode of an agent in a gymnasium environment, recorded as transitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["Episode", "run_episode"]


@dataclass(frozen=True)
class Episode:
    """What :func:`run_episode` recorded.

    Attributes:
        states, actions, next_states: ``(T, nx)``, ``(T, nu)``, ``(T, nx)`` float32.
        total_reward: the environment's summed reward (the return, undiscounted).
    """

    states: Tensor
    actions: Tensor
    next_states: Tensor
    total_reward: float


def run_episode(env: Any, policy: Callable[[Tensor], Tensor] | None, seed: int, max_steps: int | None = None) -> Episode:
    """Run one episode from ``env.reset(seed=seed)`` until it terminates or is truncated.

    Args:
        env: a gymnasium environment with a Box action space.
        policy: ``(nx,) state -> (nu,) action``; None: uniform random actions from the action
            space, seeded with ``seed`` (the authors' random exploration at a task's start).
        seed: the reset seed (and the random actions' seed).
        max_steps: stop after this many steps at the latest (None: the environment's limit).

    Returns:
        The episode's transitions and return; actions are clipped to the action space.
    """
    obs, _ = env.reset(seed=seed)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed)
    states, actions, nexts, total = [], [], [], 0.0
    while max_steps is None or len(states) < max_steps:
        s = torch.as_tensor(obs, dtype=torch.float32)
        if policy is None:
            a = rng.uniform(low, high).astype(np.float32)
        else:
            a = np.clip(policy(s).detach().cpu().numpy().astype(np.float32), low, high)
        obs, reward, terminated, truncated, _ = env.step(a)
        states.append(s)
        actions.append(torch.as_tensor(a))
        nexts.append(torch.as_tensor(obs, dtype=torch.float32))
        total += float(reward)
        if terminated or truncated:
            break
    return Episode(torch.stack(states), torch.stack(actions), torch.stack(nexts), total)
