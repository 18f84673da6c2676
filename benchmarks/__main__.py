"""Runs every benchmark workload: ``python -m benchmarks [--threads 1 2] [--only 1a 2 ...] [--quick]``.

Workloads (forward + backward + Adam step unless said; hyperdnn, the hand-written limit and
the peers hypnettorch / hyperlight / hyper-nn, timed interleaved in one process):

  1a  static task-conditioned, generate once      target MLP 784-100-10, batch 128
  1b  static task-conditioned, chunk-wise          chunk 4000, chunk embedding 8
  2   dynamic per-sample weights (encoder(x), 8)   checked against the per-sample loop first
  3   dynamic low-rank outputs, rank 4 and 16      and the speed-up over workload 2
  4   GPT-2 small theta (124M) generated once      chunk-wise / low-rank: seconds and peak memory
  5   scaling curves (PNG)                         1b vs target width, 2 vs batch size

Prints markdown tables and writes ``results.json``, ``tables.md`` and the PNG plots under
``--out`` (default ``benchmarks/results``). Peers come from ``benchmarks/install_peers.sh``;
a missing one is reported as missing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from . import memory, report
from .peers import peer_versions
from .run import BUILDERS, run_workload
from .spec import HyperSpec, TargetSpec, Workload

TIMED = {
    "1a": ("Workload 1a: static task-conditioned, generate once", Workload("static_full")),
    "1b": ("Workload 1b: static task-conditioned, chunk-wise (chunk 4000, chunk embedding 8)", Workload("static_chunked")),
    "2": ("Workload 2: dynamic per-sample weights, generate once (condition = encoder(x), 8)", Workload("dynamic_full")),
    "3r4": ("Workload 3: dynamic per-sample weights, low-rank outputs, rank 4", Workload("dynamic_lowrank", hyper=HyperSpec(rank=4))),
    "3r16": ("Workload 3: dynamic per-sample weights, low-rank outputs, rank 16", Workload("dynamic_lowrank", hyper=HyperSpec(rank=16))),
}
WIDTHS = [100, 250, 500, 1000, 2000, 4000]
BATCHES = [16, 32, 64, 128, 256, 512]


def _machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = None
    return {
        "cpu": cpu, "logical_cpus": os.cpu_count(), "memory_gb": mem_gb and round(mem_gb, 1),
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "git_commit": report.git_commit(), "load_average_at_start": os.getloadavg(),
    }


def _curve(wls: list[tuple[int, Workload]], names: list[str], rounds: int, budget: float, log) -> dict[str, dict]:
    curves: dict[str, dict] = {}
    for x, wl in wls:
        log(f"  size {x}")
        for r in run_workload(wl, names=names, rounds=rounds, budget_s=budget, log=log):
            c = curves.setdefault(r.name, {"x": [], "ms": [], "ratio": [], "status": "ok"})
            c["x"].append(x)
            c["ms"].append(r.ms)
            c["ratio"].append(r.ratio)
            if r.status != "ok":
                c["status"] = r.status
                c["reason"] = r.reason
    return curves


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values for workloads 1-3 (default: 1 2)")
    ap.add_argument("--curve-threads", type=int, default=1, help="threads for the scaling curves (default 1: least noisy on a shared machine)")
    ap.add_argument("--memory-threads", type=int, default=2, help="threads for workload 4 (default 2)")
    ap.add_argument("--only", nargs="+", choices=["1a", "1b", "2", "3", "4", "5"], help="run only these workloads")
    ap.add_argument("--impls", nargs="+", choices=list(BUILDERS), default=list(BUILDERS), help="implementations to run")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds at least, per workload (medians taken)")
    ap.add_argument("--budget", type=float, default=15.0, help="seconds of timed rounds per workload in 1-3, more rounds until spent (default 15; curves: a third)")
    ap.add_argument("--quick", action="store_true", help="3 rounds, no budget, fewer sizes in the curves (a fast check, not for publishing)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="where to write results.json, tables.md, PNGs")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `hyperdnn bench -- ARGS` passes the separator on
        argv = argv[1:]
    a = ap.parse_args(argv)
    only = set(a.only or ["1a", "1b", "2", "3", "4", "5"])
    rounds = 3 if a.quick else a.rounds
    budget = 0.0 if a.quick else a.budget
    a.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: dict = {
        "command": " ".join(["python -m benchmarks", *argv]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(), "peers": peer_versions(), "min_rounds": rounds, "budget_s": budget,
        "timings": {}, "lowrank_speedup": {}, "memory": [], "curves": {},
    }
    md: list[str] = [f"Command: `{results['command']}`  ", f"Date: {results['date']}  ",
                     f"Machine: {results['machine']['cpu']}, {results['machine']['logical_cpus']} logical CPUs, torch {torch.__version__}  ",
                     "Peers: " + ", ".join(f"{k} {v}" for k, v in results["peers"].items()), ""]

    def emit(title: str, table: str) -> None:
        text = f"### {title}\n\n{table}\n"
        print(text, flush=True)
        md.append(text)

    timed_keys = [k for k in TIMED if k.rstrip("r416") in only or (k.startswith("3") and "3" in only)]
    for threads in a.threads:
        torch.set_num_threads(threads)
        per: dict[str, list[dict]] = {}
        for key in timed_keys:
            title, wl = TIMED[key]
            log(f"[{time.perf_counter() - t_start:6.0f}s] {title}, {threads} thread(s)")
            load = os.getloadavg()[0]
            rows = run_workload(wl, names=a.impls, rounds=rounds, budget_s=budget, log=log)
            per[key] = [r.to_json() for r in rows]
            results.setdefault("load_average_1min", {})[f"{threads}/{key}"] = load
            n_rounds = max((r.rounds for r in rows), default=0)
            emit(f"{title} — torch.set_num_threads({threads}); {n_rounds} rounds; load average {load:.1f} before",
                 report.timing_table(rows))
        results["timings"][str(threads)] = per
        if "2" in per and any(k.startswith("3") for k in per):
            speed = {}
            for key in ("3r4", "3r16"):
                for r3 in per.get(key, []):
                    r2 = next((r for r in per["2"] if r["name"] == r3["name"]), None)
                    if r3["status"] == "ok" and r2 and r2["status"] == "ok":
                        speed[f"{key}/{r3['name']}"] = r2["ms"] / r3["ms"]
            results["lowrank_speedup"][str(threads)] = speed
            emit(f"Workload 3: speed-up of low-rank outputs over workload 2 — {threads} thread(s)",
                 report.md_table(["rank / implementation", "workload 2 ms / workload 3 ms"],
                                 [[k.replace("3r", "rank "), f"{v:.1f}x"] for k, v in speed.items()]))

    if "4" in only:
        log(f"[{time.perf_counter() - t_start:6.0f}s] Workload 4: GPT-2 small theta, {a.memory_threads} thread(s), one subprocess each")
        impls = tuple(n for n in memory.IMPLS if n in a.impls)
        results["memory"] = memory.run_all(a.memory_threads, impls, log=log)
        emit(f"Workload 4: GPT-2 small (124,439,808 parameters, theta = {results['memory'][0]['theta_mb']:.0f} MiB fp32) "
             f"generated once, forward only — torch.set_num_threads({a.memory_threads})", report.memory_table(results["memory"]))

    if "5" in only:
        torch.set_num_threads(a.curve_threads)
        widths = WIDTHS[::2] + WIDTHS[-1:] if a.quick else WIDTHS
        batches = BATCHES[::2] + BATCHES[-1:] if a.quick else BATCHES
        curve_rounds = max(3, rounds // 2)
        curve_budget = budget / 3
        log(f"[{time.perf_counter() - t_start:6.0f}s] Workload 5a: 1b against target hidden width")
        wide = [(w, Workload("static_chunked", target=TargetSpec(hidden=w))) for w in widths]
        results["curves"]["width"] = _curve(wide, a.impls, curve_rounds, curve_budget, log)
        log(f"[{time.perf_counter() - t_start:6.0f}s] Workload 5b: 2 against batch size")
        bat = [(b, replace(Workload("dynamic_full"), batch=b)) for b in batches]
        results["curves"]["batch"] = _curve(bat, a.impls, curve_rounds, curve_budget, log)
        report.plot_scaling(results["curves"]["width"], "target hidden width (784-H-10; chunk 4000)",
                            f"Workload 1b (static, chunk-wise): step time vs target width, torch.set_num_threads({a.curve_threads})",
                            a.out / "scaling_width.png")
        report.plot_scaling(results["curves"]["batch"], "batch size (one weight set per sample)",
                            f"Workload 2 (dynamic, generate once): step time vs batch, torch.set_num_threads({a.curve_threads})",
                            a.out / "scaling_batch.png")
        for kind, label in (("width", "hidden width"), ("batch", "batch")):
            c = results["curves"][kind]
            xs = next(iter(c.values()))["x"]
            emit(f"Workload 5: ms/step against {label} — torch.set_num_threads({a.curve_threads})",
                 report.md_table([label] + list(c), [[str(x)] + [
                     f"{c[n]['ms'][i]:.1f}" if c[n]["ms"][i] is not None else c[n]["status"] for n in c
                 ] for i, x in enumerate(xs)]))

    results["goals"] = report.goals(results)
    emit("Goals", report.goals_table(results["goals"]))
    results["total_seconds"] = time.perf_counter() - t_start
    (a.out / "results.json").write_text(json.dumps(results, indent=1))
    (a.out / "tables.md").write_text("\n".join(md))
    log(f"done in {results['total_seconds']:.0f}s; wrote {a.out / 'results.json'}, {a.out / 'tables.md'}"
        + (", scaling_width.png, scaling_batch.png" if "5" in only else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
