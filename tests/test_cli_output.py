"""What a person reads: help for every option, the nearest recipe name, plain progress lines off a terminal, a core without the runner."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from hyperdnn.experiments.cli import build_parser, main
from hyperdnn.experiments.recipes import all_recipes
from hyperdnn.experiments.render import Progress

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_the_core_imports_no_runner_plotting_or_progress_bar() -> None:
    code = (
        "import sys, torch; before = set(sys.modules); import hyperdnn; new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.startswith('hyperdnn.experiments') or m.split('.')[0] in ('matplotlib', 'tqdm')); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


@pytest.mark.parametrize("recipe", [r.name for r in all_recipes()])
def test_every_option_has_a_description_and_str_options_their_choices(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", recipe, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    r = next(x for x in all_recipes() if x.name == recipe)
    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices["run"]._actions if a.dest == "recipe")
    sub = run.choices[recipe]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 12, (action.dest, action.help)
        if action.dest.startswith("cfg_"):  # a real description, not the field name the fallback would give
            text = action.help.split(" (default:")[0]
            assert "(default:" in action.help and text != action.dest[4:].replace("_", " "), (action.dest, action.help)
    for f in fields(r.config):
        assert "--" + f.name.replace("_", "-") in out
    for name in ("hnet_activation", "target_activation", "hnet_init"):
        if name in {f.name for f in fields(r.config)}:
            assert re.search(rf"--{name.replace('_', '-')} {{[a-z,]+}}", out), name


def test_an_unknown_recipe_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "split-mnits"]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'split-mnits'; did you mean split-mnist?" in err and err.count("\n") == 1
    assert main(["run", "zzzz", "--steps", "3"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_progress_off_a_terminal_is_plain_lines() -> None:
    buf = io.StringIO()  # not a terminal
    p = Progress("toy", total=100, stream=buf)
    for i in range(100):
        p.update(1, {"loss": 0.5, "task": f"{i // 50 + 1}/2"})
    p.close()
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue()
    assert 10 <= len(lines) <= 12 and lines[0].startswith("toy: step 1/100 (1%) loss=0.5 task=1/2")
    assert any(ln.startswith("toy: step 51/100") and "task=2/2" in ln for ln in lines)  # a new task: a line
    quiet = io.StringIO()
    p = Progress("toy", total=100, quiet=True, stream=quiet)
    for i in range(100):
        p.update(1, {"loss": 0.5, "task": f"{i // 50 + 1}/2"})
    assert [ln.split(" loss")[0] for ln in quiet.getvalue().splitlines()] == ["toy: step 1/100 (1%)", "toy: step 51/100 (51%)"]


def test_a_run_logged_to_a_file_has_progress_lines(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "hyperdnn", "run", "toy-regression", "--steps", "20", "--no-baseline", "--threads", "1", "--out-dir", str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("toy-regression: step ")]
    assert 8 <= len(lines) <= 14, p.stderr
    assert any("task=3/3" in ln for ln in lines)


def test_bench_outside_a_checkout_says_it_needs_one(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "hyperdnn", "bench", "--quick"], env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "the benchmarks need a source checkout of hyperdnn" in p.stderr
