"""Short runs of the recipes uncertainty-toy and uncertainty-mnist: tables, figures, numbers, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import get_recipe
from hyperdnn.experiments.recipes.uncertainty_mnist import rotate
from hyperdnn.experiments.runs import run_recipe

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(
    not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()),
    reason=f"MNIST not found under {DATA}",
)
KW = dict(show_progress=False, print_tables=False, checkpoint_every=0, threads=1, seed=3)
TOY = dict(steps=20, samples=4, eval_samples=8)
MNIST = dict(epochs=1, train_subset=512, test_subset=200, angle_step=90, samples=2, eval_samples=4)


def test_toy_short_run_writes_the_figure_and_a_row_per_model(tmp_path: Path) -> None:
    r = get_recipe("uncertainty-toy")
    res = run_recipe(r, r.config(**TOY), out_dir=tmp_path / "a", **KW)
    assert set(res.results) == {"hypernetwork, HyperGAN", "hypernetwork, f-SVGD", "hypernetwork, no diversity term",
                                "deep ensemble of 5", "MC dropout"}
    assert (res.run_dir / "toy_predictive.png").stat().st_size > 10_000
    assert "std in gap" in (res.run_dir / "results.md").read_text()
    again = run_recipe(r, r.config(**TOY), out_dir=tmp_path / "b", **KW)
    assert json.dumps(res.results, sort_keys=True) == json.dumps(again.results, sort_keys=True)  # seeded: repeatable
    with pytest.raises(ConfigError, match="gap must be in"):
        r.config(gap=5.0)


def test_rotation_by_90_degrees_equals_a_transpose_flip() -> None:
    img = torch.rand(3, 28, 28)
    assert torch.allclose(rotate(img, 90), torch.rot90(img, 1, dims=(1, 2)), atol=1e-5)
    assert torch.equal(rotate(img, 0), img)


@needs_mnist
def test_mnist_short_run_writes_tables_figures_and_the_verdict(tmp_path: Path) -> None:
    r = get_recipe("uncertainty-mnist")
    res = run_recipe(r, r.config(**MNIST), data_dir=DATA, out_dir=tmp_path, **KW)
    assert len(res.results) == 6
    text = (res.run_dir / "results.md").read_text()
    assert "does the hypernetwork match" in text and "AUROC entropy" in text
    for name in ("mnist_shift.png", "mnist_reliability.png"):
        assert (res.run_dir / name).stat().st_size > 10_000
    ens, hn = res.results["deep ensemble of 5"], res.results["hypernetwork, HyperGAN"]
    assert hn["params"] < ens["params"]
    assert set(ens["shift"]) == {"0", "90", "180"}


@pytest.mark.parametrize("name, config, stop_at", [("uncertainty-toy", TOY, 47), ("uncertainty-mnist", MNIST, 9)])
def test_interrupted_and_resumed_equals_uninterrupted(name: str, config: dict, stop_at: int, tmp_path: Path,
                                                      interrupted_run) -> None:
    if name == "uncertainty-mnist" and not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()):
        pytest.skip(f"MNIST not found under {DATA}")
    r = get_recipe(name)
    kw = dict(KW, data_dir=DATA)
    ref = run_recipe(r, r.config(**config), out_dir=tmp_path / "ref", **kw)
    run_dir = interrupted_run(r, r.config(**config), stop_at, out_dir=tmp_path / "cut", **kw)
    resumed = run_recipe(r, resume=run_dir, show_progress=False, print_tables=False)
    assert json.dumps(resumed.results, sort_keys=True) == json.dumps(ref.results, sort_keys=True)
    assert (run_dir / "metrics.jsonl").read_text() == (ref.run_dir / "metrics.jsonl").read_text()
