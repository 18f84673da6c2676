"""The hyperdnn command and run directories: list, help, errors, checkpoints, exact resume after a kill."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hyperdnn.experiments.cli import main
from hyperdnn.errors import CheckpointError, ConfigError, HDTypeError
from hyperdnn.experiments.runs import RunContext, RunInterrupted, flatten_state, latest_checkpoint, load_checkpoint, run_recipe, save_checkpoint, unflatten_state

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
# toy-regression, 3 tasks x 80 steps, two phases: 480 global steps, a checkpoint every 10
RUN = ["run", "toy-regression", "--steps", "80", "--threads", "1", "--checkpoint-every", "10", "--no-progress", "--seed", "3"]
TOTAL = 480


def cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperdnn.experiments.cli", *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


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
    assert main(["run", "no-such", "--steps", "5"]) == 2  # options after the name: still the name's error
    assert "unknown recipe 'no-such'" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "give a recipe name (see 'hyperdnn list') or --resume RUN_DIR" in capsys.readouterr().err
    assert main(["run", "toy-regression", "--device", "tpu", "--out-dir", str(tmp_path)]) == 2
    assert "device must be 'cpu' or 'cuda'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # checked before the run directory is made
    assert main(["run", "--resume", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope' / 'config.json'} not found" in capsys.readouterr().err


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
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 61))  # every step (--log-every 1)
    assert [r["after_task"] for r in rows if r.get("kind") == "eval"] == [1, 2, 3]
    assert cfg["log_every"] == 1 and cfg["checkpoint_every"] == 500
    assert latest_checkpoint(run_dir).name == "checkpoint-60"  # 3 tasks x 20 steps, no baseline phase
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-60"]  # older ones removed
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
    with pytest.raises(CheckpointError, match="tensors.safetensors is 7 bytes, but manifest.json recorded"):
        load_checkpoint(tmp_path / "c")
    rehash(tmp_path / "c")  # garbage that its manifest vouches for: still refused, by safetensors
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match="cannot store a set"):
        flatten_state({"a": {1, 2}}, "x", {})


def test_run_recipe_api_in_process(tmp_path: Path) -> None:
    from hyperdnn.experiments.recipes import get_recipe

    r = get_recipe("toy-regression")
    res = run_recipe(r, r.config(steps=10, baseline=False), out_dir=tmp_path, show_progress=False, print_tables=False, checkpoint_every=0, threads=1)
    assert res.run_dir.parent == tmp_path and "hnet" in res.results and "baseline" not in res.results
    assert "### Summary" in res.tables_markdown


# ----------------------------------------------------------------------------- review fixes: argv, config values, resume


def run_dirs(out: Path) -> list[Path]:
    return [d for d in out.iterdir() if d.is_dir()] if out.exists() else []


def write_mnist(d: Path, n_train: int = 40, n_test: int = 20) -> None:
    """A tiny synthetic MNIST (IDX, gzip) written without the loader."""
    rng = np.random.RandomState(0)
    d.mkdir(parents=True)
    for name, shape in (("train-images-idx3-ubyte", (n_train, 28, 28)), ("train-labels-idx1-ubyte", (n_train,)), ("t10k-images-idx3-ubyte", (n_test, 28, 28)), ("t10k-labels-idx1-ubyte", (n_test,))):
        a = rng.randint(0, 10 if "labels" in name else 256, size=shape).astype(np.uint8)
        raw = struct.pack(">BBBB", 0, 0, 8, a.ndim) + b"".join(struct.pack(">I", n) for n in a.shape) + a.tobytes()
        (d / (name + ".gz")).write_bytes(gzip.compress(raw))


def test_recipe_is_the_name_not_an_options_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "toy-regression" is the value of --data-dir here; the recipe is permuted-mnist
    write_mnist(tmp_path / "toy-regression" / "mnist")
    monkeypatch.chdir(tmp_path)
    small = ["--steps", "2", "--tasks", "2", "--target-hidden", "8", "--hnet-hidden", "4", "--emb-dim", "2", "--chunk-size", "500", "--chunk-dim", "2", "--no-baseline", "--no-cl3"]
    argv = ["run", "--data-dir", "toy-regression", "permuted-mnist", *small, "--threads", "1", "--no-progress", "--out-dir", "out"]
    assert main(argv) == 0
    (run_dir,) = run_dirs(tmp_path / "out")
    cfg = json.loads((run_dir / "config.json").read_text())
    assert run_dir.name.startswith("permuted-mnist-") and cfg["recipe"] == "permuted-mnist" and cfg["config"]["tasks"] == 2
    assert cfg["data_dir"] == str((tmp_path / "toy-regression").resolve())  # absolute: resumable from anywhere


CASES = [
    ("toy-regression", ["--steps", "-5"], "toy-regression: steps must be > 0 (got -5)"),
    ("toy-regression", ["--steps", "0"], "toy-regression: steps must be > 0 (got 0)"),
    ("toy-regression", ["--batch-size", "0"], "toy-regression: batch_size must be > 0 (got 0)"),
    ("toy-regression", ["--lr", "-1"], "toy-regression: lr must be > 0 (got -1.0)"),
    ("toy-regression", ["--lr", "nan"], "toy-regression: lr must be a finite number (got nan)"),
    ("toy-regression", ["--beta", "-0.1"], "toy-regression: beta must be >= 0 (got -0.1)"),
    ("toy-regression", ["--target-activation", "foo"], "toy-regression: target_activation must be one of 'sigmoid', 'relu', 'elu', 'tanh' (got 'foo')"),
    ("toy-regression", ["--hnet-activation", "foo"], "toy-regression: hnet_activation must be one of"),
    ("toy-regression", ["--target-hidden", "10,0"], "toy-regression: target_hidden must be ints > 0 (got (10, 0))"),
    ("toy-regression", ["--num-train", "0"], "toy-regression: num_train must be > 0 (got 0)"),
    ("toy-regression", ["--data-seed", "-1"], "toy-regression: data_seed must be in [0, 4294967295] (got -1)"),
    ("toy-regression", ["--checkpoint-every", "-3"], "run: checkpoint_every must be >= 0 (got -3)"),
    ("toy-regression", ["--log-every", "0"], "run: log_every must be >= 1 (got 0)"),
    ("toy-regression", ["--threads", "0"], "run: threads must be >= 1 (got 0)"),
    ("toy-regression", ["--device", "tpu"], "run: device must be 'cpu' or 'cuda'"),
    ("permuted-mnist", ["--tasks", "0"], "permuted-mnist: tasks must be > 0 (got 0)"),
    ("permuted-mnist", ["--padding", "-1"], "permuted-mnist: padding must be >= 0 (got -1)"),
    ("permuted-mnist", ["--reg-tasks", "0"], "permuted-mnist: reg_tasks must be > 0 (got 0)"),
    ("permuted-mnist", ["--chunk-size", "0"], "permuted-mnist: chunk_size must be > 0 (got 0)"),
    ("permuted-mnist", ["--hnet-activation", "nope"], "permuted-mnist: hnet_activation must be one of"),
]


@pytest.mark.parametrize("recipe, opts, message", CASES, ids=[" ".join(c[1]) + f" ({c[0]})" for c in CASES])
def test_bad_values_fail_before_the_run_dir(recipe: str, opts: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    threads = [] if "--threads" in opts else ["--threads", "1"]  # the last --threads would win
    assert main(["run", recipe, *opts, *threads, "--no-progress", "--out-dir", str(tmp_path / "out"), "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert run_dirs(tmp_path / "out") == []


def test_missing_mnist_leaves_no_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def offline(*a: object, **k: object) -> None:
        raise OSError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["run", "permuted-mnist", "--steps", "1", "--threads", "1", "--no-progress", "--out-dir", str(tmp_path / "out"), "--data-dir", str(tmp_path / "none")]) == 2
    assert "MNIST: " in capsys.readouterr().err
    assert run_dirs(tmp_path / "out") == []


def test_option_values_that_do_not_parse(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["run", "toy-regression", "--target-hidden", "10,x"], "argument --target-hidden: expected comma-separated ints, e.g. 10,10 (got '10,x')"),
        (["run", "permuted-mnist", "--hnet-hidden", "a"], "argument --hnet-hidden: expected comma-separated ints, e.g. 25,25 (got 'a')"),
        (["run", "toy-regression", "--steps", "x"], "argument --steps: expected an int (got 'x')"),
        (["run", "toy-regression", "--lr", "fast"], "argument --lr: expected a number (got 'fast')"),
        (["run", "permuted-mnist", "--reg-tasks", "x"], "argument --reg-tasks: expected an int (got 'x') or 'none'"),
        (["run", "toy-regression", "--seed", "1.5"], "argument --seed: expected an int (got '1.5')"),
        (["run", "toy-regression", "--ste", "5"], "unrecognized arguments: --ste 5"),  # no abbreviations
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err


def test_config_checks_in_the_api(tmp_path: Path) -> None:
    from hyperdnn.experiments.recipes import get_recipe
    from hyperdnn.experiments.recipes.permuted_mnist import Config as PermutedConfig
    from hyperdnn.experiments.recipes.toy_regression import Config as ToyConfig, make_mlp

    with pytest.raises(HDTypeError, match="toy-regression: steps must be an int .got float 2.5."):
        ToyConfig(steps=2.5)
    with pytest.raises(HDTypeError, match="toy-regression: baseline must be True or False .got int 1."):
        ToyConfig(baseline=1)
    with pytest.raises(HDTypeError, match="permuted-mnist: target_hidden must be a tuple of ints .got int 5."):
        PermutedConfig(target_hidden=5)
    assert ToyConfig(target_hidden=[3, 4]).target_hidden == (3, 4)  # as read back from JSON
    with pytest.raises(ConfigError, match="make_mlp: activation must be one of .* .got 'foo'."):
        make_mlp([1, 2, 1], "foo")
    r = get_recipe("toy-regression")
    with pytest.raises(ConfigError, match="checkpoint_every must be >= 0 .got -3."):
        run_recipe(r, r.config(steps=1), checkpoint_every=-3, out_dir=tmp_path / "out", show_progress=False)
    with pytest.raises(HDTypeError, match=r"config for 'toy-regression' must be a hyperdnn.experiments.recipes.toy_regression.Config \(got hyperdnn.experiments.recipes.permuted_mnist.Config\)"):
        run_recipe(r, PermutedConfig(), out_dir=tmp_path / "out", show_progress=False)
    assert run_dirs(tmp_path / "out") == []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished toy-regression run: 3 tasks x 4 steps, checkpoints at 5, 10 and the task ends."""
    out = tmp_path_factory.mktemp("finished")
    assert main(["run", "toy-regression", "--steps", "4", "--no-baseline", "--checkpoint-every", "5", "--threads", "1", "--no-progress", "--out-dir", str(out)]) == 0
    return only_run(out)


