"""``--resume`` of the Pareto recipes: a run stopped (Ctrl-C) and resumed ends as the uninterrupted one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hyperdnn.experiments.registry import get_recipe
from hyperdnn.experiments.runs import run_recipe

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
HAS_MNIST = (DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()
KW = dict(show_progress=False, print_tables=False, checkpoint_every=0, threads=1, seed=4)

# ZDT1 then RE37, one run, 2 iterations per learner: steps 1-2 ZDT1 SVH-PSL, 3-4 ZDT1 PSL, 5-6 RE37 SVH-PSL, 7-8 RE37 PSL
PSL = dict(problems=("zdt1", "re37"), initial=5, iterations=2, batch=2, steps=3, particles=3, candidates=10, gp_steps=3,
           front_population=12, front_generations=4)
# 1 epoch of 3 batches per model; PHN-LS (1-3), LS x2 (4-9), PHN-EPO (10-12), EPO x2 (13-18)
MM = dict(epochs=1, batch_size=32, train_limit=96, test_limit=64, rays=3, baseline_rays=2, copies=1)


def without_time(obj):
    """``obj`` without wall-clock fields (they differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: without_time(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [without_time(v) for v in obj]
    return obj


def rows(run_dir: Path) -> list[dict]:
    return [without_time(json.loads(line)) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "name, config, stop_at",
    [
        ("pareto-psl", PSL, 5),  # inside RE37's SVH-PSL, after its first iteration: ZDT1 is finished, its curves come from the checkpoint
        pytest.param("pareto-psl", PSL, 4, marks=pytest.mark.slow),  # at the end of ZDT1's PSL: ZDT1's NSGA-II runs after the resume
        pytest.param("pareto-multimnist", MM, 2, marks=[pytest.mark.slow, pytest.mark.skipif(not HAS_MNIST, reason=f"MNIST not found under {DATA}")]),
        # inside EPO's first baseline: PHN-LS, the LS baselines and PHN-EPO come from the checkpoint, the epoch's order is redrawn
        pytest.param("pareto-multimnist", MM, 14, marks=pytest.mark.skipif(not HAS_MNIST, reason=f"MNIST not found under {DATA}")),
    ],
)
def test_interrupted_and_resumed_equals_uninterrupted(name: str, config: dict, stop_at: int, tmp_path: Path, interrupted_run) -> None:
    r = get_recipe(name)
    if name == "pareto-multimnist":
        config = dict(config, cache_dir=str(tmp_path / "cache"))
    ref = run_recipe(r, r.config(**config), data_dir=DATA, out_dir=tmp_path / "ref", **KW)
    run_dir = interrupted_run(r, r.config(**config), stop_at, data_dir=DATA, out_dir=tmp_path / "cut", **KW)
    resumed = run_recipe(r, resume=run_dir, show_progress=False, print_tables=False)
    got, want = without_time(resumed.results), without_time(ref.results)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert rows(run_dir) == rows(ref.run_dir)
    # every evaluated point of every learner's run (pareto-psl)
    saved = sorted(p.name for p in (ref.run_dir / "evaluations").glob("*.npz")) if name == "pareto-psl" else []
    assert saved == sorted(p.name for p in (run_dir / "evaluations").glob("*.npz")) and len(saved) == (4 if saved else 0)
    for f in saved:
        a, b = np.load(ref.run_dir / "evaluations" / f), np.load(run_dir / "evaluations" / f)
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["y"], b["y"])
