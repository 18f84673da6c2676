"""Short end-to-end runs of the Ha et al. recipes (ha-mnist, seq-mnist) and the config checks of all three."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.experiments.recipes import get_recipe
from hyperdnn.experiments.runs import run_recipe

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(
    not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()),
    reason=f"MNIST not found under {DATA}",
)


def run(name: str, tmp_path: Path, **config) -> tuple[Path, dict]:
    r = get_recipe(name)
    res = run_recipe(r, r.config(**config), data_dir=DATA, out_dir=tmp_path, show_progress=False,
                     print_tables=False, checkpoint_every=0, threads=1)
    for f in ("config.json", "metrics.jsonl", "results.json", "results.md", "LATEST"):
        assert (res.run_dir / f).is_file(), f
    json.loads((res.run_dir / "results.json").read_text())
    return res.run_dir, res.results


@needs_mnist
def test_ha_mnist_short(tmp_path: Path) -> None:
    run_dir, res = run("ha-mnist", tmp_path, epochs=1, batch_size=50, train_subset=200)
    normal, hyper = res["models"]["normal"], res["models"]["hyper"]
    # the paper's counts: 12,544 kernel weights vs 4,240 generator parameters + a 4-number embedding
    assert normal["kernel_params"] == 16 * 16 * 7 * 7 == 12544
    assert hyper["kernel_params"] == 4244
    assert normal["trainable_params"] - hyper["trainable_params"] == 12544 - 4244
    for r in (normal, hyper):
        assert 0 <= r["test_error_pct"] < 90  # 4 steps: better than chance on 10 classes
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for e in epochs if e.get("kind") == "epoch") == 2  # one epoch per model, 4 steps each


@needs_mnist
def test_seq_mnist_short(tmp_path: Path) -> None:
    from hyperdnn.experiments.recipes.seq_mnist import matched_lstm_hidden

    _, res = run("seq-mnist", tmp_path, epochs=1, batch_size=32, train_subset=64, hidden=16, hyper_size=8)
    models = res["models"]
    assert set(models) == {"hyper-lstm", "lstm", "lstm-matched"}
    assert models["hyper-lstm"]["hidden"] == models["lstm"]["hidden"] == 16
    h = matched_lstm_hidden(models["hyper-lstm"]["params"])
    assert models["lstm-matched"]["hidden"] == h
    # closest parameter count of nn.LSTM(28, H) + Linear(H, 10)
    for other in (h - 1, h + 1):
        n = 4 * other * (28 + other + 2) + 10 * other + 10
        assert abs(n - models["hyper-lstm"]["params"]) >= abs(models["lstm-matched"]["params"] - models["hyper-lstm"]["params"])
    for r in models.values():
        assert 0.0 <= r["test_acc"] <= 1.0


@needs_mnist
@pytest.mark.parametrize(
    "name, config, stop_at",
    [
        # ha-mnist: 6 steps an epoch, stops in the second model's first epoch; seq-mnist: 3 steps an epoch, stops in the first model's first
        ("ha-mnist", dict(epochs=2, batch_size=50, train_subset=300), 17),
        ("seq-mnist", dict(epochs=2, batch_size=32, train_subset=96, hidden=16, hyper_size=8, models=("hyper-lstm", "lstm")), 2),
    ],
)
def test_interrupted_and_resumed_equals_uninterrupted(name: str, config: dict, stop_at: int, tmp_path: Path, interrupted_run) -> None:
    from safetensors.torch import load_file

    from hyperdnn.experiments.runs import latest_checkpoint

    r = get_recipe(name)
    kw = dict(data_dir=DATA, show_progress=False, print_tables=False, checkpoint_every=0, threads=1, seed=5)
    ref = run_recipe(r, r.config(**config), out_dir=tmp_path / "ref", **kw)
    run_dir = interrupted_run(r, r.config(**config), stop_at, out_dir=tmp_path / "cut", **kw)
    resumed = run_recipe(r, resume=run_dir, show_progress=False, print_tables=False)

    assert resumed.results["models"] == ref.results["models"]
    assert (run_dir / "metrics.jsonl").read_text() == (ref.run_dir / "metrics.jsonl").read_text()
    got, want = (load_file(str(latest_checkpoint(d) / "tensors.safetensors")) for d in (run_dir, ref.run_dir))
    assert got.keys() == want.keys() and any(k.startswith("obj.model_") for k in want)
    for k in want:
        if k.startswith("obj.model_"):
            assert torch.equal(got[k], want[k]), k


@needs_mnist
@pytest.mark.parametrize("name", ["ha-mnist", "seq-mnist"])
def test_train_subset_larger_than_the_data(name: str, tmp_path: Path) -> None:
    r = get_recipe(name)
    with pytest.raises(ConfigError, match="train_subset=70000"):
        run_recipe(r, r.config(train_subset=70000), data_dir=DATA, out_dir=tmp_path, show_progress=False,
                   print_tables=False, checkpoint_every=0, threads=1)


@pytest.mark.parametrize("name", ["ha-mnist", "seq-mnist"])
@pytest.mark.parametrize(
    "bad, match",
    [
        ({"train_subset": 10}, "train_subset must be 0 .* >= batch_size=.* \\(got 10\\)"),
        ({"train_subset": -500}, "train_subset .* \\(got -500\\)"),
        ({"batch_size": 0}, "batch_size must be > 0 \\(got 0\\)"),
        ({"epochs": 0}, "epochs must be > 0 \\(got 0\\)"),
        ({"lr": -1e-3}, "lr must be > 0 \\(got -0.001\\)"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"models": ("nope",)}, "unknown model 'nope'"),
        ({"models": ()}, "models must name at least one"),
    ],
)
def test_mnist_recipe_config_errors(name: str, bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}: {match}"):
        get_recipe(name).config(**bad)


@pytest.mark.parametrize("name", ["ha-mnist", "seq-mnist", "char-lm"])
def test_config_type_errors(name: str) -> None:
    cfg = get_recipe(name).config
    with pytest.raises(HDTypeError, match=f"{name}: batch_size must be an int"):
        cfg(batch_size=True)
    with pytest.raises(HDTypeError, match=f"{name}: batch_size must be an int"):
        cfg(batch_size=12.5)
    with pytest.raises(HDTypeError, match=f"{name}: lr must be a number"):
        cfg(lr="0.1")
    cfg()  # the published defaults are valid


@pytest.mark.parametrize(
    "field", ["steps", "seq_len", "batch_size", "eval_batch", "clip", "lr", "hidden", "embed_dim"]
)
@pytest.mark.parametrize("value", [0, -3])
def test_char_lm_config_errors(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"char-lm: {field} must be > 0 \\(got {value}\\)"):
        get_recipe("char-lm").config(**{field: value})


def test_char_lm_config_other_errors() -> None:
    cfg = get_recipe("char-lm").config
    with pytest.raises(ConfigError, match="char-lm: eval_every must be >= 0"):
        cfg(eval_every=-1)
    with pytest.raises(ConfigError, match="char-lm: unknown model 'gru'"):
        cfg(models=("lstm", "gru"))
