"""Pareto set learning for expensive problems: PSL and SVH-PSL.

A *Pareto-set model* is a hypernetwork ``h(r) -> x`` from a preference ``r`` on the
simplex to a decision ``x`` in the unit box: a HyperDNN whose target holds one
parameter, the decision (its ``weights(preference=R)`` are ``(B, d)`` decisions). Each
iteration of the loop:

1. fits one GP per objective to the evaluated points (:class:`GPSurrogate`);
2. trains a fresh Pareto-set model for ``steps`` steps on the surrogates' lower
   confidence bound ``mean - lcb * std`` at ``particles`` preferences ``r ~ Dirichlet(1)``;
   with ``svgd=True`` (SVH-PSL) the solutions of these preferences are particles of Stein
   variational gradient descent: each particle's Tchebycheff loss ``max_k r_k (v_k - z_k)``
   has its parameter gradient normalised per parameter across the particles, weighted by
   the particle's total kernel similarity (:func:`local_kernel`, on the particles'
   predicted objective values), plus the gradient of the kernel's total that pushes them
   apart; the model step whose predicted front (at ``100 m`` evenly spread preferences)
   has the largest hypervolume is kept. With ``svgd=False`` (PSL, as the SVH-PSL authors
   ran it) the loss is PSL-MOBO's Tchebycheff ``max_k (v_k - z_k) / r_k`` plus
   ``0.01 sum_k v_k``, whose gradient in decision space is normalised per particle;
3. proposes ``candidates`` decisions from ``Dirichlet(1)`` preferences and picks
   ``batch`` of them greedily by the hypervolume their predicted values add to the
   evaluated non-dominated set, then evaluates them.

Lin, Yang, Zhang, Zhang, "Pareto Set Learning for Expensive Multi-Objective Optimization",
NeurIPS 2022 (PSL); Nguyen, Dinh, Nguyen, Hoang, Le, "Improving Pareto Set Learning for
Expensive Multi-objective Optimization via Stein Variational Hypernetworks", AAAI 2025
(SVH-PSL). Defaults are the SVH-PSL code's (``run_svh.py``, ``run_psl_mobo.py``): 20
initial points, 20 iterations of 5, 1000 steps, 10 preferences a step shifted by 1e-4 in
the loss, LCB coefficient 0.1, 1000 candidates, Adam lr 1e-3, GPs fitted 300 Adam steps at
lr 0.5. ``code_update=False`` gives the plain update this module used before (the gradient
of the summed losses, no normalisation, no model selection). Where this still differs from
the code (docs/methods/pareto.md lists each with file and line): the LCB uses the GP's
standard deviation (the code's ``GP_Model.variance`` returns the variance), the model is
float64, PSL's GPs are gpytorch's (the code's PSL uses scikit-learn's).
"""

from __future__ import annotations

