"""Continual RL tasks: gymnasium's Pendulum with per-task physical parameters.

HyperCRL's "pendulum" setting (the authors' ``hypercrl/envs/cl_env.py``) is a
sequence of ``Pendulum`` environments that differ only in gravity, set on the
environment object (``env.env.g = 10 + 2 * task_id``); mass and length are
varied here the same way (``m``, ``l`` of gymnasium's ``PendulumEnv``). The
observation is ``(cos theta, sin theta, theta_dot)``, the action a torque in
``[-2, 2]``; the cost the planner uses is the environment's own reward,
negated (the authors' ``hypercrl/control/reward.py``).

gymnasium is an optional dependency (``pip install 'hyperdnn[rl]'``), imported
only when an environment is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["PendulumTask", "make_pendulum", "pendulum_cost"]


@dataclass(frozen=True)
class PendulumTask:
    """The physical parameters of one Pendulum task (gymnasium's defaults: 10, 1, 1).

    Attributes:
        gravity: ``g`` in m/s^2 (> 0).
        mass: ``m`` in kg (> 0).
        length: ``l`` in m (> 0).
    """

    gravity: float = 10.0
    mass: float = 1.0
    length: float = 1.0

    def __post_init__(self) -> None:
        for name in ("gravity", "mass", "length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"PendulumTask: {name} must be a finite number > 0 (got {v!r})")

    @property
    def name(self) -> str:
        """A short label, e.g. ``g=12 m=1 l=1``."""
        return f"g={self.gravity:g} m={self.mass:g} l={self.length:g}"


def make_pendulum(task: PendulumTask) -> Any:
    """A gymnasium ``Pendulum-v1`` environment with the task's gravity, mass and length.

    The parameters are set on the unwrapped ``PendulumEnv`` (its ``g``, ``m``, ``l``), which
    its ``step`` reads; the 200-step time limit of the registered environment is kept.

    Raises:
        ConfigError: gymnasium is not installed.
    """
    try:
        import gymnasium as gym
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("make_pendulum: gymnasium is not installed; install the extra with pip install 'hyperdnn[rl]'") from e
    env = gym.make("Pendulum-v1")
    base = env.unwrapped
    base.g, base.m, base.l = float(task.gravity), float(task.mass), float(task.length)
    return env


def pendulum_cost(next_state: Tensor, action: Tensor) -> Tensor:
    """Pendulum's cost (its reward negated) of a step: ``theta^2 + 0.1 theta_dot^2 + 0.001 u^2``.

    gymnasium charges the state before the step; the planner charges the state it
    predicts after it, as the authors' reward function does.

    Args:
        next_state: ``(K, 3)`` observations ``(cos theta, sin theta, theta_dot)``.
        action: ``(K, 1)`` torques.

    Returns:
        ``(K,)`` costs, with ``theta`` in ``(-pi, pi]`` (0 is upright).
    """
    if next_state.dim() != 2 or next_state.shape[-1] != 3 or action.dim() != 2 or action.shape[-1] != 1:
        raise ShapeError(f"pendulum_cost: expected next_state (K, 3) and action (K, 1) (got {tuple(next_state.shape)} and {tuple(action.shape)})")
    theta = torch.atan2(next_state[:, 1], next_state[:, 0])
    return theta**2 + 0.1 * next_state[:, 2] ** 2 + 0.001 * action[:, 0] ** 2
