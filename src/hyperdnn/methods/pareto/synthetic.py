"""The two synthetic problems of SVH-PSL's evaluation besides ZDT: F2 and VLMOP2.

Written here from the definitions in the SVH-PSL code (Nguyen et al., AAAI 2025;
``problem.py`` of github.com/nguyenduc810/SVH-PSL, classes ``F2`` and ``VLMOP2``), which
``run_svh.py`` runs with 6 variables. Both have two objectives, to be minimised, and a
Pareto front known in closed form:

====== ============ ===================================================================
name   box          Pareto set and front
====== ============ ===================================================================
F2     ``[0, 1]^d`` ``x_i = x_1^(0.5 theta_i)`` for ``i >= 2``; front ``f2 = 1 - sqrt(f1)``,
                    ``f1 in [0, 1]`` (the shape of ZDT1's)
VLMOP2 ``[-2, 2]^d`` ``x_1 = ... = x_d = s / sqrt(d)``, ``s in [-1, 1]``; front
                    ``(1 - exp(-(s - 1)^2), 1 - exp(-(s + 1)^2))``
====== ============ ===================================================================

F2 is Lin et al.'s (PSL, NeurIPS 2022) F2, a problem of the LZ type: with
``theta_i = 1 + 3 (i - 2) / (d - 2)`` and ``y_i = (x_i - x_1^(0.5 theta_i))^2``, the odd
indices ``J1 = {3, 5, ...}`` and the even ``J2 = {2, 4, ...}`` (1-based),
``f1 = (1 + mean_{J1} y) x_1`` and ``f2 = (1 + mean_{J2} y) (1 - sqrt(x_1 / (1 + mean_{J2} y)))``.
VLMOP2 (Van Veldhuizen & Lamont 1999) is
``f1 = 1 - exp(-sum_i (x_i - 1/sqrt d)^2)``, ``f2 = 1 - exp(-sum_i (x_i + 1/sqrt d)^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hyperdnn.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    from pymoo.core.problem import Problem

__all__ = ["SYNTHETIC_PROBLEMS", "SyntheticProblem", "synthetic_problem"]

SYNTHETIC_PROBLEMS: tuple[str, ...] = ("f2", "vlmop2")
_BOX = {"f2": (0.0, 1.0), "vlmop2": (-2.0, 2.0)}  # problem.py: F2 on [0, 1]^d, VLMOP2 on [-2, 2]^d
_MIN_DIMS = {"f2": 3, "vlmop2": 1}  # F2 needs one odd and one even index i >= 2 (and d - 2 > 0 in theta_i)
_TITLES = {"f2": "F2 (PSL's LZ-type problem)", "vlmop2": "VLMOP2"}


def _f2(x: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    idx = np.arange(2, d + 1)  # the 1-based index i of x_i, i >= 2
    theta = 1.0 + 3.0 * (idx - 2) / (d - 2)
    y = (x[:, 1:] - x[:, :1] ** (0.5 * theta)) ** 2
    g1 = 1.0 + y[:, idx % 2 == 1].mean(axis=1)  # J1: odd i
    g2 = 1.0 + y[:, idx % 2 == 0].mean(axis=1)  # J2: even i
    return np.stack([g1 * x[:, 0], g2 * (1.0 - np.sqrt(x[:, 0] / g2))], axis=1)


def _vlmop2(x: np.ndarray) -> np.ndarray:
    c = 1.0 / math.sqrt(x.shape[1])
    return np.stack([1.0 - np.exp(-((x - c) ** 2).sum(axis=1)), 1.0 - np.exp(-((x + c) ** 2).sum(axis=1))], axis=1)


_FUNCTIONS = {"f2": _f2, "vlmop2": _vlmop2}


@dataclass(frozen=True, eq=False)  # eq=False: array fields cannot be compared or hashed as values
class SyntheticProblem:
    """F2 or VLMOP2: bounds, objectives and the closed-form Pareto front.

    Attributes:
        name: ``"f2"`` or ``"vlmop2"``. title: how figures name it.
        lower, upper: ``(d,)`` variable bounds. objectives: 2.
    """

    name: str
    title: str
    lower: np.ndarray
    upper: np.ndarray
    objectives: int = 2

    @property
    def dims(self) -> int:
        """The number of variables ``d``."""
        return int(self.lower.shape[0])

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Objective values ``(n, 2)`` of decisions ``x`` ``(n, d)`` in the problem's own units.

        Raises:
            ShapeError: ``x`` is not ``(n, d)``.
            ConfigError: ``x`` is not finite or leaves the box (F2 would take a root of a negative number).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ShapeError(f"{self.name.upper()}: decisions must be (n, {self.dims}) (got {x.shape}); reshape to one row per decision")
        if not np.isfinite(x).all() or (x < self.lower).any() or (x > self.upper).any():
            bad = x[~(np.isfinite(x) & (x >= self.lower) & (x <= self.upper)).all(axis=1)][0]
            raise ConfigError(f"{self.name.upper()}: decisions must be finite and within [{self.lower[0]}, {self.upper[0]}] "
                              f"in every variable (got {bad.tolist()}); clip them to the box")
        return _FUNCTIONS[self.name](x)

    def evaluate_unit(self, u: np.ndarray) -> np.ndarray:
        """Objective values of decisions ``u`` ``(n, d)`` in the unit box, mapped linearly onto the bounds (as ``problem.py``)."""
        u = np.asarray(u, dtype=np.float64)
        if u.ndim == 2 and u.shape[1] == self.dims and not (np.isfinite(u) & (u >= 0.0) & (u <= 1.0)).all():
            bad = u[~(np.isfinite(u) & (u >= 0.0) & (u <= 1.0)).all(axis=1)][0]
            raise ConfigError(f"{self.name.upper()}: unit-box decisions must be finite and within [0, 1] in every "
                              f"variable (got {bad.tolist()}); clip them to [0, 1]")
        return self.evaluate(self.lower + u * (self.upper - self.lower))

    def as_pymoo(self) -> Problem:
        """The problem on the unit box as a ``pymoo.core.problem.Problem`` (for pymoo's algorithms)."""
        from pymoo.core.problem import Problem

        me = self

        class _Unit(Problem):
            def __init__(self) -> None:
                super().__init__(n_var=me.dims, n_obj=2, xl=0.0, xu=1.0)

            def _evaluate(self, x, out, *args, **kwargs) -> None:
                out["F"] = me.evaluate_unit(x)

        return _Unit()

    def pareto_set(self, n: int) -> np.ndarray:
        """``n`` decisions ``(n, d)`` on the Pareto set, in the problem's own units, evenly spaced in its parameter.

        F2: ``x_1 = linspace(0, 1, n)``; VLMOP2: ``s = linspace(-1, 1, n)``, every ``x_i = s / sqrt(d)``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError(f"{self.name.upper()}: the number of front points must be an int >= 2 (got {n!r})")
        t = np.linspace(0.0, 1.0, n) if self.name == "f2" else np.linspace(-1.0, 1.0, n)
        if self.name == "vlmop2":
            return np.repeat(t[:, None] / math.sqrt(self.dims), self.dims, axis=1)
        theta = 1.0 + 3.0 * (np.arange(2, self.dims + 1) - 2) / (self.dims - 2)
        return np.concatenate([t[:, None], t[:, None] ** (0.5 * theta)], axis=1)

    def pareto_front(self, n: int) -> np.ndarray:
        """``n`` points ``(n, 2)`` of the Pareto front: the objectives of :meth:`pareto_set`.

        For VLMOP2 and ``n = 400`` these are the points of the SVH-PSL code's
        ``Ground_truth_approximate_PF/VLMOP2.npy`` (same order, to rounding).
        """
        return self.evaluate(self.pareto_set(n))

    def front_hypervolume(self, reference: tuple[float, ...]) -> float:
        """The hypervolume of the whole (continuous) front at ``reference``, by quadrature.

        ``int_0^{r1} (r2 - min(g(a), r2)) da``, where ``f2 = g(f1)`` is the front (0 beyond its
        last ``f1``): F2's ``g(a) = 1 - sqrt(a)`` on ``[0, 1]``; VLMOP2's
        ``g(a) = 1 - exp(-(s + 1)^2)`` with ``s = 1 - sqrt(-ln(1 - a))`` on ``[0, 1 - e^-4]``.
        """
        from scipy.integrate import quad

        ref = tuple(float(v) for v in reference)
        if len(ref) != 2:
            raise ShapeError(f"{self.name.upper()}: the reference point must have 2 values, one per objective "
                             f"(got {len(ref)}: {ref})")
        r1, r2 = ref
        if r2 <= 0:  # nothing of the front (f2 >= 0) is dominated below the f1 axis
            return 0.0
        if self.name == "f2":
            end, g = 1.0, lambda a: 1.0 - math.sqrt(a)
        else:
            end = 1.0 - math.exp(-4.0)
            g = lambda a: 1.0 - math.exp(-((2.0 - math.sqrt(-math.log1p(-a))) ** 2))  # s + 1 = 2 - sqrt(-ln(1 - a))
        upto = min(r1, end)
        if upto <= 0:
            return 0.0
        covered, _ = quad(lambda a: r2 - min(g(a), r2), 0.0, upto, epsabs=1e-13, epsrel=1e-13, limit=200)
        return float(covered + max(r1 - end, 0.0) * r2)


def synthetic_problem(name: str, dims: int = 6) -> SyntheticProblem:
    """The synthetic problem ``name`` (``"f2"`` or ``"vlmop2"``; any case) with ``dims`` variables (SVH-PSL code: 6).

    Raises:
        ConfigError: an unknown name, or too few variables (F2 needs at least 3).
    """
    key = str(name).lower()
    if key not in _FUNCTIONS:
        raise ConfigError(f"synthetic_problem: unknown problem {name!r} (expected one of {', '.join(SYNTHETIC_PROBLEMS)})")
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < _MIN_DIMS[key]:
        raise ConfigError(f"synthetic_problem: {key.upper()} needs an int number of variables >= {_MIN_DIMS[key]} (got {dims!r}); the SVH-PSL code uses 6")
    lo, hi = _BOX[key]
    return SyntheticProblem(key, _TITLES[key], np.full(dims, lo), np.full(dims, hi))
