"""Pareto set learning for expensive problems: PSL and SVH-PSL.

A *Pareto-set model* is a hypernetwork ``h(r) -> x`` from a preference ``r`` on the
simplex to a decision ``x`` in the unit box: a HyperDNN whose target holds one
parameter, the decision (its ``weights(preference=R)`` are ``(B, d)`` decisions). Each
iteration of the loop:

1. fits one GP per objective to the evaluated points (:class:`GPSurrogate`);
2. trains a fresh Pareto-set model for ``steps`` steps on the surrogates' lower
   confidence bound ``mean - lcb * std``, scalarised by Tchebycheff at ``particles``
   preferences ``r ~ Dirichlet(1)``; with ``svgd=True`` (SVH-PSL) the solutions of these
   preferences are particles of Stein variational gradient descent: the update is each
   particle's loss gradient weighted by its column of a kernel on the particles' predicted
   objective values, plus the gradient of the kernel's total that pushes them apart
   (:func:`stein_loss`, :func:`local_kernel`); with ``svgd=False`` (PSL) it is the gradient
   of the summed loss;
3. proposes ``candidates`` decisions from ``Dirichlet(1)`` preferences and picks
   ``batch`` of them greedily by the hypervolume their predicted values add to the
   evaluated non-dominated set, then evaluates them.

Lin, Yang, Zhang, Zhang, "Pareto Set Learning for Expensive Multi-Objective Optimization",
NeurIPS 2022 (PSL); Nguyen, Le, Tran, et al., "Improving Pareto Set Learning for Expensive
Multi-objective Optimization via Stein Variational Hypernetworks", AAAI 2025 (SVH-PSL).
Defaults are the SVH-PSL code's (``run_svh.py``): 20 initial points, 20 iterations of 5,
1000 steps, 10 preferences a step, LCB coefficient 0.1, 1000 candidates, Adam lr 1e-3.
Where this differs from that code: the particles' parameter gradients are not normalised
before the kernel weighting (the code normalises each parameter's gradients across the
particles), the preferences are not shifted by 1e-4 off the simplex, and the model of the
last step is used (the code keeps the step whose predicted front has the largest hypervolume).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from hyperdnn.bodies import MLP
from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.pareto.hypervolume import hypervolume
from hyperdnn.methods.pareto.preference_input import Preference
from hyperdnn.methods.pareto.preferences import sample_dirichlet
from hyperdnn.methods.pareto.surrogate import GPSurrogate
from hyperdnn.methods.pareto.svgd import local_kernel, stein_loss

__all__ = ["PSLHistory", "ParetoSetLearning", "log_hypervolume_difference", "pareto_set_model"]


class _Decision(nn.Module):
    """The Pareto-set model's target: one decision vector (squashed into the unit box by the caller)."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.empty(dims).uniform_(-1.0, 1.0))

    def forward(self, _: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.x)


def pareto_set_model(objectives: int, dims: int, hidden: tuple[int, ...] = (256, 256)) -> HyperDNN:
    """A hypernetwork from a preference ``(B, m)`` to decisions: ``torch.sigmoid(model.weights(preference=r)["x"])``.

    PSL's model: two hidden layers of 256 ReLU units, a linear output, a sigmoid into the unit box.
    """
    return HyperDNN(_Decision(dims), inputs=Preference(objectives), body=MLP(hidden=hidden))


