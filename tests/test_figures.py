"""The runner's figures: heatmaps on one colour scale (log for MSEs across decades), CL3 bars, loss curves from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import pytest  # noqa: E402

from hyperdnn.experiments import figures  # noqa: E402

RESULTS = {
    "metric": "test accuracy (%)",
    "hnet": {"matrix": [[99.9], [99.8, 97.0], [99.7, 96.5, 98.0]], "final": [99.7, 96.5, 98.0],
             "cl3": {"per_task": [90.0, 60.0, 70.0], "task_inference_per_task": [91.0, 61.0, 71.0]}},
    "baseline": {"matrix": [[99.9], [60.0, 97.0], [55.0, 40.0, 98.0]], "final": [55.0, 40.0, 98.0]},
    "paper": {"final": 99.79, "cl3": 69.48},
}


def test_continual_figures_share_one_scale_and_draw_the_paper_only_when_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple] = []
    real = figures.accuracy_heatmaps

    def spy(run_dir, title, matrices, metric, regression, paper_final=None, name="accuracy_matrix"):
        seen.append((metric, regression, paper_final))
        return real(run_dir, title, matrices, metric, regression, paper_final, name)

    monkeypatch.setattr(figures, "accuracy_heatmaps", spy)
    out = figures.continual_figures(tmp_path, "split-mnist", RESULTS, published=True)
    assert [p.name for p in out] == ["accuracy_matrix.png", "cl3.png"]
    assert seen[-1] == ("test accuracy (%)", False, 99.79)
    figures.continual_figures(tmp_path, "split-mnist", RESULTS, published=False)
    assert seen[-1][2] is None  # not the paper's settings: no paper number drawn
    for p in out:
        assert mpimg.imread(p).shape[2] in (3, 4)


def test_heatmap_of_mses_across_decades_is_log_scaled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.colors import LogNorm, Normalize

    norms: list = []
    import matplotlib.axes

    real_imshow = matplotlib.axes.Axes.imshow
    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", lambda self, *a, **k: norms.append(k["norm"]) or real_imshow(self, *a, **k))
    figures.accuracy_heatmaps(tmp_path, "toy", {"hnet": [[0.004], [0.5, 0.3]], "baseline": [[0.002], [21.8, 0.03]]}, "test MSE", regression=True)
    assert len(norms) == 2 and norms[0] is norms[1] and isinstance(norms[0], LogNorm)  # one scale for both panels
    assert norms[0].vmin == pytest.approx(0.002) and norms[0].vmax == pytest.approx(21.8)
    norms.clear()
    figures.accuracy_heatmaps(tmp_path, "toy", {"hnet": [[0.4], [0.5, 0.3]]}, "test MSE", regression=True)
    assert type(norms[0]) is Normalize


def test_loss_curves_from_metrics_jsonl(tmp_path: Path) -> None:
    rows = [{"step": i, "loss": 10.0 ** (-i / 10), "task": f"{i // 20 + 1}/2", "phase": "hnet" if i < 40 else "baseline"} for i in range(1, 80)]
    rows.insert(5, {"step": 5, "kind": "eval", "metric": [1.0]})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = figures.loss_curves(tmp_path, "toy")
    assert out == tmp_path / "loss.png" and mpimg.imread(out).shape[1] > 600  # two panels side by side
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "kind": "eval"}\n')
    assert figures.loss_curves(tmp_path, "toy") is None


def test_eval_curves_count_each_models_steps_from_its_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    rows = [{"step": s, "loss": 1.0, "model": m} for m, steps in (("a", range(1, 11)), ("b", range(11, 21))) for s in steps]
    rows += [{"step": 15, "kind": "eval", "model": "b", "valid_bpc": 2.0}, {"step": 5, "kind": "eval", "model": "a", "valid_bpc": 3.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines: list = []
    hlines: list = []
    real_plot, real_axhline = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, x, y, *a, **k: lines.append((list(x), list(y))) or real_plot(self, x, y, *a, **k))
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", lambda self, y, *a, **k: hlines.append(y) or real_axhline(self, y, *a, **k))
    assert figures.eval_curves(tmp_path, "lm", "eval", "valid_bpc", "validation bits per character") == tmp_path / "evaluation.png"
    assert lines == [([5], [2.0]), ([5], [3.0])] and hlines == []  # b's step 15 is its 5th step
    lines.clear()
    figures.eval_curves(tmp_path, "lm", "eval", "valid_bpc", "bpc", paper={"a": 1.3})
    assert hlines == [1.3]
    assert figures.eval_curves(tmp_path, "lm", "epoch", "test_error", "test error (%)") is None
