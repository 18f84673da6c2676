"""Tables (markdown), goal checks and scaling plots from the benchmark results."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from .run import HEADER, Row, fmt_row

GOAL_RATIO = 1.10
GOAL_MEMORY = 1.3
#: rows that are not peer libraries (excluded from "the fastest peer")
NOT_PEERS = {"limit", "limit-dense", "plain target", "hyperdnn"}


def git_commit() -> str:
    """The checkout's short commit hash, or "" outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return ""


def write_record(path: str | Path, command: str, **fields: Any) -> Path:
    """Write a benchmark's JSON record: the command, the git commit, ``fields`` and the machine.

    Args:
        path: the JSON file (its folder is made).
        command: how the benchmark was run.
        **fields: the benchmark's own entries (workload, results, goal, ...).
    """
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__, "loadavg_at_end": os.getloadavg()}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "git_commit": git_commit(), **fields, "machine": machine}, indent=2))
    return out


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def timing_table(rows: list[Row]) -> str:
    return md_table(HEADER, [fmt_row(r) for r in rows])


def memory_table(results: list[dict]) -> str:
    header = ["output", "implementation", "status", "seconds (median of 5)", "peak MiB above baseline", "peak / theta", "phi MiB"]
    out = []
    for r in results:
        if r.get("status") != "ok":
            out.append([r["variant"], r["impl"], r.get("status", "?"), "", "", "", r.get("reason", "")])
            continue
        out.append([
            r["variant"], r["impl"], "ok", f"{r['seconds']:.2f}", f"{r['peak_mb']:.0f}",
            f"{r['peak_vs_theta']:.2f}x", f"{r['phi_mb']:.1f}",
        ])
    return md_table(header, out)


def _row(rows: list[dict], name: str) -> dict | None:
    return next((r for r in rows if r["name"] == name), None)


def goals(results: dict[str, Any]) -> list[dict]:
    """Checks each goal of the issue against the results; returns [{goal, met, detail}]."""
    out = []
    for threads, per in results.get("timings", {}).items():
        for key in ("1a", "1b", "2"):
            rows = per.get(key)
            if not rows:
                continue
            hd, lim = _row(rows, "hyperdnn"), _row(rows, "limit")
            if not hd or hd["status"] != "ok" or not lim:
                out.append({"goal": f"workload {key} ({threads} thr): hyperdnn runs", "met": False, "detail": hd and hd["reason"]})
                continue
            ratio = hd["ratio"]
            out.append({
                "goal": f"workload {key} ({threads} thr): hyperdnn <= {GOAL_RATIO:.2f}x limit",
                "met": ratio <= GOAL_RATIO, "detail": f"{ratio:.2f}x ({hd['ms']:.2f} vs {lim['ms']:.2f} ms)",
            })
            peers = [r for r in rows if r["name"] not in NOT_PEERS and r["status"] == "ok"]
            if peers:
                best = min(peers, key=lambda r: r["ratio"])
                out.append({
                    "goal": f"workload {key} ({threads} thr): hyperdnn no slower than the fastest peer",
                    "met": ratio <= best["ratio"] * 1.02,  # 2%: below the noise of a shared machine
                    "detail": f"hyperdnn {ratio:.2f}x vs {best['name']} {best['ratio']:.2f}x of the limit",
                })
            if key == "2":
                wrong = [r["name"] for r in rows if r["status"] == "wrong"]
                out.append({
                    "goal": f"workload 2 ({threads} thr): hyperdnn equals the per-sample loop",
                    "met": True, "detail": "checked before timing" + (f"; wrong: {', '.join(wrong)}" if wrong else ""),
                })
    for r in results.get("memory", []):
        if r["impl"] == "hyperdnn":
            met = r.get("status") == "ok" and r["peak_vs_theta"] <= GOAL_MEMORY
            detail = f"{r['peak_vs_theta']:.2f}x theta" if r.get("status") == "ok" else r.get("reason", "")
            out.append({"goal": f"workload 4 {r['variant']}: peak memory <= {GOAL_MEMORY}x theta", "met": met, "detail": detail})
    return out


def goals_table(gs: list[dict]) -> str:
    return md_table(["goal", "met", "measured"], [[g["goal"], "yes" if g["met"] else "**no**", str(g["detail"])] for g in gs])


def plot_scaling(curves: dict[str, dict[str, list]], xlabel: str, title: str, path: Path) -> None:
    """Left: median ms/step against size (log-log), one line per implementation.
    Right: the same as a ratio to the limit (median of per-round ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (ax, axr) = plt.subplots(1, 2, figsize=(11, 4.3), dpi=110)
    styles = {
        "limit": ("k", "--"), "limit-dense": ("k", ":"), "plain target": ("tab:gray", "-."),
        "hyperdnn": ("tab:red", "-"), "hypnettorch": ("tab:blue", "-"), "hypnettorch+vmap": ("tab:cyan", "-"),
        "hyperlight": ("tab:green", "-"), "hyper-nn": ("tab:purple", "-"),
    }
    xs_all: set = set()
    for name, c in curves.items():
        color, ls = styles.get(name, (None, "-"))
        pts = [(x, y, r) for x, y, r in zip(c["x"], c["ms"], c.get("ratio", [None] * len(c["x"])))
               if y is not None and math.isfinite(y)]
        if not pts:
            ax.plot([], [], ls="none", label=f"{name}: {c.get('status', 'n/a')}")
            continue
        xs, ys, rs = zip(*pts)
        xs_all.update(xs)
        line = ax.plot(xs, ys, marker="o", ms=4, color=color, ls=ls, label=name)[0]
        if all(r is not None for r in rs):
            axr.plot(xs, rs, marker="o", ms=4, color=line.get_color(), ls=ls, label=name)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for a in (ax, axr):
        a.set_xscale("log")
        a.set_xticks(sorted(xs_all))
        a.xaxis.set_major_formatter(plain)
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_xlabel(xlabel)
        a.grid(True, which="both", alpha=0.3)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plain)
    ax.set_ylabel("ms / step (forward + backward + Adam), median")
    axr.set_ylabel("time / limit's time (median of per-round ratios)")
    axr.axhline(1.10, color="grey", lw=0.8, ls=":")
    axr.text(min(xs_all) if xs_all else 1, 1.11, "goal 1.10x", fontsize=7, color="grey")
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
