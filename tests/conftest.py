"""Shared fixtures of the test suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest


@pytest.fixture
def interrupted_run(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``interrupted_run(recipe, config, stop_at, out_dir=..., **run_kw) -> run_dir``: runs a
    recipe (``run_recipe``) with a Ctrl-C arriving as global step ``stop_at`` completes (what the
    SIGINT handler sets), checks that the run stopped with ``RunInterrupted`` before writing
    ``results.json``, and returns its run directory for ``run_recipe(recipe, resume=run_dir)``."""
    from hyperdnn.experiments.runs import RunContext, RunInterrupted, run_recipe

    def run(recipe: Any, config: Any, stop_at: int, *, out_dir: Path, **run_kw: Any) -> Path:
        step_done = RunContext.step_done

        def ctrl_c_at(ctx: RunContext, n: int = 1, **metrics: Any) -> None:
            if ctx.global_step + n == stop_at:
                ctx._interrupted = True
            step_done(ctx, n, **metrics)

        monkeypatch.setattr(RunContext, "step_done", ctrl_c_at)
        try:
            with pytest.raises(RunInterrupted):
                run_recipe(recipe, config, out_dir=out_dir, **run_kw)
        finally:
            monkeypatch.setattr(RunContext, "step_done", step_done)
        (run_dir,) = Path(out_dir).iterdir()
        assert not (run_dir / "results.json").exists()
        return run_dir

    return run
