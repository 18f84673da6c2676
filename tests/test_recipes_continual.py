"""Short end-to-end runs of the continual-learning recipes (tiny step counts, real MNIST files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import hyperdnn as hd

from hyperdnn.experiments.recipes import get_recipe
from hyperdnn.experiments.runs import run_recipe

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()), reason=f"MNIST not found under {DATA}")


def run(name: str, tmp_path: Path, **config) -> tuple[Path, dict]:
    r = get_recipe(name)
    res = run_recipe(r, r.config(**config), data_dir=DATA, out_dir=tmp_path, show_progress=False, print_tables=False, checkpoint_every=0, threads=1)
    return res.run_dir, res.results


def check_run_dir(run_dir: Path) -> None:
    for f in ("config.json", "metrics.jsonl", "results.json", "results.md", "accuracy_matrix.png", "LATEST", "model/config.json", "model/model.safetensors"):
        assert (run_dir / f).is_file(), f
    assert "### Summary" in (run_dir / "results.md").read_text()
    json.loads((run_dir / "results.json").read_text())


def test_sweeps_visit_every_sample_once_per_sweep_and_resume() -> None:
    from hyperdnn.data.continual_tasks import Task
    from hyperdnn.experiments.recipes._continual import Sweeps

    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)  # sample i has input i
    task = Task(name="t", train_x=x, train_y=torch.arange(10), test_x=x, test_y=torch.arange(10), num_outputs=10)
    sw = Sweeps(torch.Generator().manual_seed(0))
    seen = torch.cat([sw.batch(task, 4)[1] for _ in range(5)])  # 20 samples = 2 sweeps
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert not torch.equal(seen[:10], seen[10:])  # reshuffled after a sweep
    x_b, y_b = sw.batch(task, 3)
    assert torch.equal(x_b.squeeze(1).long(), y_b)  # inputs and labels stay paired
    # resume: the same next batches from the saved state (order, position and RNG)
    state, rng = sw.state_dict(), sw.generator.get_state()
    expect = [sw.batch(task, 7)[1] for _ in range(3)]
    sw2 = Sweeps(torch.Generator())
    sw2.load_state_dict(state)
    sw2.generator.set_state(rng)
    assert all(torch.equal(a, sw2.batch(task, 7)[1]) for a in expect)
    sw2.reset()
    assert sorted(torch.cat([sw2.batch(task, 5)[1] for _ in range(2)]).tolist()) == list(range(10))  # a new task starts a full sweep


def test_toy_regression_short_regularizer_beats_baseline(tmp_path: Path) -> None:
    run_dir, res = run("toy-regression", tmp_path, steps=300)
    check_run_dir(run_dir)
    assert (run_dir / "predictions.png").is_file()
    hnet, base = res["hnet"], res["baseline"]
    assert len(hnet["matrix"]) == 3 and [len(r) for r in hnet["matrix"]] == [1, 2, 3]
    # without the regularizer the first task is forgotten; with it, it stays far better
    assert hnet["final"][0] < 0.2 * base["final"][0]
    assert hnet["forgetting"] < base["forgetting"]
    assert res["compression_ratio"] > 1  # the toy hypernetwork is larger than its 141-weight target


def test_toy_regression_saved_model_loads(tmp_path: Path) -> None:
    from hyperdnn.checkpoint import load
    from hyperdnn.experiments.recipes.toy_regression import make_mlp

    run_dir, res = run("toy-regression", tmp_path, steps=20, baseline=False)
    model = load(run_dir / "model", target=make_mlp([1, 10, 10, 1], "sigmoid"))
    x = torch.linspace(-4, -2, 50).unsqueeze(1)
    assert model(x, task=0).shape == (50, 1)


@needs_mnist
def test_split_mnist_short(tmp_path: Path) -> None:
    run_dir, res = run("split-mnist", tmp_path, steps=15, tasks=3)
    check_run_dir(run_dir)
    assert [len(r) for r in res["hnet"]["matrix"]] == [1, 2, 3]
    assert res["hnet"]["matrix"][0][0] > 80  # 15 steps are enough to tell 0 from 1
    cl3 = res["hnet"]["cl3"]
    assert len(cl3["per_task"]) == 3 and 0 <= cl3["average"] <= 100
    assert 0.9 < res["compression_ratio"] < 1.0


@needs_mnist
def test_split_mnist_multi_head_reads_each_task_head(tmp_path: Path) -> None:
    from hyperdnn.checkpoint import load
    from hyperdnn.data.continual_tasks import split_mnist
    from hyperdnn.data.mnist import load_mnist
    from hyperdnn.experiments.recipes.toy_regression import make_mlp

    run_dir, res = run("split-mnist", tmp_path, steps=10, tasks=2, baseline=False)
    # the released main net: one 2-unit head per task, all generated
    assert res["summary"]["generated"] == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 4 + 4
    model = load(run_dir / "model", target=make_mlp([784, 400, 400, 4], "relu")).eval()
    task = split_mnist(load_mnist(DATA), 2)[1]
    with torch.no_grad():
        out = model(task.inputs(task.test_x), task=1)
    acc = 100.0 * (out[:, 2:4].argmax(-1) == task.test_y).float().mean().item()
    # task 2 is judged on outputs 2..3 only; one test sample is worth about 0.05 points,
    # so 1e-4 separates float rounding of the percentage from a real difference
    assert abs(acc - res["hnet"]["final"][1]) < 1e-4
    with pytest.raises(hd.ConfigError, match="hnet_init"):
        run("split-mnist", tmp_path, steps=1, tasks=1, hnet_init="normal")


@needs_mnist
def test_split_mnist_shared_head_option(tmp_path: Path) -> None:
    run_dir, res = run("split-mnist", tmp_path, steps=3, tasks=2, baseline=False, multi_head=False, hnet_init="target")
    assert res["summary"]["generated"] == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 2 + 2


@needs_mnist
def test_permuted_mnist_short(tmp_path: Path) -> None:
    run_dir, res = run("permuted-mnist", tmp_path, steps=4, tasks=2, baseline=False)
    check_run_dir(run_dir)
    assert res["compression_ratio"] < 1.0  # the paper's point: H is smaller than the target
    # the released main net: one 10-unit head per task, all generated
    assert res["summary"]["generated"] == 1024 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 * 20 + 20
    assert "baseline" not in res and len(res["hnet"]["cl3"]["per_task"]) == 2
    assert json.loads((run_dir / "config.json").read_text())["config"]["hnet_init"] == "xavier"


@needs_mnist
def test_permuted_mnist_shared_head_option(tmp_path: Path) -> None:
    run_dir, res = run("permuted-mnist", tmp_path, steps=2, tasks=2, baseline=False, cl3=False, multi_head=False, hnet_init="target", sweeps=False)
    assert res["summary"]["generated"] == 1024 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 * 10 + 10
    with pytest.raises(hd.ConfigError, match="hnet_init"):
        run("permuted-mnist", tmp_path, steps=1, tasks=1, hnet_init="normal")