def resumable(finished: Path, dest: Path) -> Path:
    """A copy of the finished run that can be resumed (results.json removed)."""
    shutil.copytree(finished, dest)
    (dest / "results.json").unlink()
    return dest


def test_resume_refuses_the_options_the_run_fixes(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished_run, tmp_path / "run")
    for opts in (["--seed", "3"], ["--device", "cpu"], ["--checkpoint-every", "5"], ["--out-dir", "x"], ["--log-every", "2"], ["--steps", "5"], ["--seed", "0", "--no-lookahead"]):
        assert main(["run", "--resume", str(run_dir), *opts]) == 2, opts
        err = capsys.readouterr().err
        assert f"the run's config.json fixes {opts[0]}" in err and "only --threads, --data-dir and --no-progress" in err, err
    with pytest.raises(ConfigError, match="config.json fixes checkpoint_every, seed"):
        run_recipe("toy-regression", resume=run_dir, seed=0, checkpoint_every=5)
    # --threads and --data-dir are taken (the data moved; a note says so)
    assert main(["run", "--resume", str(run_dir), "--threads", "1", "--data-dir", str(tmp_path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"note: reading data from {tmp_path.resolve()}" in captured.err and "Summary (3 tasks x 4 steps)" in captured.out
    assert results_without_time(run_dir) == results_without_time(finished_run)


def rehash(ckpt: Path) -> None:
    """Rewrite a checkpoint's manifest.json to vouch for its files as they are now (a consistent but bad checkpoint)."""
    import hashlib

    m = json.loads((ckpt / "manifest.json").read_text())
    m["sha256"] = {name: hashlib.sha256((ckpt / name).read_bytes()).hexdigest() for name in m["sha256"]}
    m["bytes"] = {name: (ckpt / name).stat().st_size for name in m["sha256"]}
    (ckpt / "manifest.json").write_text(json.dumps(m))


def damage(run_dir: Path, what: str) -> None:
    ckpt = run_dir / (run_dir / "LATEST").read_text().strip()
    state = json.loads((ckpt / "state.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    if what == "config: not JSON":
        (run_dir / "config.json").write_text("{bad")
    elif what == "config: empty object":
        (run_dir / "config.json").write_text("{}")
    elif what == "config: a list":
        (run_dir / "config.json").write_text("[]")
    elif what == "config: seed":
        (run_dir / "config.json").write_text(json.dumps({**cfg, "seed": "x"}))
    elif what == "config: bad value":
        (run_dir / "config.json").write_text(json.dumps({**cfg, "config": {**cfg["config"], "steps": -1}}))
    elif what == "config: unknown recipe":
        (run_dir / "config.json").write_text(json.dumps({**cfg, "recipe": "nope"}))
    elif what == "LATEST: missing dir":
        (run_dir / "LATEST").write_text("checkpoint-999")
    elif what == "LATEST: garbage":
        (run_dir / "LATEST").write_text("garbage")
    elif what == "LATEST: deleted":
        (run_dir / "LATEST").unlink()
    elif what == "state: no meta":
        del state["meta"]
        (ckpt / "state.json").write_text(json.dumps(state))
    elif what == "state: bad step":
        state["meta"]["global_step"] = "x"
        (ckpt / "state.json").write_text(json.dumps(state))
    elif what == "state: not JSON":
        (ckpt / "state.json").write_text("{")
    elif what == "state: a list":
        (ckpt / "state.json").write_text("[]")
    else:
        raise AssertionError(what)
    if what.startswith("state:"):
        rehash(ckpt)


DAMAGE = {
    "config: not JSON": r"cannot read .*config.json \(JSONDecodeError",
    "config: empty object": r"config.json lacks 'recipe'",
    "config: a list": r"config.json holds a JSON list",
    "config: seed": r"config.json: 'seed' is 'x' \(expected an int\)",
    "config: bad value": r"config.json holds a config that 'toy-regression' does not accept: toy-regression: steps must be > 0 \(got -1\)",
    "config: unknown recipe": r"unknown recipe 'nope'",
    "LATEST: missing dir": r"LATEST names checkpoint-999, but .*checkpoint-999 does not exist",
    "LATEST: garbage": r"LATEST holds 'garbage' \(expected the name of a checkpoint directory",
    "LATEST: deleted": r"has no LATEST file but holds \['checkpoint-12'\]",
    "state: no meta": r"checkpoint-12/state.json lacks \['meta'\]",
    "state: bad step": r"checkpoint-12/state.json: meta.global_step is 'x'",
    "state: not JSON": r"cannot read checkpoint .*checkpoint-12",
    "state: a list": r"checkpoint-12/state.json holds a JSON list",
}


@pytest.mark.parametrize("what", list(DAMAGE))
def test_damaged_run_dir_is_a_checkpoint_error(what: str, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    run_dir = resumable(finished_run, tmp_path / "run")
    metrics = (run_dir / "metrics.jsonl").read_text()
    damage(run_dir, what)
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hyperdnn: error: ") and re.search(DAMAGE[what], err), err
    assert (run_dir / "metrics.jsonl").read_text() == metrics  # nothing started over
    assert not (run_dir / "results.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resume_of_a_cuda_run_without_cuda_names_the_device(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished_run, tmp_path / "run")
    cfg = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**cfg, "device": "cuda"}))
    assert main(["run", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"the run was made on device 'cuda' ({run_dir / 'config.json'}), but here torch.cuda.is_available() is False" in err


def test_resume_before_the_first_checkpoint_starts_over_with_a_note(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished_run, tmp_path / "run")
    for p in [run_dir / "LATEST", *run_dir.glob("checkpoint-*")]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 999}\n')  # rows of the lost attempt are dropped
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    assert "has no checkpoint yet (LATEST was never written): starting over from step 0" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_text() == (finished_run / "metrics.jsonl").read_text()
    assert results_without_time(run_dir) == results_without_time(finished_run)


# a recipe made up for the tests: a few SGD steps, a NaN metric, a Ctrl-C in its "final evaluation"
@dataclass
class TinyConfig:
    steps: int = 6


TINY = {"interrupt": True}


def tiny_run(ctx: RunContext) -> dict:
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    ctx.track(model=lin, optimizer=opt)
    state = ctx.restore({"step": 0})
    while state["step"] < ctx.config.steps:
        loss = lin(torch.randn(4, 2)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] += 1
        # a NaN metric other than the loss is logged as null (a NaN loss stops the run: test_nonfinite_loss_*)
        ctx.step_done(loss=loss.item(), score=float("nan") if state["step"] == 2 else 1.0)
    ctx.checkpoint()
    if TINY["interrupt"]:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while evaluating: the handler only sets a flag
    ctx.table("tiny", ["value"], [[float("nan")]])
    return {"nan": float("nan"), "inf": float("inf"), "weight": lin.weight.sum().item()}


def test_ctrl_c_in_the_final_evaluation_and_nan_in_results(tmp_path: Path) -> None:
    from hyperdnn.experiments.recipes import Recipe

    tiny = Recipe("tiny", "test recipe", TinyConfig, tiny_run)
    TINY["interrupt"] = True
    with pytest.raises(RunInterrupted) as e:
        run_recipe(tiny, out_dir=tmp_path, log_every=2, threads=1, show_progress=False, print_tables=False)
    run_dir = e.value.run_dir
    assert e.value.step == 6 and (run_dir / "LATEST").read_text() == "checkpoint-6"
    assert not (run_dir / "results.json").exists()  # the run is not finished: resumable
    TINY["interrupt"] = False
    res = run_recipe(tiny, resume=run_dir, show_progress=False, print_tables=False)

    def strict(c: str) -> None:
        raise AssertionError(f"{c} in JSON")

    saved = json.loads((run_dir / "results.json").read_text(), parse_constant=strict)
    assert saved["results"]["nan"] is None and saved["results"]["inf"] is None and saved["tables"][0]["rows"] == [[None]]
    assert saved["results"]["weight"] == pytest.approx(res.results["weight"])
    rows = [json.loads(x, parse_constant=strict) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and rows[0]["score"] is None  # --log-every 2, kept on resume
    assert json.loads((run_dir / "config.json").read_text())["log_every"] == 2


def test_state_key_collision_and_checkpoint_at_the_same_step_rewrites_latest(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="two tensors would be stored under the key 'x.a.b'"):
        flatten_state({"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}}, "x", {})
    ctx = RunContext(recipe="t", config=None, run_dir=tmp_path)
    ctx.track(lin=torch.nn.Linear(2, 1))
    ctx.restore({"step": 0})
    assert ctx.checkpoint().name == "checkpoint-0"
    (tmp_path / "LATEST").write_text("checkpoint-7")  # e.g. left by a crash: wrong
    assert ctx.checkpoint().name == "checkpoint-0" and (tmp_path / "LATEST").read_text() == "checkpoint-0"
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-0"


@pytest.mark.parametrize("argv, passed", [(["bench", "--quick", "--threads", "1"], ["--quick", "--threads", "1"]), (["bench", "--", "--quick"], ["--quick"]), (["bench"], [])])
def test_bench_passes_every_argument_on(argv: list[str], passed: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2 and not calls  # not a checkout: no benchmarks package here
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__main__.py").write_text("")
    assert main(argv) == 0
    assert calls == [[sys.executable, "-m", "benchmarks", *passed]]
