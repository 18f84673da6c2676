"""README's "Continual learning in your own loop" runs as written and does what its text says."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Continual learning in your own loop"


def readme_loop() -> str:
    """The first python block under the section's heading, exactly as README shows it."""
    text = README.read_text()
    assert HEADING in text, f"README has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run_loop(code: str) -> tuple[dict, str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: one thread is fastest and not disturbed by other jobs
    out = io.StringIO()
    namespace: dict = {"__name__": "readme_loop"}
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    return namespace, out.getvalue()


def test_readme_loop_learns_three_tasks_without_forgetting() -> None:
    code = readme_loop()
    assert 10 <= len(code.strip().splitlines()) <= 30  # a loop that fits in a README
    ns, printed = run_loop(code)
    cl, res = ns["cl"], ns["res"]
    assert [len(r) for r in cl.matrix] == [1, 2, 3]
    assert "after task 2" in printed and "forgetting" in printed
    # evaluate() scores the model as it is now, which is what the last matrix row saw
    assert res.cl1 == cl.matrix[-1] and res.matrix == cl.matrix
    assert res.final_average > 97 and res.forgetting < 1.0  # README: near 99 %, under 1 point
    assert res.cl3 is not None and len(res.cl3.per_task) == 3

    # the same loop without the regularizer forgets (README: about 95 % and 73 %)
    ns0, _ = run_loop(code.replace("beta=0.05", "beta=0.0"))
    assert "beta=0.05" in code
    assert ns0["res"].forgetting > 10 and ns0["cl"].matrix[-1][1] < 85


@pytest.mark.parametrize("needle", ["hd.methods.ContinualLearning(", "cl.start_task(t)", "cl.step(", "cl.end_task(tests)", "cl.evaluate(tests)"])
def test_readme_loop_uses_the_entry_points(needle: str) -> None:
    assert needle in readme_loop()
