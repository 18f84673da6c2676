"""Continual model-based reinforcement learning with hypernetworks (HyperCRL).

A task-conditioned hypernetwork generates a dynamics model per task; the output
regularizer of continual learning with hypernetworks keeps the earlier tasks'
models; a cross-entropy-method controller plans with the current task's model.
Tasks are environments with different physical parameters, met in sequence, and
old transitions are not revisited.

- :mod:`.method`: :class:`HyperCRL` and the dynamics network;
- :mod:`.cem`: the CEM model-predictive controller;
- :mod:`.baselines`: one shared network fine-tuned, trained on all data, or with a coreset;
- :mod:`.envs`: Pendulum tasks with per-task gravity, mass and length (gymnasium, optional);
- :mod:`.buffer`, :mod:`.episode`: a task's transitions and one episode of an agent.

Huang, Xie, Bharadhwaj, Shkurti, "Continual Model-Based Reinforcement Learning
with Hypernetworks", ICRA 2021 (arXiv 2009.11997).
"""

from hyperdnn.methods.hypercrl.baselines import MultiHeadDynamics, ReplayBaseline
from hyperdnn.methods.hypercrl.buffer import Transitions
from hyperdnn.methods.hypercrl.cem import CEMPlanner, rollout_cost
from hyperdnn.methods.hypercrl.envs import PendulumTask, make_pendulum, pendulum_cost
from hyperdnn.methods.hypercrl.episode import Episode, run_episode
from hyperdnn.methods.hypercrl.method import HyperCRL, dynamics_mlp

__all__ = [
    "CEMPlanner",
    "Episode",
    "HyperCRL",
    "MultiHeadDynamics",
    "PendulumTask",
    "ReplayBaseline",
    "Transitions",
    "dynamics_mlp",
    "make_pendulum",
    "pendulum_cost",
    "rollout_cost",
    "run_episode",
]
