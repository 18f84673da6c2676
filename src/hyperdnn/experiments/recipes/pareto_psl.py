"""Recipe ``pareto-psl``: SVH-PSL against PSL and NSGA-II on expensive synthetic and real-world problems.

Nguyen et al., "Improving Pareto Set Learning for Expensive Multi-objective Optimization
via Stein Variational Hypernetworks", AAAI 2025. Defaults from the authors' ``run_svh.py``
(github.com/nguyenduc810/SVH-PSL): 20 Latin-hypercube points, 20 iterations of 5
evaluations (120 in all), 1000 model steps per iteration, 10 preferences a step, LCB
coefficient 0.1, 1000 candidates, Adam lr 1e-3, GPs fitted 300 steps at lr 0.5, ZDT
problems with 30 variables. PSL is run as the authors' ``run_psl_mobo.py`` runs it (its
objectives standardised on every problem). ZDT is measured as the authors' evaluation
notebook (``plot_result.ipynb``) does: hypervolume at (1.1, 1.1), the true front pymoo's
100-point ``pareto_front()``; ``--zdt-reference code`` uses ``run_svh.py``'s reference
points instead (ZDT1 (0.9994, 6.0576), ZDT2 (0.9994, 6.8960), ZDT3 (0.9994, 6.0571)), which
the code only prints. Each final value is also given against the exact front
(``*_exact``: ZDT1 and ZDT2 in closed form, ZDT3 from 20,000 front points).
DTLZ2 (6 variables, 3 objectives; not in the SVH-PSL code) uses (1.1, 1.1, 1.1), where
the true front's hypervolume is 1.1^3 - pi/6. F2 and VLMOP2 (6 variables, 2 objectives;
:mod:`hyperdnn.methods.pareto.synthetic`, from the authors' ``problem.py``) are measured as
the notebook measures them: raw objectives at (1.1, 1.1) against its fronts
``Ground_truth_approximate_PF/{f2,VLMOP2}.npy`` (VLMOP2's regenerated exactly, F2's
hypervolume :data:`F2_NOTEBOOK_HV`), and the exact value against the closed-form front;
their models are fitted on standardised objectives, as ``run_svh.py`` does on every
problem but ZDT. NSGA-II (pymoo) gets the same budget:
population ``initial``, ``iterations * batch / initial`` more generations.

The real-world problems are the paper's seven of the RE suite (RE21, RE32, RE33, RE36,
RE37, RE41, RE42; :mod:`hyperdnn.methods.pareto.re_problems`). As in the authors'
evaluation (``plot_result.ipynb``) their objectives are normalised with the notebook's
ideal and nadir points and the hypervolume is taken at (1.1, ..., 1.1); the models are fitted
on objectives standardised per iteration (``run_svh.py``'s ``StandardTransform``). The
true front's hypervolume is that of an approximate front: every non-dominated point of a
pymoo NSGA-II run of ``front_population`` x ``front_generations`` evaluations, saved in the
run directory as ``front_<problem>.npy`` (the paper uses the reproblems repository's fronts,
which this project does not ship; the differences are listed in docs/methods/pareto.md).
Every evaluated point of every run is saved as ``evaluations/<problem>_<method>_run<i>.npz``.

Reports, per problem, ``ln(HV(true front) - HV(evaluated points))`` against the number
of evaluations (the paper's scale; ``--log log10`` for base 10; the gap is floored at 1e-14
as in the notebook), mean and standard deviation over ``runs``, the final values and wall
times, and a figure.
Resumable: a checkpoint after every iteration of a Pareto-set learner.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import boolean, one_of, positive, recipe
from hyperdnn.experiments.runs import RunContext

SYNTHETIC = ("zdt1", "zdt2", "zdt3", "dtlz2", "f2", "vlmop2")
REAL_WORLD = ("re21", "re32", "re33", "re36", "re37", "re41", "re42")
PROBLEMS = SYNTHETIC + REAL_WORLD
REFERENCE = {"zdt1": (1.1, 1.1), "zdt2": (1.1, 1.1), "zdt3": (1.1, 1.1), "dtlz2": (1.1, 1.1, 1.1),
             "f2": (1.1, 1.1), "vlmop2": (1.1, 1.1)}  # plot_result.ipynb: ones + 0.1 (run_svh.py's dic too, for F2 and VLMOP2)
CODE_REFERENCE = {"zdt1": (0.9994, 6.0576), "zdt2": (0.9994, 6.8960), "zdt3": (0.9994, 6.0571)}  # run_svh.py's dic
DIMS = {"zdt1": 30, "zdt2": 30, "zdt3": 30, "dtlz2": 6, "f2": 6, "vlmop2": 6}  # run_svh.py: F2 and VLMOP2 with 6
# The hypervolume at (1.1, 1.1) of the notebook's F2 front, Ground_truth_approximate_PF/f2.npy of the SVH-PSL code
# (200 float32 points, f1 in [0.009, 0.976], within 3e-5 of f2 = 1 - sqrt(f1); sha256 1cb73b9b...fed161,
# docs/methods/pareto.md). The points are not a formula's, so their hypervolume is kept, not the points;
# VLMOP2's notebook front is regenerated exactly (SyntheticProblem.pareto_front(400)).
F2_NOTEBOOK_HV = 0.8714253567521852
LEARNERS = (("SVH-PSL", True), ("PSL", False))


@dataclass
class Config:
    """Configuration of ``pareto-psl`` (defaults: the SVH-PSL code's)."""

    problems: tuple[str, ...] = field(default=PROBLEMS, metadata={"help": "benchmark problems, comma-separated, some of " + ",".join(PROBLEMS)})
    initial: int = field(default=20, metadata={"help": "evaluations of the true problem before the first model (SVH-PSL code: 20)"})
    iterations: int = field(default=20, metadata={"help": "rounds of new evaluations after the initial ones"})
    batch: int = field(default=5, metadata={"help": "new evaluations of the true problem per round"})
    steps: int = field(default=1000, metadata={"help": "Pareto-set model steps per iteration"})
    particles: int = field(default=10, metadata={"help": "preference particles moved by SVGD per model step"})
    lcb: float = field(default=0.1, metadata={"help": "weight of the GP standard deviation in the lower confidence bound"})
    candidates: int = field(default=1000, metadata={"help": "candidate solutions sampled from the model per round before choosing the batch"})
    lr: float = field(default=1e-3, metadata={"help": "Adam's learning rate for the Pareto-set model"})
    gp_steps: int = field(default=300, metadata={"help": "optimizer steps fitting each GP surrogate per round (SVH-PSL code: 300)"})
    gp_lr: float = field(default=0.5, metadata={"help": "Adam's learning rate fitting the GPs (SVH-PSL code: 0.5)"})
    code_update: bool = field(default=True, metadata={"help": "the authors' model update (gradient normalisation, best-step selection, PSL-MOBO's loss); off: the plain gradient of the summed losses"})
    pref_shift: float = field(default=1e-4, metadata={"help": "added to the preferences in the loss, as the authors' code"})
    uncertainty: str = field(default="variance", metadata={"help": "SVH-PSL's LCB uncertainty term: variance (what run_svh.py computes) or std (the LCB as written); PSL uses std, as run_psl_mobo.py"})
    gp_standardize: bool = field(default=False, metadata={"help": "the GPs standardise their outputs themselves (off: fitted on the objectives as given, as the authors' code)"})
    gp_noise_floor: float = field(default=1e-5, metadata={"help": "the GPs' smallest likelihood noise (authors' code: 1e-5)"})
    zdt_reference: str = field(default="figure", metadata={"help": "ZDT hypervolume measure: figure (ref 1.1, pymoo's 100-point front, as the authors' notebook) or code (run_svh.py's reference points, exact front)"})
    log: str = field(default="ln", metadata={"help": "logarithm of the hypervolume difference: ln (the paper's) or log10"})
    runs: int = field(default=1, metadata={"help": "independent runs per method (the paper: 5)"})
    front_population: int = field(default=200, metadata={"help": "RE problems: NSGA-II population of the run approximating the true front"})
    front_generations: int = field(default=500, metadata={"help": "RE problems: NSGA-II generations of the run approximating the true front"})

    def __post_init__(self) -> None:
        self.problems = tuple(self.problems) if isinstance(self.problems, list) else self.problems
        part = "pareto-psl"
        if not isinstance(self.problems, tuple) or not self.problems:
            raise ConfigError(f"{part}: problems must be a non-empty tuple of names from {PROBLEMS} (got {self.problems!r})")
        for p in self.problems:
            one_of(part, "problems", p, PROBLEMS)
        for name in ("initial", "iterations", "batch", "steps", "particles", "candidates", "gp_steps", "runs", "front_population", "front_generations"):
            positive(part, name, getattr(self, name))
        positive(part, "lr", self.lr, float)
        positive(part, "lcb", self.lcb, float)
        positive(part, "gp_lr", self.gp_lr, float)
        boolean(part, "code_update", self.code_update)
        if isinstance(self.pref_shift, bool) or not isinstance(self.pref_shift, (int, float)) or not math.isfinite(self.pref_shift) or self.pref_shift < 0:
            raise ConfigError(f"{part}: pref_shift must be a finite number >= 0 (got {self.pref_shift!r})")
        one_of(part, "zdt_reference", self.zdt_reference, ("figure", "code"))
        one_of(part, "uncertainty", self.uncertainty, ("std", "variance"))
        boolean(part, "gp_standardize", self.gp_standardize)
        positive(part, "gp_noise_floor", self.gp_noise_floor, float)
        one_of(part, "log", self.log, ("ln", "log10"))


@dataclass
class _Problem:
    """A benchmark as the recipe uses it: objectives on the unit box and how they are measured."""

    name: str
    dims: int
    objectives: int
    evaluate: Callable[[np.ndarray], np.ndarray]  # (n, d) in [0, 1]^d -> (n, m) raw objective values
    measured: Callable[[np.ndarray], np.ndarray]  # raw values -> the space the hypervolume is taken in
    reference: tuple[float, ...]
    true_hv: float
    true_hv_exact: float  # the exact front's (RE: the same approximate front as true_hv)
    pymoo: object  # the problem for pymoo's NSGA-II (on the unit box for RE problems)
    standardize: bool
    title: str
    extra: dict


def _problem(name: str, cfg: Config, run_dir: Path) -> _Problem:
    from hyperdnn.methods.pareto import hypervolume

    if name in ("f2", "vlmop2"):
        from hyperdnn.methods.pareto import synthetic_problem

        sp = synthetic_problem(name, DIMS[name])
        ref = REFERENCE[name]  # the notebook measures them as ZDT: raw objectives (no normalisation), 1.1 in each
        exact = sp.front_hypervolume(ref)
        # the notebook's true fronts: Ground_truth_approximate_PF/{f2,VLMOP2}.npy
        true_hv = F2_NOTEBOOK_HV if name == "f2" else hypervolume(sp.pareto_front(400), ref)
        # run_svh.py and run_psl_mobo.py standardise the objectives on every problem but ZDT
        return _Problem(name, sp.dims, 2, sp.evaluate_unit, lambda y: y, ref, true_hv, exact, sp.as_pymoo(), True, sp.title, {})

    if name in REAL_WORLD:
        from hyperdnn.methods.pareto import approximate_front, re_problem

        rp = re_problem(name)
        cached = run_dir / f"front_{name}.npy"  # kept in the run directory: a resumed run does not recompute it
        if cached.is_file():
            front = np.load(cached, allow_pickle=False)
        else:
            front = approximate_front(rp, population=cfg.front_population, generations=cfg.front_generations, seed=0)
            np.save(cached, front, allow_pickle=False)
        ref = (1.1,) * rp.objectives
        true_hv = hypervolume(rp.normalize(front), ref)
        return _Problem(name, rp.dims, rp.objectives, rp.evaluate_unit, rp.normalize, ref, true_hv, true_hv,
                        rp.as_pymoo(), True, f"{name.upper()}, {rp.title}",
                        {"ideal": rp.ideal.tolist(), "nadir": rp.nadir.tolist(), "front_points": int(front.shape[0])})
    from pymoo.problems import get_problem

    reference = REFERENCE[name] if name == "dtlz2" or cfg.zdt_reference == "figure" else CODE_REFERENCE[name]
    if name == "dtlz2":
        prob = get_problem("dtlz2", n_var=DIMS[name], n_obj=3)
        true_hv = exact = 1.1**3 - math.pi / 6  # the front is the unit sphere's positive octant
    else:
        prob = get_problem(name, n_var=DIMS[name])
        # a fresh instance each: pymoo caches a problem's pareto_front() whatever n_points a later call asks for
        exact = _zdt_exact_hv(name, reference, get_problem(name, n_var=DIMS[name]))
        # the notebook's true front: pymoo's default 100 points (its hypervolume is below the exact one)
        true_hv = hypervolume(get_problem(name, n_var=DIMS[name]).pareto_front(), reference) if cfg.zdt_reference == "figure" else exact
    lb, ub = prob.xl, prob.xu

    def f(x: np.ndarray, prob=prob, lb=lb, ub=ub) -> np.ndarray:
        return prob.evaluate(lb + x * (ub - lb))

    return _Problem(name, DIMS[name], prob.n_obj, f, lambda y: y, reference, true_hv, exact, prob, False, name.upper(), {})


def _zdt_exact_hv(name: str, reference: tuple[float, ...], prob) -> float:
    """The hypervolume of ZDT1's or ZDT2's whole front in closed form (ZDT3's: 20,000 front points) at ``reference``."""
    from hyperdnn.methods.pareto import hypervolume

    r1, r2 = reference
    a = min(r1, 1.0)  # the front spans f1 in [0, 1]; f2 >= 0 on it, and r2 >= 1 here
    if name == "zdt1":  # front f2 = 1 - sqrt(f1): the area under the reference and above the front
        return r1 * r2 - (a - 2 / 3 * a**1.5)
    if name == "zdt2":  # front f2 = 1 - f1^2
        return r1 * r2 - (a - a**3 / 3)
    return hypervolume(prob.pareto_front(n_points=20000), reference)  # ZDT3's front is disconnected


def _nsga2(prob, cfg: Config, seed: int) -> np.ndarray:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.optimize import minimize

    gens = 1 + math.ceil(cfg.iterations * cfg.batch / cfg.initial)
    res = minimize(prob, NSGA2(pop_size=cfg.initial), ("n_gen", gens), seed=seed, save_history=True, verbose=False)
    ys = [e.pop.get("F") for e in res.history]  # the offspring each generation evaluated (the first: the start)
    return np.vstack([h.off.get("F") if h.off is not None and i > 0 else ys[i] for i, h in enumerate(res.history)])


@recipe("pareto-psl", "SVH-PSL vs PSL vs NSGA-II on ZDT1-3, DTLZ2, F2, VLMOP2 and the RE problems: log hypervolume difference per evaluation (Nguyen et al. 2025)", Config)
def run(ctx: RunContext) -> dict:
    from hyperdnn.methods.pareto import ParetoSetLearning, PSLHistory, log_hypervolume_difference, non_dominated_archive

    cfg: Config = ctx.config
    budget = cfg.initial + cfg.iterations * cfg.batch
    evals = list(range(cfg.initial, budget + 1, cfg.batch))
    # loop state: where the run is (problem, run, method), the learner in progress, the finished curves
    state = ctx.restore({"at": [0, 0, 0], "learner": None, "curves": {}, "seconds": {}, "fronts": {}, "finals_exact": {}})
    ctx.progress(total=len(cfg.problems) * cfg.runs * len(LEARNERS) * cfg.iterations)
    results: dict = {"budget": budget, "problems": {}}
    rows = []
    for pi, name in enumerate(cfg.problems):
        prob = _problem(name, cfg, ctx.run_dir)
        ref = np.array(prob.reference)
        curves = state["curves"].setdefault(name, {label: [] for label in ("SVH-PSL", "PSL", "NSGA-II")})
        seconds = state["seconds"].setdefault(name, {label: [] for label in curves})
        fronts = state["fronts"].setdefault(name, {label: [] for label in curves})  # each run's non-dominated evaluated points

        base, floor = (math.e, 1e-14) if cfg.log == "ln" else (10.0, 1e-12)

        def lhd(y: np.ndarray, prob=prob, ref=ref, exact: bool = False) -> float:
            return log_hypervolume_difference(prob.measured(y), prob.true_hv_exact if exact else prob.true_hv, ref, base=base, floor=floor)

        finals_exact = state["finals_exact"].setdefault(name, {label: [] for label in curves})

        for run_i in range(cfg.runs):
            seed = ctx.seed + run_i
            for mi, (label, svgd) in enumerate(LEARNERS):
                if [pi, run_i, mi] < state["at"]:
                    continue  # finished before the checkpoint this run resumed from
                psl = ParetoSetLearning(
                    prob.evaluate, prob.dims, prob.objectives, svgd=svgd, initial=cfg.initial, iterations=cfg.iterations, batch=cfg.batch,
                    steps=cfg.steps, particles=cfg.particles, lcb=cfg.lcb, candidates=cfg.candidates, lr=cfg.lr,
                    gp_steps=cfg.gp_steps, gp_lr=cfg.gp_lr, code_update=cfg.code_update, pref_shift=cfg.pref_shift,
                    uncertainty=cfg.uncertainty if svgd else "std", gp_standardize=cfg.gp_standardize, gp_noise_floor=cfg.gp_noise_floor,
                    # run_psl_mobo.py standardises the objectives on every problem, run_svh.py on all but ZDT
                    standardize=prob.standardize or (cfg.code_update and not svgd), seed=seed,
                )
                if state["learner"] is None:
                    hist, rng = psl.begin()
                else:  # resumed inside this learner: its history and generator (torch's RNG is restored by the context)
                    hist = PSLHistory.from_state(state["learner"]["history"])
                    rng = np.random.default_rng()
                    rng.bit_generator.state = state["learner"]["rng"]
                while len(hist.evaluations) <= cfg.iterations:
                    psl.iterate(hist, rng)
                    state["learner"] = {"history": hist.state_dict(), "rng": rng.bit_generator.state}
                    ctx.step_done(problem=name, method=label, run=run_i + 1, evaluations=hist.evaluations[-1], log_hv_diff=lhd(hist.y))
                curves[label].append([lhd(hist.y[:n]) for n in hist.evaluations])
                finals_exact[label].append(lhd(hist.y, exact=True))
                seconds[label].append(hist.seconds[-1])
                fronts[label].append(non_dominated_archive(None, hist.y).tolist())
                _save_evaluations(ctx.run_dir, name, label, run_i, hist.x, hist.y)
                ctx.log(kind="run", problem=name, method=label, seed=seed, log_hv_diff=curves[label][-1][-1], seconds=seconds[label][-1])
                state["learner"] = None
                state["at"] = [pi, run_i, mi + 1]
            if [pi, run_i, len(LEARNERS)] >= state["at"]:
                t0 = time.perf_counter()
                y = _nsga2(prob.pymoo, cfg, seed)[:budget]
                seconds["NSGA-II"].append(time.perf_counter() - t0)
                curves["NSGA-II"].append([lhd(y[:n]) for n in evals])
                finals_exact["NSGA-II"].append(lhd(y, exact=True))
                fronts["NSGA-II"].append(non_dominated_archive(None, y).tolist())
                state["at"] = [pi, run_i + 1, 0]
        summary: dict[str, dict] = {}
        for label, cs in curves.items():
            arr = np.array(cs)
            mean, std = arr.mean(axis=0), arr.std(axis=0)
            summary[label] = {"final_log_hv_diff_mean": float(mean[-1]), "final_log_hv_diff_std": float(std[-1]),
                              "final_per_run": [float(c[-1]) for c in cs], "seconds_mean": float(np.mean(seconds[label])),
                              "final_log_hv_diff_exact_mean": float(np.mean(finals_exact[label])),
                              "final_exact_per_run": [float(v) for v in finals_exact[label]],
                              "curve_mean": [float(v) for v in mean], "curve_std": [float(v) for v in std],
                              "fronts": fronts[label]}
            spread = f" ± {std[-1]:.3f}" if cfg.runs > 1 else ""
            rows.append([name, label, f"{mean[-1]:.3f}{spread}", f"{np.mean(seconds[label]):.1f}"])
        _figure(ctx, prob, evals, curves, cfg.runs, cfg.log)
        best = min(summary, key=lambda k: float(summary[k]["final_log_hv_diff_mean"]))
        results["problems"][name] = {"true_hv": prob.true_hv, "true_hv_exact": prob.true_hv_exact, "reference": list(prob.reference),
                                     "log": cfg.log, "best": best, "methods": summary, **prob.extra}
    note = f"{cfg.runs} run(s) (mean ± std over runs); {cfg.steps} model steps per iteration; {ctx.threads} thread(s)"
    ctx.table(f"{cfg.log} HV difference after {budget} evaluations (lower is better)", ["problem", "method", f"{cfg.log} HV diff", "seconds"], rows, note=note)
    return results


def _save_evaluations(run_dir: Path, problem: str, label: str, run_i: int, x: np.ndarray, y: np.ndarray) -> None:
    """Every evaluated decision (unit box) and objective value of one run, in order: ``evaluations/<problem>_<method>_run<i>.npz``."""
    folder = run_dir / "evaluations"
    folder.mkdir(exist_ok=True)
    np.savez(folder / f"{problem}_{label.lower()}_run{run_i + 1}.npz", x=x, y=y)


def _figure(ctx: RunContext, prob: _Problem, evals: list[int], curves: dict[str, list[list[float]]], runs: int, log: str) -> None:
    """Mean log HV difference against evaluations per method, shaded mean ± std over runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, cs in curves.items():
        arr = np.array(cs)
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        ax.plot(evals[: len(mean)], mean, label=label, marker="o", markersize=2)
        if arr.shape[0] > 1:
            ax.fill_between(evals[: len(mean)], mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("function evaluations")
    ax.set_ylabel(f"{log} hypervolume difference")
    ref = "normalised, ref 1.1" if prob.name in REAL_WORLD else f"ref {tuple(prob.reference)}"
    ax.set_title(f"{prob.title} ({ref}, {runs} run{'s' if runs > 1 else ''})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.save_figure(fig, f"psl_{prob.name}")
