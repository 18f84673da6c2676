"""Short end-to-end runs of the Pareto recipes (pareto-psl, pareto-multimnist) and their config checks."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from hyperdnn.errors import ConfigError
from hyperdnn.methods.pareto import hypervolume
from hyperdnn.experiments.registry import get_recipe
from hyperdnn.experiments.runs import run_recipe

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(
    not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()),
    reason=f"MNIST not found under {DATA}",
)


def run(name: str, tmp_path: Path, **config) -> tuple[Path, dict]:
    r = get_recipe(name)
    res = run_recipe(r, r.config(**config), data_dir=DATA, out_dir=tmp_path / "runs", show_progress=False,
                     print_tables=False, checkpoint_every=0, threads=1)
    for f in ("config.json", "metrics.jsonl", "results.json", "results.md"):
        assert (res.run_dir / f).is_file(), f
    json.loads((res.run_dir / "results.json").read_text())
    return res.run_dir, res.results


def test_pareto_psl_short(tmp_path: Path) -> None:
    from hyperdnn.experiments.recipes.pareto_psl import _problem

    # run_svh.py's reference point (--zdt-reference code): the exact front's hypervolume
    code = _problem("zdt1", get_recipe("pareto-psl").config(problems=("zdt1",), zdt_reference="code"), tmp_path)
    # ZDT1's front f2 = 1 - sqrt(f1): HV at (r1, r2) = r1 r2 - (r1 - 2/3 r1^1.5), for r1 < 1
    r1, r2 = 0.9994, 6.0576
    assert code.reference == (r1, r2)
    assert code.true_hv == pytest.approx(r1 * r2 - (r1 - 2 / 3 * r1**1.5), rel=1e-3)
    # ZDT3 (disconnected front): the notebook's 100 pymoo points, and 20,000 for the exact value (not pymoo's cached 100)
    from pymoo.problems import get_problem

    zdt3 = _problem("zdt3", get_recipe("pareto-psl").config(problems=("zdt3",)), tmp_path)
    assert zdt3.true_hv == pytest.approx(hypervolume(get_problem("zdt3").pareto_front(), (1.1, 1.1)), rel=1e-12)
    assert zdt3.true_hv_exact == pytest.approx(hypervolume(get_problem("zdt3").pareto_front(n_points=20000), (1.1, 1.1)), rel=1e-12)
    assert zdt3.true_hv_exact - zdt3.true_hv > 1e-3
    run_dir, res = run("pareto-psl", tmp_path, problems=("zdt1",), initial=6, iterations=1, batch=2, steps=3, candidates=20, gp_steps=5)
    zdt1 = res["problems"]["zdt1"]
    # the default: the authors' notebook, reference (1.1, 1.1), true front pymoo's 100 points f1 = i/99, f2 = 1 - sqrt(f1);
    # their hypervolume by hand: the staircase of rectangles [f1_i, f1_{i+1}) x [f2_i, 1.1] plus [f1_99, 1.1] x [0, 1.1]
    f1 = np.linspace(0, 1, 100)
    f2 = 1 - np.sqrt(f1)
    stairs = float(np.sum(np.diff(f1) * (1.1 - f2[:-1])) + (1.1 - f1[-1]) * (1.1 - f2[-1]))
    assert zdt1["reference"] == [1.1, 1.1] and zdt1["log"] == "ln"
    assert zdt1["true_hv"] == pytest.approx(stairs, rel=1e-9)
    assert zdt1["true_hv_exact"] == pytest.approx(1.1 * 1.1 - (1 - 2 / 3), rel=1e-9)  # the whole front, in closed form
    curve = zdt1["methods"]["SVH-PSL"]["curve_mean"]
    assert curve[0] == pytest.approx(math.log(stairs - hypervolume(np.load(run_dir / "evaluations" / "zdt1_svh-psl_run1.npz")["y"][:6], (1.1, 1.1))))
    for m in ("SVH-PSL", "PSL", "NSGA-II"):
        curve = zdt1["methods"][m]["curve_mean"]
        assert len(curve) == 2 and all(np.isfinite(curve)) and curve[1] <= curve[0] + 1e-12  # more points never lose HV
    assert (run_dir / "psl_zdt1.png").is_file()
    with pytest.raises(ConfigError, match="problems"):
        get_recipe("pareto-psl").config(problems=("zdt9",))


@needs_mnist
def test_pareto_multimnist_short(tmp_path: Path) -> None:
    run_dir, res = run("pareto-multimnist", tmp_path, epochs=1, batch_size=64, train_limit=256, test_limit=200, rays=3,
                       baseline_rays=2, copies=1, cache_dir=str(tmp_path / "cache"))
    methods = res["methods"]
    assert set(methods) == {"PHN-LS", "LS x2", "PHN-EPO", "EPO x2"}
    for name, m in methods.items():
        losses = np.array(m["losses"])
        assert losses.shape == ((3 if name.startswith("PHN") else 2), 2) and np.isfinite(losses).all()
        assert m["hypervolume"] == pytest.approx(hypervolume(losses, (2.0, 2.0)))
        assert m["models"] == (1 if name.startswith("PHN") else 2) and m["seconds"] > 0
    assert (run_dir / "fronts.png").is_file() and (run_dir / "hypervolume.png").is_file()
    with pytest.raises(ConfigError, match="solvers"):
        get_recipe("pareto-multimnist").config(solvers=("mgda",))
