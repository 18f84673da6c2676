"""Interleaved timing: every implementation runs in every round, in a rotating order.

Shared, noisy CPUs drift; timing all implementations within each round and taking the median
of per-round ratios to the limit cancels most of the drift that separate runs would suffer.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Timing:
    """Per-step times (seconds) of one implementation, one entry per round."""

    rounds: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    def spread(self) -> tuple[float, float]:
        """Quartiles of the per-round times (a noise indicator)."""
        if len(self.rounds) < 4:
            return min(self.rounds), max(self.rounds)
        q = statistics.quantiles(self.rounds, n=4)
        return q[0], q[2]


def _reps_for(seconds: float, target: float) -> int:
    return max(1, min(50, round(target / max(seconds, 1e-6))))


def interleaved(
    steps: dict[str, Callable[[], object]],
    rounds: int = 7,
    warmup: int = 2,
    segment_s: float = 0.05,
    reference: str | None = "limit",
    budget_s: float | None = None,
    max_rounds: int = 500,
) -> dict[str, Timing]:
    """Times each step function in interleaved rounds.

    Args:
        steps: name -> zero-argument callable doing one step.
        rounds: rounds always run (each runs every implementation once, order rotated per round).
        warmup: untimed calls of each before the first round.
        segment_s: target duration of one timed segment; a segment runs ``reps`` calls
            (chosen from the warm-up, at least one) and records the mean per-call time. Short
            segments pair each implementation's time with the limit's taken moments apart.
        reference: name whose per-round time divides everyone's (the ratio column).
        budget_s: after ``rounds``, keep adding rounds until this many seconds have passed.
        max_rounds: never more rounds than this.

    Returns:
        name -> Timing.
    """
    names = list(steps)
    reps = {}
    for n in names:
        t0 = time.perf_counter()
        for _ in range(warmup):
            steps[n]()
        reps[n] = _reps_for((time.perf_counter() - t0) / max(warmup, 1), segment_s)
    out = {n: Timing() for n in names}
    start = time.perf_counter()
    for r in range(max_rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        this = {}
        for n in order:
            t0 = time.perf_counter()
            for _ in range(reps[n]):
                steps[n]()
            this[n] = (time.perf_counter() - t0) / reps[n]
            out[n].rounds.append(this[n])
        if reference in this:
            for n in names:
                out[n].ratios.append(this[n] / this[reference])
        if r + 1 >= rounds and (budget_s is None or time.perf_counter() - start > budget_s):
            break
    return out