import functools
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
        code_update: True (default): the model update of the authors' code (SVH-PSL: per-parameter
            normalisation of the particles' gradients, the kernel weighting of ``run_svh.py``, the
            best predicted model step kept; PSL: PSL-MOBO's inverse-weight Tchebycheff with the
            0.01 augmentation and unit-norm gradients per particle). False: the plain gradient of
            the summed losses (SVH-PSL: of :func:`stein_loss`), the last step's model.
        pref_shift: added to the preferences in the loss (the code's ``+ 0.0001``: no zero weight,
            and PSL's ``1 / r`` stays finite); the model sees the preference on the simplex.
        gp_lr: Adam's learning rate fitting the GPs (the code's ``GP_Model``: 0.5).
        uncertainty: ``"std"`` (the LCB ``mean - lcb * std``, as the papers write it) or
            ``"variance"`` (``mean - lcb * std^2``, what the SVH-PSL code computes: its
            ``GP_Model.variance`` returns the variance and ``run_svh.py`` uses it as the std).
        gp_standardize: the GPs standardise their outputs themselves (:class:`GPSurrogate`); the
            code fits them on the objectives as given (raw on ZDT, ``standardize`` elsewhere): False.
        gp_noise_floor: the GPs' smallest noise (the code: 1e-5).
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
        gp_steps: int = 300,
        repulsion: float = 1e-3,
        kernel_scale: float = 1.0,
        standardize: bool = False,
        code_update: bool = True,
        pref_shift: float = 1e-4,
        gp_lr: float = 0.5,
        uncertainty: str = "std",
        gp_standardize: bool = False,
        gp_noise_floor: float = 1e-5,
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
        for name, value in (("pref_shift", pref_shift), ("gp_lr", gp_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"ParetoSetLearning: {name} must be a finite number >= 0 (got {value!r})")
        if not gp_lr > 0:
            raise ConfigError(f"ParetoSetLearning: gp_lr must be > 0 (got {gp_lr!r})")
        self.code_update, self.pref_shift, self.gp_lr = bool(code_update), float(pref_shift), float(gp_lr)
        if uncertainty not in ("std", "variance"):
            raise ConfigError(f"ParetoSetLearning: uncertainty must be 'std' or 'variance' (got {uncertainty!r})")
        self.uncertainty = uncertainty
        self.gp_standardize, self.gp_noise_floor = bool(gp_standardize), float(gp_noise_floor)
        if not self.gp_noise_floor > 0:
            raise ConfigError(f"ParetoSetLearning: gp_noise_floor must be > 0 (got {gp_noise_floor!r})")
        self._test_prefs: Tensor | None = None

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
        gp = GPSurrogate(xt, yt, steps=self.gp_steps, lr=self.gp_lr, standardize=self.gp_standardize, noise_floor=self.gp_noise_floor)
        ideal = np.zeros(self.objectives) if hist.ideal is None else hist.ideal
        hist.ideal = np.minimum(ideal, y.min(axis=0) - 0.1)
        self._front = y[_non_dominated(y)]
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
        params = [p for p in model.parameters() if p.requires_grad]
        keep = self.code_update and self.svgd
        best_hv, best_state = 0.0, None
        front = self._front if keep else None
        for _ in range(self.steps):
            prefs = sample_dirichlet(self.particles, self.objectives, 1.0, rng=rng).double()
            x = torch.sigmoid(model.weights(preference=prefs)["x"])
            values = gp.lower_confidence_bound(x, self.lcb, self.uncertainty)
            weights = prefs + self.pref_shift
            opt.zero_grad()
            if not self.code_update:
                losses, active = ((values - ideal.to(values)) * weights).max(dim=1)  # Tchebycheff, and the objective active in it
                if self.svgd:
                    stein_loss(losses, local_kernel(values, active, self.kernel_scale), self.repulsion).backward()
                else:
                    losses.sum().backward()
            elif self.svgd:
                self._svh_update(x, values, weights, ideal, params)
            else:
                self._psl_update(x, values, weights, ideal)
            opt.step()
            if keep:  # run_svh.py: keep the step whose predicted front has the largest hypervolume
                hv = self._predicted_hypervolume(model, gp, front)
                if best_hv <= hv:
                    best_hv, best_state = hv, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if keep and best_hv > 0 and best_state is not None:
            model.load_state_dict(best_state)
        return model

    def _svh_update(self, x: Tensor, values: Tensor, weights: Tensor, ideal: Tensor, params: list[Tensor]) -> None:
        """Sets ``.grad`` to SVH-PSL's update (``run_svh.py`` lines 189-213, ``SVGD/moosvgd.py``).

        ``1/n [sum_j w_j G_j + alpha grad sum_ij K_ij]`` with ``G`` the ``(n, P)`` per-particle
        parameter gradients of the Tchebycheff losses, each column (parameter) scaled to unit
        norm across the particles, ``K`` the code's kernel (:func:`local_kernel` transposed: the
        code weights column ``j`` by particle ``j``'s active objective) and ``w_j`` its column sums.
        """
        losses, active = ((values - ideal.to(values)) * weights).max(dim=1)
        n = losses.shape[0]
        kernel = local_kernel(values, active, self.kernel_scale).T
        # a particle's loss depends on the parameters only through its own decision x_j: one
        # backward through the GPs gives every dL_j/dx_j, then one backward per particle through the model
        (dx,) = torch.autograd.grad(losses.sum(), x, retain_graph=True)
        rows = []
        for j in range(n):
            g = torch.autograd.grad(x[j], params, grad_outputs=dx[j], retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten() for gi, p in zip(g, params)]))
        grads = torch.stack(rows)
        # torch.nn.functional.normalize(grads, dim=0) of the code (eps 1e-12): each parameter's column to unit norm
        grads = grads / grads.pow(2).sum(dim=0).sqrt().clamp_min(1e-12)
        drive = kernel.detach().sum(dim=0) @ grads
        repulse = torch.autograd.grad(kernel.sum(), params, allow_unused=True)
        flat_repulse = torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten() for gi, p in zip(repulse, params)])
        total = (drive + self.repulsion * flat_repulse) / n
        at = 0
        for p in params:
            p.grad = total[at : at + p.numel()].view_as(p).clone()
            at += p.numel()

    @staticmethod
    def _psl_update(x: Tensor, values: Tensor, weights: Tensor, ideal: Tensor) -> None:
        """Sets ``.grad`` to PSL-MOBO's update (``run_psl_mobo.py`` lines 231-240 of the SVH-PSL code).

        The Tchebycheff term ``max_k (v_k - z_k) / r_k`` plus ``0.01 sum_k v_k``, its gradient
        w.r.t. each particle's decision scaled to unit norm, back-propagated through the model.
        """
        scaled = (values - ideal.to(values)) / weights
        active = scaled.argmax(dim=1, keepdim=True)
        tch = values.gather(1, active).squeeze(1) / weights.gather(1, active).squeeze(1) + 0.01 * values.sum(dim=1)
        (dx,) = torch.autograd.grad(tch.sum(), x, retain_graph=True)
        dx = dx / dx.norm(dim=1, keepdim=True).clamp_min(1e-300)
        x.backward(dx)

    def _predicted_hypervolume(self, model: HyperDNN, gp: GPSurrogate, front: np.ndarray) -> float:
        """Hypervolume of the model's predicted front at the code's test preferences (``run_svh.py`` lines 217-227).

        The reference point is the componentwise maximum of the evaluated non-dominated set
        and the predicted values, as in the code.
        """
        if self._test_prefs is None:
            self._test_prefs = torch.from_numpy(_test_preferences(self.objectives).copy()).double()
        with torch.no_grad():
            x = torch.sigmoid(model.weights(preference=self._test_prefs / self._test_prefs.sum(1, keepdim=True))["x"])
            y = gp.lower_confidence_bound(x, self.lcb, self.uncertainty).numpy()
        return hypervolume(y, np.max(np.vstack([front, y]), axis=0))

    def propose(self, model: HyperDNN, gp: GPSurrogate, evaluated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``batch`` new decisions chosen greedily by predicted hypervolume gain (step 3)."""
        prefs = sample_dirichlet(self.candidates, self.objectives, 1.0, rng=rng).double()
        with torch.no_grad():
            xc = torch.sigmoid(model.weights(preference=prefs)["x"])
            yc = gp.lower_confidence_bound(xc, self.lcb, self.uncertainty).numpy()
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


@functools.lru_cache(maxsize=None)
def _test_preferences(objectives: int) -> np.ndarray:
    """SVH-PSL's test preferences (``partitioning.sampling_vector_evenly``): ``100 m`` pymoo "energy" directions, seed 1.

    Computed once per process and number of objectives (it takes seconds).
    """
    from pymoo.util.ref_dirs import get_reference_directions

    out = get_reference_directions("energy", objectives, 100 * objectives, seed=1)
    out.setflags(write=False)
    return out


def _non_dominated(y: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``y`` that no other row dominates (minimisation)."""
    le = (y[:, None, :] <= y[None, :, :]).all(-1)
    lt = (y[:, None, :] < y[None, :, :]).any(-1)
    dominated = (le & lt).any(axis=0)  # row j dominated by some i
    return np.nonzero(~dominated)[0]


def log_hypervolume_difference(y: np.ndarray, true_hv: float, reference: np.ndarray, *, base: float = 10.0, floor: float = 1e-12) -> float:
    """``log(HV(true front) - HV(y))`` at ``reference``, the SVH-PSL paper's convergence measure.

    Args:
        y: ``(n, m)`` evaluated objective values.
        true_hv: the true front's hypervolume at ``reference``.
        reference: ``(m,)``.
        base: the logarithm's base (the paper plots the natural log, ``math.e``).
        floor: the smallest gap taken (the authors' notebook clips at 1e-14); a gap below it,
            or a negative one (a set beyond a discretised true front), gives ``log(floor)``.
    """
    if not (base > 0 and base != 1 and floor > 0):
        raise ConfigError(f"log_hypervolume_difference: base must be > 0 and != 1, floor > 0 (got base={base!r}, floor={floor!r})")
    gap = true_hv - hypervolume(y, reference)
    gap = max(gap, floor)
    return math.log10(gap) if base == 10 else math.log(gap) / math.log(base)  # log10 exactly as before for base 10
