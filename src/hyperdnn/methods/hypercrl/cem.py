"""The cross-entropy method (CEM) as a model-predictive controller.

At every environment step CEM searches a sequence of ``H`` actions: it samples
``population`` sequences from a diagonal Gaussian, rolls each through the
learned dynamics from the current state, keeps the ``elites`` with the lowest
summed cost and refits the Gaussian to them, ``iterations`` times; the first
action of the final mean is applied (model-predictive control) and the rest,
shifted by one step, starts the next search.

HyperCRL (Huang, Xie, Bharadhwaj, Shkurti, ICRA 2021) plans with CEM on the
dynamics model its hypernetwork generates for the current task; the authors'
``hypercrl/control/cem.py`` samples from ``N(mean, std)`` (std 1 at the start),
clips to the action bounds and refits mean and std to the elites.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["CEMPlanner", "rollout_cost"]

# (K, nx), (K, nu) -> (K, nx): a batch of next states
Dynamics = Callable[[Tensor, Tensor], Tensor]
# (K, nx) next states, (K, nu) actions -> (K,) costs of the step
Cost = Callable[[Tensor, Tensor], Tensor]


def rollout_cost(dynamics: Dynamics, cost: Cost, state: Tensor, actions: Tensor) -> Tensor:
    """Summed cost of action sequences rolled through ``dynamics`` from one state.

    Args:
        dynamics: ``(K, nx), (K, nu) -> (K, nx)``.
        cost: ``(K, nx) next states, (K, nu) actions -> (K,)``.
        state: ``(nx,)`` the start state.
        actions: ``(K, H, nu)`` the sequences.

    Returns:
        ``(K,)`` the sum over the ``H`` steps of the cost of each step's next state and action.
    """
    if state.dim() != 1 or actions.dim() != 3:
        raise ShapeError(f"rollout_cost: state must be (nx,) and actions (K, H, nu) (got {tuple(state.shape)} and {tuple(actions.shape)})")
    K, H, _ = actions.shape
    s = state.expand(K, -1)
    total = actions.new_zeros(K)
    for h in range(H):
        s = dynamics(s, actions[:, h])
        total = total + cost(s, actions[:, h])
    return total


class CEMPlanner:
    """Model-predictive control by the cross-entropy method.

    Args:
        cost: ``(K, nx) next states, (K, nu) actions -> (K,)`` the known cost of a step
            (HyperCRL uses the task's true reward function).
        action_low: ``(nu,)`` lower bounds of the actions.
        action_high: ``(nu,)`` upper bounds.
        horizon: ``H``, actions planned ahead.
        population: sequences sampled per iteration.
        elites: the best sequences the Gaussian is refitted to.
        iterations: refits per environment step.
        init_std: the sampling std at the start of each search (the authors': 1).
        generator: RNG for the samples (None: torch's global RNG).

    Use: ``planner.reset()`` at an episode's start, then ``action = planner.act(dynamics, state)``
    at each step.
    """

    def __init__(self, cost: Cost, action_low: Tensor, action_high: Tensor, *, horizon: int = 15, population: int = 100,
                 elites: int = 5, iterations: int = 10, init_std: float = 1.0, generator: torch.Generator | None = None) -> None:
        for name, v in (("horizon", horizon), ("population", population), ("elites", elites), ("iterations", iterations)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"CEMPlanner: {name} must be an int >= 1 (got {v!r})")
        if elites > population:
            raise ConfigError(f"CEMPlanner: elites ({elites}) must be at most population ({population})")
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std > 0):
            raise ConfigError(f"CEMPlanner: init_std must be a finite number > 0 (got {init_std!r})")
        low, high = torch.as_tensor(action_low, dtype=torch.float32).reshape(-1), torch.as_tensor(action_high, dtype=torch.float32).reshape(-1)
        if low.shape != high.shape or not bool((low < high).all()):
            raise ConfigError(f"CEMPlanner: action_low must be below action_high elementwise, same shape (got {low.tolist()} and {high.tolist()})")
        self.cost, self.low, self.high = cost, low, high
        self.horizon, self.population, self.elites, self.iterations = horizon, population, elites, iterations
        self.init_std, self.generator = float(init_std), generator
        self.nu = low.numel()
        self.mean: Tensor | None = None

    def reset(self) -> None:
        """Forget the previous plan (an episode's start): the next search starts at mean 0."""
        self.mean = None

    @torch.no_grad()
    def plan(self, dynamics: Dynamics, state: Tensor, mean: Tensor | None = None) -> Tensor:
        """The best action sequence found from ``state``.

        Args:
            dynamics: ``(K, nx), (K, nu) -> (K, nx)``, the model planned with.
            state: ``(nx,)``.
            mean: ``(H, nu)`` the search's start mean (None: the middle of the action box).

        Returns:
            ``(H, nu)`` the mean of the last refit (within the action bounds).
        """
        H, nu = self.horizon, self.nu
        low, high = self.low.to(state.device), self.high.to(state.device)
        mu = (low + high).div(2).expand(H, nu).clone() if mean is None else mean.clone()
        std = torch.full((H, nu), self.init_std, device=state.device)
        for _ in range(self.iterations):
            noise = torch.randn(self.population, H, nu, generator=self.generator).to(state.device)
            samples = torch.maximum(torch.minimum(mu + std * noise, high), low)
            costs = rollout_cost(dynamics, self.cost, state, samples)
            costs = torch.nan_to_num(costs, nan=math.inf)  # a diverging model's rollout is never an elite
            elite = samples[torch.topk(costs, self.elites, largest=False).indices]
            mu, std = elite.mean(0), elite.std(0, unbiased=False)
        return mu

    def act(self, dynamics: Dynamics, state: Tensor) -> Tensor:
        """One MPC step: plan from ``state`` (warm-started with the previous plan shifted by one
        step) and return its first action ``(nu,)``."""
        warm = None
        if self.mean is not None:
            warm = torch.cat([self.mean[1:], self.mean[-1:]])
        self.mean = self.plan(dynamics, state, warm)
        return self.mean[0]
