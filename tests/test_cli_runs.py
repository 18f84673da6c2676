"""The hyperdnn command and run directories: list, help, errors, checkpoints, exact resume after a kill."""

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

from hyperdnn.cli import main
from hyperdnn.errors import CheckpointError
from hyperdnn.runs import flatten_state, latest_checkpoint, load_checkpoint, run_recipe, save_checkpoint, unflatten_state

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
# toy-regression, 3 tasks x 80 steps, two phases: 480 global steps, a checkpoint every 10
RUN = ["run", "toy-regression", "--steps", "80", "--threads", "1", "--checkpoint-every", "10", "--no-progress", "--seed", "3"]
TOTAL = 480


def cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperdnn.cli", *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None
    return load_file(str(ckpt / "tensors.safetensors"))


def only_run(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def results_without_time(run_dir: Path) -> dict:
    r = json.loads((run_dir / "results.json").read_text())
    r["results"].pop("seconds")
    return r


def wait_for_checkpoint(out: Path, after: str | None, timeout: float = 60) -> Path:
    """The run directory once its LATEST names a checkpoint other than ``after``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        dirs = list(out.glob("toy-regression-*")) if out.exists() else []
        latest = dirs[0] / "LATEST" if dirs else None
        if latest is not None and latest.exists() and latest.read_text().strip() != after:
            return dirs[0]
        time.sleep(0.005)
    raise AssertionError("no new checkpoint appeared")


def global_step(run_dir: Path) -> int:
    return load_checkpoint(latest_checkpoint(run_dir))["meta"]["global_step"]


def test_resume_after_kill_and_ctrl_c_equals_uninterrupted(tmp_path: Path) -> None:
    # the uninterrupted reference runs in this process (same code path as the command)
    assert main([*RUN, "--out-dir", str(tmp_path / "ref")]) == 0
    ref_dir = only_run(tmp_path / "ref")
    expected = final_tensors(ref_dir)

    out = tmp_path / "interrupted"
    p = cli([*RUN, "--out-dir", str(out)])
    run_dir = wait_for_checkpoint(out, None)
    p.send_signal(signal.SIGKILL)  # killed: only the periodic checkpoints remain
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    killed_at = global_step(run_dir)
    assert 0 < killed_at < TOTAL and not (run_dir / "results.json").exists()

    seen = (run_dir / "LATEST").read_text().strip()
    p = cli(["run", "--resume", str(run_dir), "--threads", "1", "--no-progress"])
    wait_for_checkpoint(out, seen)
    p.send_signal(signal.SIGINT)  # Ctrl-C: a checkpoint at the next step boundary, exit 130
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "resume with: hyperdnn run --resume" in err
    stopped_at = global_step(run_dir)
    assert killed_at < stopped_at < TOTAL and not (run_dir / "results.json").exists()

    p = cli(["run", "--resume", str(run_dir), "--no-progress"])  # threads: the run's own (1)
    out_text, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "Summary" in out_text

    got = final_tensors(run_dir)
    assert got.keys() == expected.keys()
    assert [k for k in expected if k.startswith("obj.model.")]
    for k in expected:
        if not k.startswith("rng."):
            assert torch.equal(got[k], expected[k]), f"{k} differs after kill + Ctrl-C + resume"
    assert results_without_time(run_dir) == results_without_time(ref_dir)
    assert (run_dir / "metrics.jsonl").read_text() == (ref_dir / "metrics.jsonl").read_text()


def test_list_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [ln.split()[0] for ln in lines]
    assert {"toy-regression", "split-mnist", "permuted-mnist"} <= set(names)
    for argv in (["--help"], ["run", "--help"], ["list", "--help"], ["bench", "--help"], ["run", "permuted-mnist", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--tasks" in out and "--beta" in out and "--resume" in out and "--data-dir" in out


def test_errors_are_one_line_messages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "no-such-recipe"]) == 2
    assert "unknown recipe 'no-such-recipe'" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert main(["run", "toy-regression", "--device", "tpu", "--out-dir", str(tmp_path)]) == 2
    assert "device must be 'cpu' or 'cuda'" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nope")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_run_dir_contents_and_finished_run_cannot_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "toy-regression", "--steps", "20", "--threads", "1", "--no-progress", "--out-dir", str(tmp_path), "--beta", "0.01", "--no-baseline"]) == 0
    out = capsys.readouterr().out
    assert "Summary (3 tasks x 20 steps)" in out
    run_dir = only_run(tmp_path)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["recipe"] == "toy-regression" and cfg["config"]["beta"] == 0.01 and cfg["config"]["baseline"] is False
    assert cfg["threads"] == 1 and cfg["seed"] == 0
    for name in ("metrics.jsonl", "results.json", "results.md", "accuracy_matrix.png", "predictions.png", "model/config.json"):
        assert (run_dir / name).is_file(), name
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 10 and "loss" in rows[0] and any(r.get("kind") == "eval" for r in rows)
    assert latest_checkpoint(run_dir).name.startswith("checkpoint-60")
    assert main(["run", "--resume", str(run_dir)]) == 2
    assert "already finished" in capsys.readouterr().err


def test_state_round_trip_and_corrupt_checkpoint(tmp_path: Path) -> None:
    p = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(p.parameters())
    p(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors: dict[str, torch.Tensor] = {}
    skel = flatten_state(opt.state_dict(), "opt", tensors)
    json.dumps(skel)  # JSON-able
    back = unflatten_state(json.loads(json.dumps(skel)), tensors)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(back)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    save_checkpoint(tmp_path / "c", {"opt": opt, "lin": p}, {"step": 1}, {"global_step": 1, "metrics_bytes": 0})
    assert load_checkpoint(tmp_path / "c")["state"] == {"step": 1}
    (tmp_path / "c" / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match="cannot store a set"):
        flatten_state({"a": {1, 2}}, "x", {})


def test_run_recipe_api_in_process(tmp_path: Path) -> None:
    from hyperdnn.recipes import get_recipe

    r = get_recipe("toy-regression")
    res = run_recipe(r, r.config(steps=10, baseline=False), out_dir=tmp_path, show_progress=False, print_tables=False, checkpoint_every=0, threads=1)
    assert res.run_dir.parent == tmp_path and "hnet" in res.results and "baseline" not in res.results
    assert "### Summary" in res.tables_markdown
