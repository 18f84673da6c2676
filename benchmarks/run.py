"""Runs a workload: builds every implementation, checks it, times it interleaved."""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from . import hyperdnn_adapter, limit
from .peers import hypernn_peer, hyperlight_peer, hypnettorch_peer
from .spec import Workload
from .subject import Subject, Unavailable
from .timing import interleaved

#: row order of every table: the limit first, then hyperdnn, then the peers
BUILDERS: dict[str, Callable[[Workload], Subject]] = {
    "limit": limit.build,
    "limit-dense": limit.build_dense_lowrank,
    "plain target": limit.build_plain_target,
    "hyperdnn": hyperdnn_adapter.build,
    "hypnettorch": hypnettorch_peer.build,
    "hypnettorch+vmap": hypnettorch_peer.build_vmap,
    "hyperlight": hyperlight_peer.build,
    "hyper-nn": hypernn_peer.build,
}


#: rows shown only where they apply (no "n/a" line elsewhere)
EXTRAS = {"limit-dense", "hypnettorch+vmap", "plain target"}


@dataclass
class Row:
    """One line of a result table."""

    name: str
    status: str  # "ok", "missing", "n/a", "refuses", "wrong", "error"
    reason: str = ""
    n_params: int | None = None
    ms: float | None = None
    ratio: float | None = None
    q1_ms: float | None = None
    q3_ms: float | None = None
    rounds: int = 0
    note: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


def data(wl: Workload, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(wl.batch, wl.target.in_dim, generator=g)
    y = torch.randint(0, wl.target.out_dim, (wl.batch,), generator=g)
    return x, y


def check(subject: Subject, wl: Workload, x: Tensor, n_loop: int = 8) -> None:
    """Raises Unavailable("refuses" | "wrong" | "error") unless the subject computes the workload.

    Static: the output has shape (B, out) and is finite. Dynamic: additionally the batched
    output equals the per-sample loop (each sample's weights generated from a batch of one)
    on the first ``n_loop`` samples.
    """
    xs = x[:n_loop] if wl.dynamic else x
    try:
        with torch.no_grad():
            y = subject.forward(xs)
    except Exception as exc:  # noqa: BLE001 - a library raising on the workload is a result
        status = "refuses" if wl.dynamic else "error"
        raise Unavailable(status, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
    if tuple(y.shape) != (xs.shape[0], wl.target.out_dim):
        raise Unavailable("wrong", f"output shape {tuple(y.shape)}, expected {(xs.shape[0], wl.target.out_dim)}")
    if not torch.isfinite(y).all():
        raise Unavailable("wrong", "non-finite output")
    if wl.dynamic:
        if subject.loop_forward is None:
            raise Unavailable("error", "no per-sample loop reference")
        with torch.no_grad():
            ref = subject.loop_forward(xs)
        err = (y - ref).abs().max().item()
        tol = 1e-4 * (1.0 + ref.abs().max().item())
        if not err <= tol:
            raise Unavailable("wrong", f"batched output differs from the per-sample loop (max abs diff {err:.3g} > {tol:.2g})")


class _OpCounter:
    """Counts the aten operators a forward runs (a Python loop over samples shows up as
    a count that grows with the batch)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.n += 1
                return func(*args, **(kwargs or {}))

        self.n, self.mode = 0, Mode()

    def count(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> int:
        self.n = 0
        with torch.no_grad(), self.mode:
            fn(x)
        return self.n


def loops_over_samples(subject: Subject, x: Tensor) -> bool:
    """True when the forward's operator count grows with the batch (a per-sample loop)."""
    c = _OpCounter()
    return c.count(subject.forward, x[:4]) != c.count(subject.forward, x[:8])


def run_workload(
    wl: Workload,
    names: list[str] | None = None,
    rounds: int = 7,
    budget_s: float | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Builds, checks and times every implementation of ``wl`` in the current thread setting."""
    names = names or list(BUILDERS)
    x, y = data(wl, seed)
    rows: dict[str, Row] = {}
    steps = {}
    for name in names:
        torch.manual_seed(seed)
        try:
            subject = BUILDERS[name](wl)
            check(subject, wl, x)
            note = subject.note
            if wl.dynamic:
                loop = loops_over_samples(subject, x)
                note = "; ".join(n for n in (note, "op count grows with batch (per-sample loop)" if loop else "op count independent of batch") if n)
            step = subject.make_step(x, y)
            step()  # a library whose backward or optimizer step fails is reported, not timed
            rows[name] = Row(name, "ok", n_params=subject.n_params(), note=note)
            steps[name] = step
        except Unavailable as u:
            if name in EXTRAS and u.status == "n/a":
                continue
            rows[name] = Row(name, u.status, u.reason)
        except Exception as exc:  # noqa: BLE001 - report, never drop
            rows[name] = Row(name, "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
            log(traceback.format_exc(limit=3))
    ref = "limit" if "limit" in steps else None
    t0 = time.perf_counter()
    timings = interleaved(steps, rounds=rounds, reference=ref, budget_s=budget_s) if steps else {}
    for name, tm in timings.items():
        r = rows[name]
        r.ms, r.ratio, r.rounds = tm.median * 1e3, tm.ratio, len(tm.rounds)
        q1, q3 = tm.spread()
        r.q1_ms, r.q3_ms = q1 * 1e3, q3 * 1e3
    n_rounds = max((len(t.rounds) for t in timings.values()), default=0)
    log(f"  timed {len(steps)} implementation(s), {n_rounds} rounds, in {time.perf_counter() - t0:.1f}s")
    return [rows[n] for n in names if n in rows]


def fmt_row(r: Row) -> list[str]:
    if r.status != "ok":
        return [r.name, r.status, "", "", "", r.reason]
    spread = f"{r.q1_ms:.2f}-{r.q3_ms:.2f}" if r.q1_ms is not None else ""
    ratio = f"{r.ratio:.2f}x" if r.ratio is not None and math.isfinite(r.ratio) else ""
    return [r.name, f"{r.ms:.2f}", ratio, spread, f"{r.n_params:,}", r.note]


HEADER = ["implementation", "ms/step (median)", "vs limit", "IQR ms", "trainable params", "note"]