@dataclass
class PSLHistory:
    """Everything a run evaluated.

    Attributes:
        x: ``(n, d)`` evaluated decisions, in order.
        y: ``(n, m)`` their objective values.
        evaluations: the number of evaluations after each iteration (the first entry: the initial design).
        seconds: wall time after each iteration (the iterations' own times, summed).
        ideal: ``(m,)`` the Tchebycheff ideal point of the last iteration (zeros before the first).
    """

    x: np.ndarray
    y: np.ndarray
    evaluations: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    ideal: np.ndarray | None = None

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able copy (floats round-trip exactly through JSON), e.g. for a run's checkpoint."""
        return {"x": self.x.tolist(), "y": self.y.tolist(), "evaluations": list(self.evaluations), "seconds": list(self.seconds),
                "ideal": None if self.ideal is None else self.ideal.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "PSLHistory":
        """The history :meth:`state_dict` saved."""
        return cls(x=np.array(state["x"], dtype=np.float64), y=np.array(state["y"], dtype=np.float64),
                   evaluations=[int(n) for n in state["evaluations"]], seconds=[float(t) for t in state["seconds"]],
                   ideal=None if state["ideal"] is None else np.array(state["ideal"], dtype=np.float64))


class ParetoSetLearning:
    """PSL / SVH-PSL on an expensive black-box problem ``f: [0, 1]^d -> R^m``.

    Args:
        problem: ``(n, d)`` numpy decisions -> ``(n, m)`` objective values (minimised).
        dims: ``d``. objectives: ``m``.
        svgd: True for SVH-PSL, False for PSL.
        initial: evaluations of the Latin-hypercube start. iterations, batch: the loop's size.
        steps: model-training steps per iteration. particles: preferences per step.
        lcb: the lower-confidence-bound coefficient. candidates: proposals per iteration.
        lr: Adam's learning rate. gp_steps: marginal-likelihood steps per GP fit.
        repulsion: SVGD's repulsion weight (the code's ``alpha = 0.001``).
        kernel_scale: the kernel bandwidth's scale (the code's ``c = 1``).
        standardize: fit the GPs, the Tchebycheff ideal point and the batch selection on the
            objectives standardised per iteration (mean 0, std 1 over the evaluated points), as the
            SVH-PSL code does for every problem but ZDT (whose objectives share one scale); for
            problems whose objectives differ by orders of magnitude (the RE suite).
        seed: seeds numpy and torch generators used by the run.
    """

    def __init__(
        self,
        problem: Callable[[np.ndarray], np.ndarray],
        dims: int,
        objectives: int,
        *,
        svgd: bool = True,
        initial: int = 20,
        iterations: int = 20,
        batch: int = 5,
        steps: int = 1000,
        particles: int = 10,
        lcb: float = 0.1,
        candidates: int = 1000,
        lr: float = 1e-3,
        gp_steps: int = 100,
        repulsion: float = 1e-3,
        kernel_scale: float = 1.0,
        standardize: bool = False,
        seed: int = 0,
    ) -> None:
        for name, value in (("dims", dims), ("objectives", objectives), ("initial", initial), ("iterations", iterations),
                            ("batch", batch), ("steps", steps), ("particles", particles), ("candidates", candidates),
                            ("gp_steps", gp_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ParetoSetLearning: {name} must be a positive int (got {value!r})")
        if objectives < 2:
            raise ConfigError(f"ParetoSetLearning: objectives must be at least 2 (got {objectives})")
        if particles < 2 and svgd:
            raise ConfigError(f"ParetoSetLearning: SVGD needs at least 2 particles (got {particles})")
        self.problem, self.dims, self.objectives, self.svgd = problem, dims, objectives, svgd
        self.initial, self.iterations, self.batch, self.steps = initial, iterations, batch, steps
        self.particles, self.lcb, self.candidates, self.lr, self.gp_steps = particles, lcb, candidates, lr, gp_steps
        self.repulsion, self.kernel_scale, self.seed = repulsion, kernel_scale, seed
        self.standardize = bool(standardize)

    def _evaluate(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(self.problem(x), dtype=np.float64)
        if y.shape != (x.shape[0], self.objectives):
            raise ShapeError(f"ParetoSetLearning: the problem returned {y.shape} for {x.shape[0]} decisions; expected ({x.shape[0]}, {self.objectives})")
        return y

    def run(self, callback: Callable[[PSLHistory], None] | None = None) -> PSLHistory:
        """Runs the whole loop; ``callback(history)`` is called after the start and after each iteration."""
        hist, rng = self.begin()
        if callback is not None:
            callback(hist)
        for _ in range(self.iterations):
            self.iterate(hist, rng)
            if callback is not None:
                callback(hist)
        return hist

    def begin(self) -> tuple[PSLHistory, np.random.Generator]:
        """Seeds torch's global RNG and a numpy generator with ``seed`` and evaluates the Latin-hypercube start.

        Returns:
            The history (``initial`` points) and the generator that the iterations draw from; with
            :meth:`iterate` this is :meth:`run` in pieces, so that a run can be checkpointed between
            iterations (save ``history.state_dict()``, ``rng.bit_generator.state`` and torch's RNG state).
        """
        from scipy.stats import qmc

        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        start = time.perf_counter()
        x = qmc.LatinHypercube(d=self.dims, seed=rng).random(self.initial)
        hist = PSLHistory(x=x, y=self._evaluate(x), ideal=np.zeros(self.objectives))
        hist.evaluations.append(len(hist.x))
        hist.seconds.append(time.perf_counter() - start)
        return hist, rng

    def iterate(self, hist: PSLHistory, rng: np.random.Generator) -> None:
        """One iteration (fit the GPs, train a model, propose and evaluate ``batch`` points); extends ``hist`` in place."""
        start = time.perf_counter()
        y = hist.y
        if self.standardize:  # the SVH-PSL code's StandardScaler: population std, 1 where it is 0
            std = y.std(axis=0)
            y = (y - y.mean(axis=0)) / np.where(std > 0, std, 1.0)
        xt = torch.from_numpy(hist.x)
        yt = torch.from_numpy(y)
        gp = GPSurrogate(xt, yt, steps=self.gp_steps)
        ideal = np.zeros(self.objectives) if hist.ideal is None else hist.ideal
        hist.ideal = np.minimum(ideal, y.min(axis=0) - 0.1)
        model = self.train_model(gp, torch.from_numpy(hist.ideal), rng)
        new = self.propose(model, gp, y, rng)
        hist.x = np.vstack([hist.x, new])
        hist.y = np.vstack([hist.y, self._evaluate(new)])
        hist.evaluations.append(len(hist.x))
        hist.seconds.append(hist.seconds[-1] + time.perf_counter() - start)

    def train_model(self, gp: GPSurrogate, ideal: Tensor, rng: np.random.Generator) -> HyperDNN:
        """Trains a fresh Pareto-set model on the surrogates (step 2 of the loop)."""
        model = pareto_set_model(self.objectives, self.dims).double()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        for _ in range(self.steps):
            prefs = sample_dirichlet(self.particles, self.objectives, 1.0, rng=rng).double()
            x = torch.sigmoid(model.weights(preference=prefs)["x"])
            values = gp.lower_confidence_bound(x, self.lcb)
            weighted = (values - ideal.to(values)) * prefs
            losses, active = weighted.max(dim=1)  # Tchebycheff, and the objective active in it
            opt.zero_grad()
            if self.svgd:
                stein_loss(losses, local_kernel(values, active, self.kernel_scale), self.repulsion).backward()
            else:
                losses.sum().backward()
            opt.step()
        return model

    def propose(self, model: HyperDNN, gp: GPSurrogate, evaluated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``batch`` new decisions chosen greedily by predicted hypervolume gain (step 3)."""
        prefs = sample_dirichlet(self.candidates, self.objectives, 1.0, rng=rng).double()
        with torch.no_grad():
            xc = torch.sigmoid(model.weights(preference=prefs)["x"])
            yc = gp.lower_confidence_bound(xc, self.lcb).numpy()
        xc_np = xc.numpy()
        front = evaluated[_non_dominated(evaluated)]
        keep = _non_dominated(yc)  # a dominated candidate never adds more than its dominator
        xc_np, yc = xc_np[keep], yc[keep]
        ref = np.max(np.vstack([front, yc]), axis=0)
        chosen: list[int] = []
        current = front
        for _ in range(self.batch):
            base = hypervolume(current, ref + 1e-9)
            gains = np.array([hypervolume(np.vstack([current, yc[k : k + 1]]), ref + 1e-9) - base if k not in chosen else -1.0
                              for k in range(len(yc))])
            k = int(np.argmax(gains))
            if gains[k] <= 0:
                # nothing predicted to improve: explore with a random remaining candidate
                rest = [i for i in range(len(yc)) if i not in chosen]
                k = int(rng.choice(rest)) if rest else int(rng.integers(len(yc)))
            chosen.append(k)
            current = np.vstack([current, yc[k : k + 1]])
        return xc_np[chosen]


def _non_dominated(y: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``y`` that no other row dominates (minimisation)."""
    le = (y[:, None, :] <= y[None, :, :]).all(-1)
    lt = (y[:, None, :] < y[None, :, :]).any(-1)
    dominated = (le & lt).any(axis=0)  # row j dominated by some i
    return np.nonzero(~dominated)[0]


def log_hypervolume_difference(y: np.ndarray, true_hv: float, reference: np.ndarray) -> float:
    """``log10(HV(true front) - HV(y))`` at ``reference``, the SVH-PSL paper's convergence measure."""
    gap = true_hv - hypervolume(y, reference)
    return math.log10(max(gap, 1e-12))
