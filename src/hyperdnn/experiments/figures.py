"""Figures of a run, drawn to be read: labelled axes with units, shared scales, log scales across decades.

``loss_curves`` draws any run's training loss from metrics.jsonl (the runner calls
it for every run); ``continual_figures`` draws a continual-learning run's accuracy
(or MSE) matrices as heatmaps on one colour scale, and CL3 against the paper.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _spans_decades(values: list[float]) -> bool:
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(pos) and len(pos) == len(values) and max(pos) / min(pos) > 30


def _smooth(ys: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= window:
            acc -= ys[i - window]
        out.append(acc / min(i + 1, window))
    return out


def loss_curves(run_dir: Path, title: str, name: str = "loss") -> Path | None:
    """``run_dir/name.png``: the training loss of every logged step, one panel per phase or model.

    Panels share the y axis; it is logarithmic when the losses span more than a factor 30.
    Task boundaries within a panel are dotted lines. Returns None when metrics.jsonl has no loss.

    Args:
        run_dir: a run directory with metrics.jsonl.
        title: the figure title (the recipe).
        name: file name without ``.png``.
    """
    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    rows = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    if not rows:
        return None
    group_key = "phase" if any("phase" in r for r in rows) else ("model" if any("model" in r for r in rows) else None)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get(group_key, "")) if group_key else "", []).append(r)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.4), sharey=True, squeeze=False)
    log = _spans_decades([r["loss"] for r in rows])
    for ax, (label, rs) in zip(axes[0], groups.items()):
        steps, losses = [r["step"] for r in rs], [r["loss"] for r in rs]
        ax.plot(steps, losses, color="C0", alpha=0.25, lw=0.8, label="per step")
        ax.plot(steps, _smooth(losses, max(1, len(losses) // 50)), color="C0", lw=1.6, label="moving average")
        for a, b in zip(rs, rs[1:]):
            if "task" in a and a.get("task") != b.get("task"):
                ax.axvline(b["step"], color="0.6", ls=":", lw=0.8)
        ax.set_title(f"{group_key} {label}" if group_key else "training")
        ax.set_xlabel("optimizer step (whole run)")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss per batch" + (" (log scale)" if log else ""))
    axes[0][0].legend(fontsize=7)
    if any("task" in r for r in rows):
        fig.text(0.5, -0.04, "dotted lines: a new task starts", ha="center", fontsize=7)
    fig.suptitle(f"{title}: training loss", fontsize=10)
    out = Path(run_dir) / f"{name}.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def accuracy_heatmaps(run_dir: Path, title: str, matrices: dict[str, list[list[float]]], metric: str, regression: bool, paper_final: float | None = None, name: str = "accuracy_matrix") -> Path:
    """``run_dir/name.png``: each phase's matrix ``a[t][k]`` (metric on task k after training task t) as a heatmap.

    All panels use one colour scale (logarithmic for MSEs spanning decades), every cell
    is written out, and the paper's final average is drawn in the title when given.

    Args:
        run_dir: where to write.
        title: the figure title (the recipe).
        matrices: phase -> lower-triangular rows (row t holds tasks 0..t).
        metric: e.g. ``"test accuracy (%)"`` or ``"test MSE"``.
        regression: lower is better (MSE): a reversed colour map.
        paper_final: the paper's final average of the first phase, or None.
    """
    import numpy as np
    from matplotlib.colors import LogNorm, Normalize

    plt = _pyplot()
    labels = {"hnet": "hypernetwork + output regularizer", "baseline": "target trained in sequence, no regularizer"}
    values = [v for m in matrices.values() for row in m for v in row if v is not None and math.isfinite(v)]
    T = max(len(m) for m in matrices.values())
    if regression and _spans_decades(values):
        norm: Any = LogNorm(vmin=min(values), vmax=max(values))
    else:
        norm = Normalize(vmin=min(values + [0.0 if not regression else min(values)]), vmax=100.0 if not regression else max(values))
    cmap = plt.get_cmap("viridis_r" if regression else "viridis").with_extremes(bad="white")
    fig, axes = plt.subplots(1, len(matrices), figsize=(1.0 + 0.75 * T * len(matrices) + 1.5, 0.75 * T + 1.6), squeeze=False)
    im = None
    for ax, (phase, mat) in zip(axes[0], matrices.items()):
        grid = np.full((T, T), np.nan)
        for t, row in enumerate(mat):
            grid[t, : len(row)] = [np.nan if v is None else v for v in row]
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm)
        for t in range(T):
            for k in range(T):
                if math.isfinite(grid[t, k]):
                    v = grid[t, k]
                    r, g, b, _ = cmap(norm(v))
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                    ax.text(k, t, f"{v:.3g}" if regression else f"{v:.1f}", ha="center", va="center", fontsize=7, color="w" if dark else "k")
        ax.set_xticks(range(T), [str(k + 1) for k in range(T)])
        ax.set_yticks(range(T), [str(t + 1) for t in range(T)])
        ax.set_xlabel("evaluated on task")
        final = float(np.mean([v for v in mat[-1] if v is not None])) if mat else float("nan")
        sub = f"final average {final:.4g}" + (f" (paper {paper_final:.4g})" if paper_final is not None and phase == "hnet" else "")
        ax.set_title(f"{labels.get(phase, phase)}\n{sub}", fontsize=8)
    axes[0][0].set_ylabel("after training task")
    fig.colorbar(im, ax=axes[0].tolist(), label=metric + (" (log scale)" if isinstance(norm, LogNorm) else ""), shrink=0.9)
    fig.suptitle(f"{title}: {metric} on each task as training proceeds", fontsize=10)
    out = Path(run_dir) / f"{name}.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def cl3_bars(run_dir: Path, title: str, cl1: list[float], cl3: list[float], inferred: list[float], paper_cl3: float | None, name: str = "cl3") -> Path:
    """``run_dir/name.png``: per task, accuracy with the task given (CL1), inferred (CL3), and how often it was inferred right.

    Args:
        cl1: final accuracy (%) per task, task id given.
        cl3: accuracy (%) per task, task inferred by lowest predictive entropy.
        inferred: task inferred correctly (%) per task.
        paper_cl3: the paper's CL3 average (a dashed line), or None.
    """
    import numpy as np

    plt = _pyplot()
    T = len(cl3)
    x = np.arange(T)
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * T, 3.4))
    w = 0.27
    ax.bar(x - w, cl1, w, label="CL1: task id given")
    ax.bar(x, cl3, w, label="CL3: task inferred")
    ax.bar(x + w, inferred, w, label="task inferred correctly")
    ax.axhline(float(np.mean(cl3)), color="C1", lw=1, label=f"CL3 average {np.mean(cl3):.1f} %")
    if paper_cl3 is not None:
        ax.axhline(paper_cl3, color="k", ls="--", lw=1, label=f"paper CL3 average {paper_cl3:.1f} %")
    ax.set_xticks(x, [str(k + 1) for k in range(T)])
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{title}: CL1 vs CL3", fontsize=10)
    out = Path(run_dir) / f"{name}.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def continual_figures(run_dir: Path, title: str, results: dict[str, Any], published: bool) -> list[Path]:
    """The figures of a continual-learning run from its results (as ``run_continual`` returns them).

    Args:
        run_dir: where to write.
        title: the recipe.
        results: with ``metric``, ``hnet`` (``matrix``, ``final``, optional ``cl3``), optional
            ``baseline`` and ``paper``.
        published: the run used the paper's settings (only then is the paper's number drawn).
    """
    regression = "MSE" in results["metric"]
    paper = (results.get("paper") or {}) if published else {}
    matrices = {p: results[p]["matrix"] for p in ("hnet", "baseline") if p in results}
    out = [accuracy_heatmaps(run_dir, title, matrices, results["metric"], regression, paper.get("final"))]
    cl3 = results["hnet"].get("cl3")
    if cl3:
        out.append(cl3_bars(run_dir, title, results["hnet"]["final"], cl3["per_task"], cl3["task_inference_per_task"], paper.get("cl3")))
    return out


def eval_curves(run_dir: Path, title: str, kind: str, key: str, ylabel: str, paper: dict[str, float] | None = None, name: str = "evaluation") -> Path | None:
    """``run_dir/name.png``: an evaluation metric logged during training, one line per model.

    Reads the metrics.jsonl rows with ``"kind": kind`` and a number under ``key`` (x: the
    row's ``epoch`` if it has one, else the model's own step count). The y
    axis is logarithmic when the values span more than a factor 30; the paper's value of
    each model is a dashed line in its colour. Returns None when no row has the metric.

    Args:
        run_dir: a run directory with metrics.jsonl.
        title: the figure title (the recipe).
        kind: the rows' kind, e.g. ``"epoch"`` or ``"eval"``.
        key: the metric, e.g. ``"test_error"``.
        ylabel: the y-axis label with its unit, e.g. ``"test error (%)"``.
        paper: model -> the paper's value, drawn only when given (the paper's settings).
    """
    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    # where each model's training starts (models train one after the other): steps count from there
    start: dict[str, int] = {}
    for r in rows:
        if "loss" in r and "model" in r:
            start.setdefault(str(r["model"]), r["step"] - 1)
    rows = [r for r in rows if r.get("kind") == kind and isinstance(r.get(key), (int, float))]
    if not rows:
        return None
    by_model: dict[str, list[dict]] = {}
    for r in rows:
        by_model.setdefault(str(r.get("model", "")), []).append(r)
    xkey = "epoch" if all("epoch" in r for r in rows) else "step"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    values = [r[key] for r in rows] + list((paper or {}).values())
    for i, (model, rs) in enumerate(by_model.items()):
        xs = [r["epoch"] if xkey == "epoch" else r["step"] - start.get(model, 0) for r in rs]
        ax.plot(xs, [r[key] for r in rs], marker="o", ms=3, color=f"C{i}", label=model or key)
        if paper and model in paper:
            ax.axhline(paper[model], color=f"C{i}", ls="--", lw=1, label=f"{model}: paper {paper[model]:g}")
    if _spans_decades(values):
        ax.set_yscale("log")
    ax.set_xlabel("epoch" if xkey == "epoch" else "optimizer step of the model")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel + (" (log scale)" if _spans_decades(values) else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{title}: {ylabel} during training", fontsize=10)
    out = Path(run_dir) / f"{name}.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
