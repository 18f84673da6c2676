"""Real-world engineering problems of the RE suite used by SVH-PSL (Tanabe & Ishibuchi 2020).

Seven bound-constrained problems, written here from their published definitions
(Tanabe & Ishibuchi, "An easy-to-use real-world multi-objective optimization problem
suite", Applied Soft Computing 89, 2020, and its supplementary file; the bug-fixed
versions of github.com/ryojitanabe/reproblems, 2021-05-29). Constraints are folded into
the last objective as the summed violation, as in the suite. All objectives are minimised.

===== ===================== === === ===================================================
name  problem               d   m   last objective
===== ===================== === === ===================================================
RE21  four-bar truss        4   2   (no constraints)
RE32  welded beam           4   3   violation of 4 constraints
RE33  disc brake            4   3   violation of 4 constraints
RE36  gear train            4   3   violation of 1 constraint (integer variables)
RE37  rocket injector       4   3   (no constraints; a response surface)
RE41  car side impact       7   4   violation of 10 constraints
RE42  conceptual marine     6   4   violation of 9 constraints
===== ===================== === === ===================================================

The SVH-PSL code (Nguyen et al., AAAI 2025; ``run_svh.py`` and the README's result figure) runs exactly these seven. Its
evaluation (the authors' ``plot_result.ipynb`` and ``run_svh.py``) normalises the
objectives with an ideal and a nadir point per problem, ``(f - ideal) / (nadir - ideal)``,
and measures hypervolume at ``(1.1, ..., 1.1)`` in that space; :data:`IDEAL_NADIR` holds
the ideal and nadir points of that notebook, unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["IDEAL_NADIR", "RE_PROBLEMS", "REProblem", "approximate_front", "non_dominated_archive", "re_problem"]

# (ideal, nadir) per problem: the dictionary ``dict_ideal_nadir_points`` of the SVH-PSL code's
# plot_result.ipynb (github.com/nguyenduc810/SVH-PSL); for RE32, RE33, RE36, RE37 and RE41 they are the
# reproblems repository's ideal_nadir_points/*.dat, for RE21 and RE42 its bug_*.dat files.
IDEAL_NADIR: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "re21": ((1237.841423, 0.000276142374915), (2886.3695604236013, 0.039999999999998245)),
    "re32": ((0.010205496875, 0.00043904, 0.0), (37.7831517014, 17561.6, 425062976.628)),
    "re33": ((-0.721525, 1.13907203907, 0.0), (5.3067, 3.12833430979, 25.0)),
    "re36": ((7.89473684213e-05, 12.0, 0.0), (5.931, 56.0, 0.355720675227)),
    "re37": ((0.00889341391106, 0.00488, -0.431499999825), (0.98949120096, 0.956587924661, 0.987530948586)),
    "re41": ((15.576004, 3.58525, 10.61064375, 0.0), (39.2905121788, 4.42725, 13.09138125, 9.49401929991)),
    "re42": ((-2756.25909816, 3962.55777262, 1947.88082074, 0.0), (-844.714092162, 13827.1384409, 5707.50786547, 3207.0456123)),
}


def _violation(*g: np.ndarray) -> np.ndarray:
    """Summed violation of constraints ``g_i >= 0``: ``sum_i max(0, -g_i)``."""
    return np.sum([np.maximum(0.0, -gi) for gi in g], axis=0)


def _re21(x: np.ndarray) -> np.ndarray:
    x1, x2, x3, x4 = x.T
    F, E, L = 10.0, 2.0e5, 200.0
    f1 = L * (2 * x1 + math.sqrt(2.0) * x2 + np.sqrt(x3) + x4)
    f2 = (F * L / E) * (2.0 / x1 + 2.0 * math.sqrt(2.0) / x2 - 2.0 * math.sqrt(2.0) / x3 + 2.0 / x4)
    return np.stack([f1, f2], axis=1)


def _re32(x: np.ndarray) -> np.ndarray:
    x1, x2, x3, x4 = x.T
    P, L, E, G, tau_max, sigma_max = 6000.0, 14.0, 30e6, 12e6, 13600.0, 30000.0
    f1 = 1.10471 * x1**2 * x2 + 0.04811 * x3 * x4 * (14.0 + x2)
    f2 = 4 * P * L**3 / (E * x4 * x3**3)
    M = P * (L + x2 / 2)
    R = np.sqrt(x2**2 / 4.0 + ((x1 + x3) / 2.0) ** 2)
    J = 2 * math.sqrt(2) * x1 * x2 * (x2**2 / 12.0 + ((x1 + x3) / 2.0) ** 2)
    tau2 = M * R / J
    tau1 = P / (math.sqrt(2) * x1 * x2)
    tau = np.sqrt(tau1**2 + 2 * tau1 * tau2 * x2 / (2 * R) + tau2**2)
    sigma = 6 * P * L / (x4 * x3**2)
    pc = 4.013 * E * np.sqrt(x3**2 * x4**6 / 36.0) / L**2 * (1 - x3 / (2 * L) * math.sqrt(E / (4 * G)))
    f3 = _violation(tau_max - tau, sigma_max - sigma, x4 - x1, pc - P)
    return np.stack([f1, f2, f3], axis=1)


def _re33(x: np.ndarray) -> np.ndarray:
    x1, x2, x3, x4 = x.T
    sq, cu = x2**2 - x1**2, x2**3 - x1**3
    f1 = 4.9e-5 * sq * (x4 - 1.0)
    f2 = 9.82e6 * sq / (x3 * x4 * cu)
    g1 = (x2 - x1) - 20.0
    g2 = 0.4 - x3 / (3.14 * sq)
    g3 = 1.0 - 2.22e-3 * x3 * cu / sq**2
    g4 = 2.66e-2 * x3 * x4 * cu / sq - 900.0
    return np.stack([f1, f2, _violation(g1, g2, g3, g4)], axis=1)


def _re36(x: np.ndarray) -> np.ndarray:
    x1, x2, x3, x4 = np.round(x).T  # numbers of teeth: integers
    f1 = np.abs(6.931 - (x3 / x1) * (x4 / x2))
    f2 = np.max(np.stack([x1, x2, x3, x4]), axis=0)
    return np.stack([f1, f2, _violation(0.5 - f1 / 6.931)], axis=1)


def _re37(x: np.ndarray) -> np.ndarray:
    a, ha, oa, optt = x.T
    f1 = (0.692 + 0.477 * a - 0.687 * ha - 0.080 * oa - 0.0650 * optt - 0.167 * a * a - 0.0129 * ha * a + 0.0796 * ha * ha
          - 0.0634 * oa * a - 0.0257 * oa * ha + 0.0877 * oa * oa - 0.0521 * optt * a + 0.00156 * optt * ha
          + 0.00198 * optt * oa + 0.0184 * optt * optt)
    f2 = (0.153 - 0.322 * a + 0.396 * ha + 0.424 * oa + 0.0226 * optt + 0.175 * a * a + 0.0185 * ha * a - 0.0701 * ha * ha
          - 0.251 * oa * a + 0.179 * oa * ha + 0.0150 * oa * oa + 0.0134 * optt * a + 0.0296 * optt * ha
          + 0.0752 * optt * oa + 0.0192 * optt * optt)
    f3 = (0.370 - 0.205 * a + 0.0307 * ha + 0.108 * oa + 1.019 * optt - 0.135 * a * a + 0.0141 * ha * a + 0.0998 * ha * ha
          + 0.208 * oa * a - 0.0301 * oa * ha - 0.226 * oa * oa + 0.353 * optt * a - 0.0497 * optt * oa - 0.423 * optt * optt
          + 0.202 * ha * a * a - 0.281 * oa * a * a - 0.342 * ha * ha * a - 0.245 * ha * ha * oa + 0.281 * oa * oa * ha
          - 0.184 * optt * optt * a - 0.281 * ha * a * oa)
    return np.stack([f1, f2, f3], axis=1)


def _re41(x: np.ndarray) -> np.ndarray:
    x1, x2, x3, x4, x5, x6, x7 = x.T
    f1 = 1.98 + 4.9 * x1 + 6.67 * x2 + 6.98 * x3 + 4.01 * x4 + 1.78 * x5 + 0.00001 * x6 + 2.73 * x7
    f2 = 4.72 - 0.5 * x4 - 0.19 * x2 * x3
    v_mbp = 10.58 - 0.674 * x1 * x2 - 0.67275 * x2
    v_fd = 16.45 - 0.489 * x3 * x7 - 0.843 * x5 * x6
    f3 = 0.5 * (v_mbp + v_fd)
    g = (
        1 - (1.16 - 0.3717 * x2 * x4 - 0.0092928 * x3),
        0.32 - (0.261 - 0.0159 * x1 * x2 - 0.06486 * x1 - 0.019 * x2 * x7 + 0.0144 * x3 * x5 + 0.0154464 * x6),
        0.32 - (0.214 + 0.00817 * x5 - 0.045195 * x1 - 0.0135168 * x1 + 0.03099 * x2 * x6 - 0.018 * x2 * x7
                + 0.007176 * x3 + 0.023232 * x3 - 0.00364 * x5 * x6 - 0.018 * x2 * x2),
        0.32 - (0.74 - 0.61 * x2 - 0.031296 * x3 - 0.031872 * x7 + 0.227 * x2 * x2),
        32 - (28.98 + 3.818 * x3 - 4.2 * x1 * x2 + 1.27296 * x6 - 2.68065 * x7),
        32 - (33.86 + 2.95 * x3 - 5.057 * x1 * x2 - 3.795 * x2 - 3.4431 * x7 + 1.45728),
        32 - (46.36 - 9.9 * x2 - 4.4505 * x1),
        4 - f2,
        9.9 - v_mbp,
        15.7 - v_fd,
    )
    return np.stack([f1, f2, f3, _violation(*g)], axis=1)


def _re42(x: np.ndarray) -> np.ndarray:
    L, B, D, T, Vk, CB = x.T
    displacement = 1.025 * L * B * T * CB
    Fn = 0.5144 * Vk / np.sqrt(9.8065 * L)
    a = 4977.06 * CB**2 - 8105.61 * CB + 4456.51
    b = -10847.2 * CB**2 + 12817.0 * CB - 6960.32
    power = displacement ** (2.0 / 3.0) * Vk**3 / (a + b * Fn)
    outfit = L**0.8 * B**0.6 * D**0.3 * CB**0.1
    steel = 0.034 * L**1.7 * B**0.7 * D**0.4 * CB**0.5
    light_ship = steel + outfit + 0.17 * power**0.9
    capital = 0.2 * 1.3 * (2000.0 * steel**0.85 + 3500.0 * outfit + 2400.0 * power**0.8)
    dwt = displacement - light_ship
    running = 40000.0 * dwt**0.3
    sea_days = 5000.0 / 24.0 * Vk
    daily = 0.19 * power * 24.0 / 1000.0 + 0.2
    fuel_cost = 1.05 * daily * sea_days * 100.0
    port_cost = 6.3 * dwt**0.8
    cargo = dwt - daily * (sea_days + 5.0) - 2.0 * dwt**0.5
    rtpa = 350.0 / (sea_days + 2.0 * (cargo / 8000.0 + 0.5))
    annual_cargo = cargo * rtpa
    f1 = (capital + running + (fuel_cost + port_cost) * rtpa) / annual_cargo
    kb, bmt, kg = 0.53 * T, (0.085 * CB - 0.002) * B**2 / (T * CB), 1.0 + 0.52 * D
    g = (L / B - 6.0, -L / D + 15.0, -L / T + 19.0, 0.45 * dwt**0.31 - T, 0.7 * D + 0.7 - T,
         500000.0 - dwt, dwt - 3000.0, 0.32 - Fn, kb + bmt - kg - 0.07 * B)
    return np.stack([f1, light_ship, -annual_cargo, _violation(*g)], axis=1)


_BOUNDS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "re21": ((1.0, math.sqrt(2.0), math.sqrt(2.0), 1.0), (3.0, 3.0, 3.0, 3.0)),
    "re32": ((0.125, 0.1, 0.1, 0.125), (5.0, 10.0, 10.0, 5.0)),
    "re33": ((55.0, 75.0, 1000.0, 11.0), (80.0, 110.0, 3000.0, 20.0)),
    "re36": ((12.0,) * 4, (60.0,) * 4),
    "re37": ((0.0,) * 4, (1.0,) * 4),
    "re41": ((0.5, 0.45, 0.5, 0.5, 0.875, 0.4, 0.4), (1.5, 1.35, 1.5, 1.5, 2.625, 1.2, 1.2)),
    "re42": ((150.0, 20.0, 13.0, 10.0, 14.0, 0.63), (274.32, 32.31, 25.0, 11.71, 18.0, 0.75)),
}
_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "re21": _re21, "re32": _re32, "re33": _re33, "re36": _re36, "re37": _re37, "re41": _re41, "re42": _re42,
}
_TITLES = {"re21": "four-bar truss", "re32": "welded beam", "re33": "disc brake", "re36": "gear train",
           "re37": "rocket injector", "re41": "car side impact", "re42": "conceptual marine design"}
RE_PROBLEMS: tuple[str, ...] = tuple(_FUNCTIONS)


@dataclass(frozen=True)
class REProblem:
    """One RE problem: bounds, objectives, and the SVH-PSL paper's normalisation.

    Attributes:
        name: ``"re21"`` .. ``"re42"``. title: what it designs.
        lower, upper: ``(d,)`` variable bounds. objectives: ``m``.
        ideal, nadir: ``(m,)`` the normalisation of :data:`IDEAL_NADIR`.
    """

    name: str
    title: str
    lower: np.ndarray
    upper: np.ndarray
    objectives: int
    ideal: np.ndarray
    nadir: np.ndarray

    @property
    def dims(self) -> int:
        """The number of variables ``d``."""
        return int(self.lower.shape[0])

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Objective values ``(n, m)`` of decisions ``x`` ``(n, d)`` in the problem's own units (within the bounds)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ShapeError(f"{self.name.upper()}: decisions must be (n, {self.dims}) (got {x.shape})")
        return _FUNCTIONS[self.name](x)

    def evaluate_unit(self, u: np.ndarray) -> np.ndarray:
        """Objective values of decisions ``u`` ``(n, d)`` in the unit box, mapped linearly onto the bounds."""
        u = np.asarray(u, dtype=np.float64)
        return self.evaluate(self.lower + u * (self.upper - self.lower))

    def as_pymoo(self):
        """The problem on the unit box as a ``pymoo.core.problem.Problem`` (for pymoo's algorithms)."""
        from pymoo.core.problem import Problem

        me = self

        class _Unit(Problem):
            def __init__(self) -> None:
                super().__init__(n_var=me.dims, n_obj=me.objectives, xl=0.0, xu=1.0)

            def _evaluate(self, x, out, *args, **kwargs) -> None:
                out["F"] = me.evaluate_unit(x)

        return _Unit()

    def normalize(self, f: np.ndarray) -> np.ndarray:
        """``(f - ideal) / (nadir - ideal)``: the space where the paper measures hypervolume at ``1.1``."""
        return (np.asarray(f, dtype=np.float64) - self.ideal) / (self.nadir - self.ideal)


def non_dominated_archive(archive: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    """The points of ``archive`` and ``new`` that no other point of both dominates (minimisation).

    ``archive`` must itself be non-dominated (or None); duplicates of a kept point are kept once.
    The work is ``O(|archive| |new| + |new|^2)``: an archive can grow to many thousands.

    Args:
        archive: ``(N, m)`` or None. new: ``(k, m)``.

    Returns:
        ``(N', m)`` the new archive.
    """
    new = np.unique(np.asarray(new, dtype=np.float64), axis=0)
    le = (new[:, None, :] <= new[None, :, :]).all(-1)
    lt = (new[:, None, :] < new[None, :, :]).any(-1)
    new = new[~(le & lt).any(axis=0)]  # non-dominated among themselves
    if archive is None or archive.shape[0] == 0:
        return new
    # a new point is dropped when an archive point dominates or equals it
    covered = (archive[None, :, :] <= new[:, None, :]).all(-1).any(axis=1)
    new = new[~covered]
    if new.shape[0] == 0:
        return archive
    beaten = ((new[None, :, :] <= archive[:, None, :]).all(-1) & (new[None, :, :] < archive[:, None, :]).any(-1)).any(axis=1)
    return np.vstack([archive[~beaten], new])


def approximate_front(problem: REProblem, *, population: int = 100, generations: int = 200, seed: int = 0) -> np.ndarray:
    """An approximate Pareto front: every non-dominated point NSGA-II (pymoo) evaluates.

    NSGA-II runs on the unit box for ``generations`` generations of ``population``; the
    archive of all its evaluations' non-dominated points (:func:`non_dominated_archive`) is
    returned, denser than the last population. The SVH-PSL code uses the approximated fronts
    of the reproblems repository instead (results of many long EMO runs); at the defaults the
    hypervolume of this archive is within a few 1e-4 of theirs in the paper's normalised
    space (docs/methods/pareto.md lists the differences).

    Returns:
        ``(N, m)`` objective values in the problem's own units.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2

    algo = NSGA2(pop_size=population)
    algo.setup(problem.as_pymoo(), termination=("n_gen", generations), seed=seed, verbose=False)
    archive = None
    while algo.has_next():
        algo.next()
        batch = algo.off if algo.off is not None else algo.pop  # the first generation has no offspring
        archive = non_dominated_archive(archive, batch.get("F"))
    return archive


def re_problem(name: str) -> REProblem:
    """The RE problem ``name`` (``"re21"``, ``"re32"``, ``"re33"``, ``"re36"``, ``"re37"``, ``"re41"``, ``"re42"``; any case).

    Raises:
        ConfigError: an unknown name.
    """
    key = str(name).lower()
    if key not in _FUNCTIONS:
        raise ConfigError(f"re_problem: unknown problem {name!r} (expected one of {', '.join(RE_PROBLEMS)})")
    lo, hi = _BOUNDS[key]
    ideal, nadir = IDEAL_NADIR[key]
    return REProblem(key, _TITLES[key], np.array(lo), np.array(hi), len(ideal), np.array(ideal), np.array(nadir))
