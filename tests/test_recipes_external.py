"""Recipes from outside the package: a .py file named on the command line, and another package's entry point.

The recipe used is the example of docs/recipes.md, read from the page itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.cli import main

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def example_recipe() -> str:
    """The ```python block of docs/recipes.md."""
    (code,) = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "recipes.md").read_text(), re.S)
    return code


def hyperdnn(args: list[str], env: dict[str, str] = ENV, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperdnn", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_documented_example_is_about_thirty_lines() -> None:
    lines = [ln for ln in example_recipe().splitlines() if ln.strip()]
    assert 25 <= len(lines) <= 40, len(lines)


def test_a_recipe_file_runs_resumes_and_has_help(tmp_path: Path) -> None:
    path = tmp_path / "my_recipe.py"
    path.write_text(example_recipe())
    out = tmp_path / "out"
    p = hyperdnn(["run", str(path), "--steps", "30", "--threads", "1", "--no-progress", "--out-dir", str(out)])
    assert p.returncode == 0, p.stderr
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("sine-fit-")
    res = json.loads((run_dir / "results.json").read_text())
    assert res["recipe"] == "sine-fit" and res["results"]["final_mse"] >= 0
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["recipe_source"] == str(path.resolve()) and cfg["config"]["steps"] == 30
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))

    # a fresh process finds the file again from config.json, from another directory
    (run_dir / "results.json").unlink()
    p = hyperdnn(["run", "--resume", str(run_dir), "--no-progress"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads((run_dir / "results.json").read_text())["results"] == res["results"]

    p = hyperdnn(["run", str(path), "--help"])
    assert p.returncode == 0 and "--hidden INT" in p.stdout and "hidden units of the target MLP (default: 16)" in p.stdout


def test_a_recipe_file_in_process_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "my_recipe.py"
    path.write_text(example_recipe())
    assert main(["run", str(path), "--steps", "0", "--out-dir", str(tmp_path / "out")]) == 2
    assert "sine-fit: steps must be > 0 (got 0)" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["run", str(broken)]) == 2
    assert f"{broken} failed to import (RuntimeError: boom)" in capsys.readouterr().err
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["run", str(empty)]) == 2
    assert "registers no recipe" in capsys.readouterr().err
    from hyperdnn.experiments.recipes import get_recipe

    with pytest.raises(ConfigError, match="is not a Python file"):
        get_recipe(str(tmp_path / "missing.py"))


def test_a_recipe_from_another_packages_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    pkg = site / "sine_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "recipes.py").write_text(example_recipe())
    dist = site / "sine_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sine-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hyperdnn.recipes]\nsine-fit = sine_pkg.recipes\nbroken = sine_pkg.nope\n")
    env = {**ENV, "PYTHONPATH": str(site) + os.pathsep + ENV["PYTHONPATH"]}
    p = hyperdnn(["list"], env=env)
    assert p.returncode == 0 and re.search(r"^sine-fit +a hypernetwork writes an MLP", p.stdout, re.M), p.stdout
    assert "entry point broken (sine_pkg.nope) failed to import" in p.stderr  # reported, not fatal
    out = tmp_path / "out"
    p = hyperdnn(["run", "sine-fit", "--steps", "5", "--threads", "1", "--no-progress", "--out-dir", str(out)], env=env)
    assert p.returncode == 0, p.stderr
    (run_dir,) = out.iterdir()
    assert json.loads((run_dir / "results.json").read_text())["recipe"] == "sine-fit"
    assert "recipe_source" not in json.loads((run_dir / "config.json").read_text())
