"""Recipe ``pareto-psl``: SVH-PSL against PSL and NSGA-II on expensive synthetic problems.

Nguyen et al., "Improving Pareto Set Learning for Expensive Multi-objective Optimization
via Stein Variational Hypernetworks", AAAI 2025. Defaults from the authors' ``run_svh.py``
(github.com/nguyenduc810/SVH-PSL): 20 Latin-hypercube points, 20 iterations of 5
evaluations (120 in all), 1000 model steps per iteration, 10 preferences a step, LCB
coefficient 0.1, 1000 candidates, Adam lr 1e-3, ZDT problems with 30 variables and the
code's reference points (ZDT1 (0.9994, 6.0576), ZDT2 (0.9994, 6.8960), ZDT3 (0.9994, 6.0571)).
DTLZ2 (6 variables, 3 objectives; not in the SVH-PSL code) uses (1.1, 1.1, 1.1), where
the true front's hypervolume is 1.1^3 - pi/6. NSGA-II (pymoo) gets the same budget:
population ``initial``, ``iterations * batch / initial`` more generations.

Reports, per problem, ``log10(HV(true front) - HV(evaluated points))`` against the number
of evaluations (the paper's measure), the final values and wall times, and a figure.
The RE engineering problems of the paper are not included (see docs/methods/pareto.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import one_of, positive, recipe
from hyperdnn.experiments.runs import RunContext

PROBLEMS = ("zdt1", "zdt2", "zdt3", "dtlz2")
REFERENCE = {"zdt1": (0.9994, 6.0576), "zdt2": (0.9994, 6.8960), "zdt3": (0.9994, 6.0571), "dtlz2": (1.1, 1.1, 1.1)}
DIMS = {"zdt1": 30, "zdt2": 30, "zdt3": 30, "dtlz2": 6}


@dataclass
class Config:
    """Configuration of ``pareto-psl`` (defaults: the SVH-PSL code's)."""

    problems: tuple[str, ...] = field(default=PROBLEMS, metadata={"help": "benchmark problems, comma-separated, some of zdt1,zdt2,zdt3,dtlz2"})
    initial: int = field(default=20, metadata={"help": "evaluations of the true problem before the first model (SVH-PSL code: 20)"})
    iterations: int = field(default=20, metadata={"help": "rounds of new evaluations after the initial ones"})
    batch: int = field(default=5, metadata={"help": "new evaluations of the true problem per round"})
    steps: int = field(default=1000, metadata={"help": "Pareto-set model steps per iteration"})
    particles: int = field(default=10, metadata={"help": "preference particles moved by SVGD per model step"})
    lcb: float = field(default=0.1, metadata={"help": "weight of the GP standard deviation in the lower confidence bound"})
    candidates: int = field(default=1000, metadata={"help": "candidate solutions sampled from the model per round before choosing the batch"})
    lr: float = 1e-3
    gp_steps: int = field(default=100, metadata={"help": "optimizer steps fitting each GP surrogate per round"})
    runs: int = field(default=1, metadata={"help": "independent runs per method (the paper: 5)"})

    def __post_init__(self) -> None:
        self.problems = tuple(self.problems) if isinstance(self.problems, list) else self.problems
        part = "pareto-psl"
        if not isinstance(self.problems, tuple) or not self.problems:
            raise ConfigError(f"{part}: problems must be a non-empty tuple of names from {PROBLEMS} (got {self.problems!r})")
        for p in self.problems:
            one_of(part, "problems", p, PROBLEMS)
        for name in ("initial", "iterations", "batch", "steps", "particles", "candidates", "gp_steps", "runs"):
            positive(part, name, getattr(self, name))
        positive(part, "lr", self.lr, float)
        positive(part, "lcb", self.lcb, float)


def _problem(name: str):
    from pymoo.problems import get_problem

    if name == "dtlz2":
        prob = get_problem("dtlz2", n_var=DIMS[name], n_obj=3)
        true_hv = 1.1**3 - math.pi / 6  # the front is the unit sphere's positive octant
    else:
        from hyperdnn.methods.pareto import hypervolume

        prob = get_problem(name, n_var=DIMS[name])
        r1, r2 = REFERENCE[name]
        if name == "zdt1":  # front f2 = 1 - sqrt(f1): the area above it up to the reference, in closed form
            true_hv = r1 * r2 - (r1 - 2 / 3 * r1**1.5)
        elif name == "zdt2":  # front f2 = 1 - f1^2
            true_hv = r1 * r2 - (r1 - r1**3 / 3)
        else:  # ZDT3's front is disconnected: pymoo's points of it
            true_hv = hypervolume(prob.pareto_front(n_points=20000), REFERENCE[name])
    return prob, true_hv


def _nsga2(prob, cfg: Config, seed: int) -> np.ndarray:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.optimize import minimize

    gens = 1 + math.ceil(cfg.iterations * cfg.batch / cfg.initial)
    res = minimize(prob, NSGA2(pop_size=cfg.initial), ("n_gen", gens), seed=seed, save_history=True, verbose=False)
    ys = [e.pop.get("F") for e in res.history]  # the offspring each generation evaluated (the first: the start)
    return np.vstack([h.off.get("F") if h.off is not None and i > 0 else ys[i] for i, h in enumerate(res.history)])


@recipe("pareto-psl", "SVH-PSL vs PSL vs NSGA-II on ZDT1-3 and DTLZ2: log hypervolume difference per evaluation (Nguyen et al. 2025)", Config)
def run(ctx: RunContext) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hyperdnn.methods.pareto import ParetoSetLearning, log_hypervolume_difference

    cfg: Config = ctx.config
    budget = cfg.initial + cfg.iterations * cfg.batch
    results: dict = {"budget": budget, "problems": {}}
    rows = []
    for name in cfg.problems:
        prob, true_hv = _problem(name)
        ref = np.array(REFERENCE[name])
        lb, ub = prob.xl, prob.xu

        def f(x: np.ndarray, prob=prob, lb=lb, ub=ub) -> np.ndarray:
            return prob.evaluate(lb + x * (ub - lb))

        curves: dict[str, list[list[float]]] = {"SVH-PSL": [], "PSL": [], "NSGA-II": []}
        seconds: dict[str, list[float]] = {k: [] for k in curves}
        for run_i in range(cfg.runs):
            seed = ctx.seed + run_i
            for label, svgd in (("SVH-PSL", True), ("PSL", False)):
                t0 = time.perf_counter()
                hist = ParetoSetLearning(
                    f, DIMS[name], prob.n_obj, svgd=svgd, initial=cfg.initial, iterations=cfg.iterations, batch=cfg.batch,
                    steps=cfg.steps, particles=cfg.particles, lcb=cfg.lcb, candidates=cfg.candidates, lr=cfg.lr,
                    gp_steps=cfg.gp_steps, seed=seed,
                ).run()
                seconds[label].append(time.perf_counter() - t0)
                curve = [log_hypervolume_difference(hist.y[:n], true_hv, ref) for n in hist.evaluations]
                curves[label].append(curve)
                ctx.log(kind="run", problem=name, method=label, seed=seed, log_hv_diff=curve[-1], seconds=seconds[label][-1])
            t0 = time.perf_counter()
            y = _nsga2(prob, cfg, seed)[:budget]
            seconds["NSGA-II"].append(time.perf_counter() - t0)
            evals = list(range(cfg.initial, budget + 1, cfg.batch))
            curves["NSGA-II"].append([log_hypervolume_difference(y[:n], true_hv, ref) for n in evals])
        evals = list(range(cfg.initial, budget + 1, cfg.batch))
        summary: dict[str, dict] = {}
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for label, cs in curves.items():
            arr = np.array(cs)
            mean = arr.mean(axis=0)
            ax.plot(evals[: len(mean)], mean, label=label, marker="o", markersize=2)
            if arr.shape[0] > 1:
                ax.fill_between(evals[: len(mean)], arr.min(axis=0), arr.max(axis=0), alpha=0.2)
            summary[label] = {"final_log_hv_diff_mean": float(mean[-1]), "final_per_run": [float(c[-1]) for c in cs],
                              "seconds_mean": float(np.mean(seconds[label])), "curve_mean": [float(v) for v in mean]}
            rows.append([name, label, f"{mean[-1]:.3f}", f"{np.mean(seconds[label]):.1f}"])
        ax.set_xlabel("function evaluations")
        ax.set_ylabel("log10 hypervolume difference")
        ax.set_title(f"{name.upper()} (ref {tuple(REFERENCE[name])}, {cfg.runs} run(s))")
        ax.grid(alpha=0.3)
        ax.legend()
        ctx.save_figure(fig, f"psl_{name}")
        best = min(summary, key=lambda k: float(summary[k]["final_log_hv_diff_mean"]))
        results["problems"][name] = {"true_hv": true_hv, "reference": list(REFERENCE[name]), "best": best, "methods": summary}
    ctx.table(f"log10 HV difference after {budget} evaluations (lower is better)", ["problem", "method", "log10 HV diff", "seconds"], rows,
              note=f"{cfg.runs} run(s); {cfg.steps} model steps per iteration")
    return results
