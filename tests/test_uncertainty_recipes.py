"""Short runs of the uncertainty recipes' logic (uncertainty-toy, uncertainty-mnist): tables, figures, numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hyperdnn.errors import ConfigError
from hyperdnn.methods.uncertainty.recipe_mnist import MnistConfig, rotate
from hyperdnn.methods.uncertainty.recipe_mnist import run as run_mnist
from hyperdnn.methods.uncertainty.recipe_toy import ToyConfig
from hyperdnn.methods.uncertainty.recipe_toy import run as run_toy
from hyperdnn.methods.uncertainty.report import FolderReport

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(
    not any((DATA / d / "t10k-labels-idx1-ubyte.gz").exists() or (DATA / d / "t10k-labels-idx1-ubyte").exists()
            for d in (".", "mnist")),
    reason="MNIST files not found (set HYPERDNN_DATA)",
)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_toy_short_run_writes_the_figure_and_a_row_per_model(tmp_path, one_thread) -> None:
    res = run_toy(ToyConfig(steps=20, samples=4, eval_samples=8), FolderReport(tmp_path, echo=False))
    assert set(res) == {"hypernetwork, HyperGAN", "hypernetwork, f-SVGD", "hypernetwork, no diversity term",
                        "deep ensemble of 5", "MC dropout"}
    assert (tmp_path / "toy_predictive.png").stat().st_size > 10_000
    assert "std in gap" in (tmp_path / "results.md").read_text()
    again = run_toy(ToyConfig(steps=20, samples=4, eval_samples=8), FolderReport(tmp_path / "b", echo=False))
    assert json.dumps(res, sort_keys=True) == json.dumps(again, sort_keys=True)  # seeded: repeatable
    with pytest.raises(ConfigError, match="gap must be in"):
        ToyConfig(gap=5.0)


def test_rotation_by_90_degrees_equals_a_transpose_flip() -> None:
    img = torch.rand(3, 28, 28)
    assert torch.allclose(rotate(img, 90), torch.rot90(img, 1, dims=(1, 2)), atol=1e-5)
    assert torch.equal(rotate(img, 0), img)


@needs_mnist
def test_mnist_short_run_writes_tables_figures_and_the_verdict(tmp_path, one_thread) -> None:
    cfg = MnistConfig(epochs=1, train_subset=512, test_subset=200, angle_step=90, samples=2, eval_samples=4)
    res = run_mnist(cfg, FolderReport(tmp_path, echo=False), data_dir=DATA)
    assert len(res) == 6
    text = (tmp_path / "results.md").read_text()
    assert "does the hypernetwork match" in text and "AUROC entropy" in text
    for name in ("mnist_shift.png", "mnist_reliability.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    ens, hn = res["deep ensemble of 5"], res["hypernetwork, HyperGAN"]
    assert hn["params"] < ens["params"]
    assert set(ens["shift"]) == {"0", "90", "180"}
