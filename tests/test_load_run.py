"""load_run: a run directory gives back its trained models, which reproduce the run's own results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hyperdnn.errors import ConfigError
from hyperdnn.experiments import load_run
from hyperdnn.experiments.recipes import get_recipe
from hyperdnn.experiments.runs import run_recipe

DATA = os.environ.get("HYPERDNN_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_mnist = pytest.mark.skipif(not (Path(DATA) / "mnist").is_dir(), reason=f"MNIST not found under {DATA}")
needs_kjv = pytest.mark.skipif(not (Path(DATA) / "kjv").is_dir(), reason=f"KJV corpus not found under {DATA}")
KW = dict(show_progress=False, print_tables=False, threads=1, checkpoint_every=0)


def test_toy_regression_model_reproduces_the_results(tmp_path: Path) -> None:
    from hyperdnn.data.continual_tasks import toy_regression

    r = get_recipe("toy-regression")
    cfg = r.config(steps=30)
    res = run_recipe(r, cfg, out_dir=tmp_path, **KW)
    run = load_run(res.run_dir)
    assert run.recipe == "toy-regression" and run.config == cfg and run.step == 180 and not run.model.training
    tasks = toy_regression(cfg.num_train, cfg.num_test, cfg.noise_std, cfg.data_seed)
    with torch.no_grad():
        got = [F.mse_loss(run.model(t.inputs(t.test_x), task=k), t.test_y).item() for k, t in enumerate(tasks)]
        base = [F.mse_loss(run.models["baseline"](t.inputs(t.test_x)), t.test_y).item() for t in tasks]
    assert got == pytest.approx(res.results["hnet"]["final"], rel=1e-6)
    assert base == pytest.approx(res.results["baseline"]["final"], rel=1e-6)


@needs_mnist
@pytest.mark.parametrize("name, config", [
    ("split-mnist", dict(steps=3, tasks=2, target_hidden=(16,), chunk_size=500)),
    ("permuted-mnist", dict(steps=2, tasks=2, target_hidden=(16,), chunk_size=500, cl3=False)),
    ("ha-mnist", dict(epochs=1, train_subset=200)),
    ("seq-mnist", dict(epochs=1, train_subset=64, batch_size=32, hidden=8, hyper_size=4)),
])
def test_every_mnist_recipe_loads(name: str, config: dict, tmp_path: Path) -> None:
    r = get_recipe(name)
    res = run_recipe(r, r.config(**config), data_dir=DATA, out_dir=tmp_path, **KW)
    run = load_run(res.run_dir)
    if name == "ha-mnist":
        from hyperdnn.data.mnist import load_mnist
        from hyperdnn.experiments.recipes.ha_mnist import test_error
        from hyperdnn.experiments.recipes._classifiers import MNIST_MEAN, MNIST_STD

        m = load_mnist(DATA)
        x = ((m.test_images.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
        for k in ("normal", "hyper"):
            assert test_error(run.models[f"model_{k}"], x, m.test_labels) == res.results["models"][k]["test_error_pct"]
        with pytest.raises(ConfigError, match="trained several models"):
            run.model
    else:
        assert run.models


@needs_kjv
def test_char_lm_loads(tmp_path: Path) -> None:
    r = get_recipe("char-lm")
    res = run_recipe(r, r.config(steps=2, hidden=8, hyper_size=4, seq_len=10, batch_size=4, eval_every=0, models=("lstm",)), data_dir=DATA, out_dir=tmp_path, **KW)
    assert set(load_run(res.run_dir).models) == {"model_lstm"}
