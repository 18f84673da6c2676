"""Run directories that cannot be corrupted silently: each test builds the bad state itself.

Flipped bits and edited control files are found by sha256, a garbage checkpoint is
never adopted, a second process on a run directory is refused, control files are
read with a size cap, a full disk is a library error saying how to resume, a
damaged metrics.jsonl is refused, a NaN loss stops the run, empty data is refused
before training.
"""

from __future__ import annotations

import errno
import gzip
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hyperdnn.errors import CheckpointError
from hyperdnn.experiments.cli import main
from hyperdnn.experiments.run_dir import RunLock
from hyperdnn.experiments.runs import latest_checkpoint, run_recipe

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
SMALL = ["--steps", "4", "--no-baseline", "--checkpoint-every", "5", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished toy-regression run (3 tasks x 4 steps; checkpoints at 4, 5, 8, 10, 12)."""
    out = tmp_path_factory.mktemp("finished")
    assert main(["run", "toy-regression", *SMALL, "--out-dir", str(out)]) == 0
    (run_dir,) = out.iterdir()
    return run_dir


def resumable(finished: Path, dest: Path) -> Path:
    shutil.copytree(finished, dest)
    (dest / "results.json").unlink()
    return dest


def resume(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["run", "--resume", str(run_dir), "--no-progress"])
    return rc, capsys.readouterr().err


def test_a_flipped_bit_in_the_tensors_is_found(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished, tmp_path / "run")
    f = latest_checkpoint(run_dir) / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x10  # one bit of the last tensor's data: safetensors itself would load this silently
    f.write_bytes(bytes(data))
    load_file(str(f))  # still a well-formed file
    rc, err = resume(run_dir, capsys)
    assert rc == 2 and "checkpoint-12/tensors.safetensors does not match its sha256 in manifest.json" in err, err


def test_an_edited_state_json_is_found(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished, tmp_path / "run")
    f = latest_checkpoint(run_dir) / "state.json"
    f.write_text(f.read_text().replace('"global_step": 12', '"global_step": 11'))
    rc, err = resume(run_dir, capsys)
    assert rc == 2 and "checkpoint-12/state.json does not match its sha256" in err, err


def test_an_edited_config_json_is_found(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished, tmp_path / "run")
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["config"]["steps"] = 6  # a valid value: only the hash can tell
    (run_dir / "config.json").write_text(json.dumps(cfg))
    rc, err = resume(run_dir, capsys)
    assert rc == 2 and "config.json was changed after the run started" in err, err


def test_a_garbage_checkpoint_dir_is_not_adopted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    from hyperdnn.experiments.recipes import get_recipe

    r = get_recipe("toy-regression")
    cfg = r.config(steps=4, baseline=False)
    ref = run_recipe(r, cfg, out_dir=tmp_path / "ref", show_progress=False, print_tables=False, threads=1, checkpoint_every=5)
    # a run that will write checkpoint-5 finds a garbage checkpoint-5/ already there (from a crash, or by hand)
    from hyperdnn.experiments.context import RunContext

    seen: list[list[str]] = []
    orig = RunContext.checkpoint

    def planting(ctx: RunContext) -> Path:
        if ctx.global_step == 4:
            bad = ctx.run_dir / "checkpoint-5"
            bad.mkdir()
            (bad / "state.json").write_text("{}")
            (bad / "tensors.safetensors").write_bytes(b"junk")
        path = orig(ctx)
        seen.append(sorted(p.name for p in ctx.run_dir.glob("checkpoint-*")))
        return path

    RunContext.checkpoint = planting  # type: ignore[method-assign]
    try:
        res = run_recipe(r, cfg, out_dir=out, show_progress=False, print_tables=False, threads=1, checkpoint_every=5)
    finally:
        RunContext.checkpoint = orig  # type: ignore[method-assign]
    assert seen[1] == ["checkpoint-5"]  # rewritten and verified; checkpoint-4 deleted only after that
    got, want = (load_file(str(latest_checkpoint(d) / "tensors.safetensors")) for d in (res.run_dir, ref.run_dir))
    assert all(torch.equal(got[k], want[k]) for k in want if k.startswith("obj.model."))


def test_the_previous_checkpoint_stays_until_the_new_one_verifies(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperdnn.experiments import store

    run_dir = resumable(finished, tmp_path / "run")
    ctx_store = store.CheckpointStore(run_dir)

    def corrupt_after_write(directory: Path, *a, **k) -> None:
        real_save(directory, *a, **k)
        with open(directory / "tensors.safetensors", "r+b") as f:  # damaged between write and verify
            f.seek(-1, 2)
            last = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([last[0] ^ 1]))

    real_save = store.save_checkpoint
    monkeypatch.setattr(store, "save_checkpoint", corrupt_after_write)
    with pytest.raises(CheckpointError, match="checkpoint-13/tensors.safetensors does not match"):
        ctx_store.save(13, {"lin": torch.nn.Linear(2, 2)}, {"step": 0}, {"global_step": 13, "metrics_bytes": 0}, None)
    assert (run_dir / "LATEST").read_text() == "checkpoint-12" and (run_dir / "checkpoint-12").is_dir()
    assert not (run_dir / "checkpoint-13").exists()  # the bad one is not left to be mistaken for good
    assert not (run_dir / "checkpoint-13").exists()  # the bad one is not left to be mistaken for good


def test_a_second_process_on_the_run_is_refused_naming_the_first(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from hyperdnn.experiments.run_dir import RunLock; RunLock(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(run_dir)],
        env=ENV, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        metrics = (run_dir / "metrics.jsonl").read_bytes()
        t0 = time.time()
        rc, err = resume(run_dir, capsys)
        assert rc == 2 and f"is in use by process {holder.pid}" in err, err
        assert time.time() - t0 < 10 and (run_dir / "metrics.jsonl").read_bytes() == metrics  # at once, nothing touched
    finally:
        holder.kill()
        holder.wait()
    rc, err = resume(run_dir, capsys)  # the kernel dropped the dead holder's lock
    assert rc == 0, err


def test_the_lock_is_taken_in_process_too(tmp_path: Path) -> None:
    lock = RunLock(tmp_path)
    with pytest.raises(CheckpointError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path)
    lock.close()
    RunLock(tmp_path).close()


@pytest.mark.parametrize("name", ["LATEST", "config.json", "state.json"])
@pytest.mark.parametrize("kind", ["/dev/zero", "huge file"])
def test_control_files_are_read_with_a_size_cap(name: str, kind: str, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = resumable(finished, tmp_path / "run")
    f = run_dir / name if name != "state.json" else latest_checkpoint(run_dir) / name
    if kind == "/dev/zero":
        f.unlink()
        f.symlink_to("/dev/zero")
    else:
        huge = tmp_path / "huge"
        with open(huge, "wb") as h:
            h.truncate(8 << 30)  # 8 GB, sparse: reading it whole would take minutes and the memory
        f.unlink()
        f.symlink_to(huge)
    t0 = time.time()
    rc, err = resume(run_dir, capsys)
    assert rc == 2 and time.time() - t0 < 20, err
    assert name in err and ("not a regular file" in err or "bytes (expected at most" in err or "does not match its sha256" in err or "but manifest.json recorded" in err), err


def test_a_full_disk_while_checkpointing_says_how_to_resume(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from hyperdnn.experiments import run_checkpoint

    run_dir = resumable(finished, tmp_path / "run")
    for p in [run_dir / "LATEST", *run_dir.glob("checkpoint-*")]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    (run_dir / "metrics.jsonl").write_text("")
    real = run_checkpoint.save_file
    calls = {"n": 0}

    def filling(tensors: dict, path: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: half a file, then the disk is full
            Path(path).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(tensors, path)

    monkeypatch.setattr(run_checkpoint, "save_file", filling)
    rc, err = resume(run_dir, capsys)
    assert rc == 2, err
    assert "cannot write checkpoint-5" in err and "No space left on device" in err and "the last verified checkpoint, checkpoint-4, is intact" in err
    assert f"hyperdnn run --resume {run_dir}" in err
    assert (run_dir / "LATEST").read_text() == "checkpoint-4"
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4"]  # no half-written one
    monkeypatch.setattr(run_checkpoint, "save_file", real)
    rc, err = resume(run_dir, capsys)  # space freed: the run finishes as if nothing happened
    assert rc == 0, err
    assert json.loads((run_dir / "results.json").read_text())["results"]["hnet"] == json.loads((finished / "results.json").read_text())["results"]["hnet"]


def test_a_full_disk_while_logging_is_a_library_error(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.fail("/dev/full is needed to fill the disk")
    from hyperdnn.experiments.context import RunContext

    ctx = RunContext(recipe="t", config=None, run_dir=tmp_path)
    (tmp_path / "metrics.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
    with pytest.raises(CheckpointError, match=r"cannot write a row of metrics.jsonl in .*No space left on device .*hyperdnn run --resume"):
        ctx.log(loss=1.0)


@pytest.mark.parametrize("how", ["cut", "deleted", "edited", "longer"])
def test_metrics_jsonl_is_repaired_or_refused(how: str, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a run stopped (Ctrl-C) at step 6, whose metrics.jsonl is then damaged
    from hyperdnn.experiments.context import RunContext, RunInterrupted
    from hyperdnn.experiments.recipes import get_recipe

    r = get_recipe("toy-regression")
    orig = RunContext.step_done

    def stop_at_6(ctx: RunContext, n: int = 1, **m) -> None:
        if ctx.global_step + n == 6:
            ctx.request_stop()
        orig(ctx, n, **m)

    RunContext.step_done = stop_at_6  # type: ignore[method-assign]
    try:
        with pytest.raises(RunInterrupted):
            run_recipe(r, r.config(steps=4, baseline=False), out_dir=tmp_path / "o", show_progress=False, print_tables=False, threads=1, checkpoint_every=5)
    finally:
        RunContext.step_done = orig  # type: ignore[method-assign]
    (run_dir,) = (tmp_path / "o").iterdir()
    m = run_dir / "metrics.jsonl"
    text = m.read_text()
    if how == "cut":
        m.write_text(text[: len(text) // 2])
    elif how == "deleted":
        m.unlink()
    elif how == "edited":
        m.write_text(text.replace('"step": 2,', '"step": 3,', 1))
    else:
        m.write_text(text + '{"step": 999}\n{"ste')  # rows after the checkpoint and half a row
    rc, err = resume(run_dir, capsys)
    if how == "longer":
        assert rc == 0, err
        assert (run_dir / "metrics.jsonl").read_text() == (finished / "metrics.jsonl").read_text()
    else:
        assert rc == 2 and "metrics.jsonl" in err and "restore metrics.jsonl" in err, err


def test_a_nan_loss_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "toy-regression", "--lr", "1e30", "--steps", "30", "--checkpoint-every", "1", "--threads", "1", "--no-progress", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "the training loss is nan at step" in err and "the last good checkpoint, checkpoint-" in err and "Lower --lr" in err
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "results.json").exists() and not (run_dir / "model").exists()
    kept = load_file(str(latest_checkpoint(run_dir) / "tensors.safetensors"))
    assert all(torch.isfinite(t).all() for k, t in kept.items() if k.startswith("obj.model."))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r.get("loss") is None or math.isfinite(r["loss"]) for r in rows)


def write_mnist(d: Path, n_train: int, n_test: int) -> None:
    rng = np.random.RandomState(0)
    d.mkdir(parents=True)
    for name, n in (("train-images-idx3-ubyte", n_train), ("train-labels-idx1-ubyte", n_train), ("t10k-images-idx3-ubyte", n_test), ("t10k-labels-idx1-ubyte", n_test)):
        shape = (n,) if "labels" in name else (n, 28, 28)
        a = rng.randint(0, 10 if "labels" in name else 256, size=shape).astype(np.uint8)
        raw = struct.pack(">BBBB", 0, 0, 8, a.ndim) + b"".join(struct.pack(">I", k) for k in a.shape) + a.tobytes()
        (d / (name + ".gz")).write_bytes(gzip.compress(raw))


@pytest.mark.parametrize("recipe, opts", [
    ("split-mnist", ["--tasks", "2", "--steps", "2", "--target-hidden", "8", "--chunk-size", "500", "--no-baseline"]),
    ("ha-mnist", ["--epochs", "1", "--train-subset", "100"]),
])
def test_empty_test_data_is_refused_before_training(recipe: str, opts: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_mnist(tmp_path / "data" / "mnist", n_train=200, n_test=0)
    rc = main(["run", recipe, *opts, "--threads", "1", "--no-progress", "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and ("0 items" in err or "0 images" in err), err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # refused before a step: no run left


# a recipe whose step 3 gets a NaN input: the loss and every gradient of that step are NaN
def _nan_at_3(ctx) -> dict:
    lin = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    ctx.track(model=lin, optimizer=opt)
    state = ctx.restore({"step": 0})
    gen = torch.Generator().manual_seed(0)
    while state["step"] < 6:
        x = torch.randn(4, 3, generator=gen)
        if state["step"] == 2:
            x[0, 0] = float("nan")
        loss = lin(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] += 1
        ctx.step_done(loss=loss.item())
    return {"w": lin.weight.detach().flatten().tolist()}


def test_skip_nonfinite_skips_exactly_the_bad_step(tmp_path: Path) -> None:
    from dataclasses import dataclass

    from hyperdnn.experiments.context import NonFiniteLossError
    from hyperdnn.experiments.registry import Recipe

    @dataclass
    class C:
        pass

    r = Recipe("nan-at-3", "test", C, _nan_at_3)
    with pytest.raises(NonFiniteLossError, match="the training loss is nan at step 3"):  # off by default
        run_recipe(r, out_dir=tmp_path / "a", show_progress=False, print_tables=False, threads=1, checkpoint_every=0)
    res = run_recipe(r, out_dir=tmp_path / "b", show_progress=False, print_tables=False, threads=1, checkpoint_every=0, skip_nonfinite=True)
    # the reference: the same loop by hand, without step 3
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    for step in range(6):
        x = torch.randn(4, 3, generator=gen)
        if step == 2:
            continue
        opt.zero_grad()
        lin(x).pow(2).mean().backward()
        opt.step()
    assert res.results["w"] == lin.weight.detach().flatten().tolist()
    rows = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("kind") == "skipped"] == [3]
    assert json.loads((res.run_dir / "config.json").read_text())["skip_nonfinite"] is True
