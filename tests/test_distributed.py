"""Data-parallel runs under torchrun (2 processes, gloo on the CPU): the same result as one process, and an exact resume after a kill.

The recipe is a small regression written for the test: each step draws a global batch
of 8 from the seeded global RNG and takes this process's half with ``ctx.shard``; the
runner averages the gradients over the processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import get_recipe
from hyperdnn.experiments.runs import latest_checkpoint, run_recipe

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
STEPS = 40

RECIPE = '''
import time
from dataclasses import dataclass, field

import torch
from hyperdnn.experiments import recipe


@dataclass
class Config:
    steps: int = field(default=40, metadata={"help": "optimizer steps"})
    pause: float = field(default=0.0, metadata={"help": "seconds to sleep per step (to kill the run mid-way)"})


@recipe("ddp-probe", "sharded linear regression for the data-parallel tests", Config)
def run(ctx):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ctx.track(model=model, optimizer=opt)
    state = ctx.restore({"step": 0})
    w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    while state["step"] < ctx.config.steps:
        x = torch.randn(8, 4)                      # the global batch, the same on every process
        x, y = ctx.shard(x, x @ w)                 # this process's half
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # after the average: as one process would
        opt.step()
        state["step"] += 1
        ctx.step_done(loss=loss.item())
        time.sleep(ctx.config.pause)
    return {"w0": model[0].weight.sum().item()}
'''


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "ddp_probe.py"
    path.write_text(RECIPE)
    return path


def torchrun(args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hyperdnn", *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        q = todo.pop()
        tree.append(q)
        todo += children.get(q, [])
    for q in tree:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass


def model_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    t = load_file(str(latest_checkpoint(run_dir) / "tensors.safetensors"))
    return {k: v for k, v in t.items() if k.startswith("obj.model.")}


@pytest.fixture(scope="module")
def two_process_run(recipe_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    p = torchrun(["run", str(recipe_file), "--steps", str(STEPS), "--checkpoint-every", "5", "--no-progress", "--out-dir", str(out)])
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    (run_dir,) = out.iterdir()
    return run_dir


def test_two_processes_equal_one_with_the_same_global_batch(recipe_file: Path, two_process_run: Path, tmp_path: Path) -> None:
    one = run_recipe(get_recipe(str(recipe_file)), get_recipe(str(recipe_file)).config(steps=STEPS), out_dir=tmp_path, show_progress=False, print_tables=False, threads=1, checkpoint_every=5)
    assert json.loads((two_process_run / "config.json").read_text())["world_size"] == 2
    a, b = model_tensors(one.run_dir), model_tensors(two_process_run)
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    losses = [[json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (one.run_dir, two_process_run)]
    assert len(losses[0]) == len(losses[1]) == STEPS  # rank 0 alone wrote metrics.jsonl, the whole batch's loss
    assert losses[1] == pytest.approx(losses[0], rel=1e-5, abs=1e-7)
    r1, r2 = (json.loads((d / "results.json").read_text())["results"] for d in (one.run_dir, two_process_run))
    assert r2["w0"] == pytest.approx(r1["w0"], rel=1e-5)
    with pytest.raises(ConfigError, match="trained by 2 process"):  # the world size is fixed on resume
        (two_process_run / "results.json").rename(tmp_path / "r.json")
        try:
            run_recipe(get_recipe(str(recipe_file)), resume=two_process_run, show_progress=False)
        finally:
            (tmp_path / "r.json").rename(two_process_run / "results.json")


def test_a_killed_torchrun_run_resumes_exactly(recipe_file: Path, two_process_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = torchrun(["run", str(recipe_file), "--steps", str(STEPS), "--pause", "0.05", "--checkpoint-every", "5", "--no-progress", "--out-dir", str(out)])
    deadline = time.time() + 240
    while time.time() < deadline:
        runs = list(out.glob("ddp-probe-*")) if out.exists() else []
        if runs and (runs[0] / "LATEST").exists() and (runs[0] / "LATEST").read_text() != "checkpoint-5":
            break
        time.sleep(0.02)
    kill_tree(p.pid)  # torchrun and both workers, at once
    p.communicate(timeout=60)
    (run_dir,) = out.iterdir()
    stopped = int((run_dir / "LATEST").read_text().split("-")[1])
    assert 5 < stopped < STEPS and not (run_dir / "results.json").exists()
    p = torchrun(["run", "--resume", str(run_dir), "--no-progress"])
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    a, b = model_tensors(two_process_run), model_tensors(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["pause"] == 0.05
    rows = lambda d: [(r["step"], r["loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    assert rows(run_dir) == rows(two_process_run)
