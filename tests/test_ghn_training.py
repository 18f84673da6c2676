"""GHN-2's meta-batch training (GHNTraining) against a hand-written loop, the architecture samplers,
and short runs of the ghn-mnist recipe (tables, figure, exact resume)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.experiments.recipes import get_recipe
from hyperdnn.experiments.runs import run_recipe
from hyperdnn.methods.graph import GraphHyperNetwork, LowRankDecoder, graph_of
from hyperdnn.methods.graph.meta_batch import GHNTraining
from hyperdnn.methods.graph.samplers import CharGPTArch, CharGPTSpace, MnistArch, MnistArchSpace

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(
    not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()),
    reason=f"MNIST not found under {DATA}",
)


def small_ghn() -> GraphHyperNetwork:
    torch.manual_seed(0)
    return GraphHyperNetwork(LowRankDecoder(16, rank=2, block=8, hidden=16), dim=16, s_max=4)


def test_meta_batch_step_equals_a_hand_written_loop():
    archs = [MnistArch("mlp", 2, 12, norm="ln", skip=True), MnistArch("cnn", 1, 8, kernel=3, norm="bn")]
    models = [a.build() for a in archs]
    x, y = torch.randn(6, 1, 28, 28), torch.randint(10, (6,))
    ghn = small_ghn()
    ref = copy.deepcopy(ghn)
    method = GHNTraining(ghn, torch.optim.Adam(ghn.parameters(), lr=1e-2), clip=0.5)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for _ in range(2):
        out = method.step(models, x, y)
        # By hand: each model run with its predicted (formed) weights, mean loss, clipped, Adam.
        losses = []
        for m in models:
            theta = {n: (w.dense() if hasattr(w, "dense") else w) for n, w in ref(m).items()}
            losses.append(F.cross_entropy(torch.func.functional_call(m, theta, (x,), strict=False), y))
        loss = torch.stack(losses).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
        assert out.loss == pytest.approx(float(loss.detach()), rel=1e-5)
        assert out.losses == pytest.approx([float(v.detach()) for v in losses], rel=1e-5)
    for (n, p), q in zip(ghn.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, msg=n)
    assert method.state_dict() == {"steps": 2}


def test_evaluate_uses_batch_statistics_and_restores_the_mode():
    ghn = small_ghn()
    method = GHNTraining(ghn, torch.optim.SGD(ghn.parameters(), lr=0.1))
    model = MnistArch("cnn", 2, 8, norm="bn").build()
    x, y = torch.randn(20, 1, 28, 28), torch.randint(10, (20,))
    ghn.train()
    (acc,) = method.evaluate([model], x, y, batch=7)
    assert ghn.training
    # By hand: predicted weights in a copy whose batch norms use the batch statistics, batches of 7.
    with torch.no_grad():
        ghn.eval()
        theta = {n: (w.dense() if hasattr(w, "dense") else w) for n, w in ghn(model).items()}
        ghn.train()
        m = copy.deepcopy(model).eval()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.train()
        m.load_state_dict({**m.state_dict(), **theta})
        correct = sum(int((m(x[i:i + 7]).argmax(1) == y[i:i + 7]).sum()) for i in range(0, 20, 7))
    assert acc == pytest.approx(100.0 * correct / 20)
    # The user's model is untouched (its own running statistics and weights).
    assert torch.equal(model.stem_norm.running_mean, torch.zeros(8))


def test_training_misuse():
    with pytest.raises(HDTypeError, match="must be a GraphHyperNetwork"):
        GHNTraining(nn.Linear(2, 2), None)
    ghn = small_ghn()
    with pytest.raises(ConfigError, match="clip must be >= 0"):
        GHNTraining(ghn, torch.optim.SGD(ghn.parameters(), lr=0.1), clip=-1)
    with pytest.raises(ConfigError, match="meta-batch is empty"):
        GHNTraining(ghn, torch.optim.SGD(ghn.parameters(), lr=0.1)).step([], torch.zeros(1), torch.zeros(1))


def test_samplers_draw_traceable_models_inside_their_space():
    gen = torch.Generator().manual_seed(0)
    space = MnistArchSpace()
    seen = set()
    for _ in range(12):
        arch = space.sample(gen)
        assert space.contains(arch)
        model = arch.build()
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
        assert sorted(graph_of(model).param_names()) == sorted(n for n, _ in model.named_parameters())
        seen.add(arch.family)
    assert seen == {"mlp", "cnn", "resnet"}
    held = MnistArch("resnet", 6, 64)
    assert not space.contains(held)
    with pytest.raises(ConfigError, match="odd kernel"):
        MnistArch("cnn", 1, 8, kernel=4)
    gpt = CharGPTSpace(vocab=30).sample(gen)
    m = gpt.build()
    assert m(torch.randint(30, (2, 9))).shape == (2, 9, 30)
    assert sorted(graph_of(m).param_names()) == sorted(n for n, _ in m.named_parameters())
    with pytest.raises(ConfigError, match="divisible by heads"):
        CharGPTArch(1, 10, 3, 30)


TINY = dict(steps=4, meta_batch=2, batch_size=16, train_subset=256, test_subset=100, held_out=2, finetune_steps=4,
            eval_every=2, tiled_block=(8, 8, 3, 3), dim=16, rank=2, block=8, hidden=16, s_max=5)
KW = dict(show_progress=False, print_tables=False, checkpoint_every=0, threads=1)


def _timeless(results: dict) -> str:
    return json.dumps({k: v for k, v in results.items() if "seconds" not in k}, sort_keys=True)


@needs_mnist
def test_ghn_mnist_short(tmp_path: Path) -> None:
    r = get_recipe("ghn-mnist")
    res = run_recipe(r, r.config(**TINY), data_dir=DATA, out_dir=tmp_path, **KW)
    out = res.results
    assert (res.run_dir / "finetune_curves.png").stat().st_size > 10_000
    assert set(out["step0_accuracy"]) == {"held-out", "training space"}
    assert set(out["finetune_curves"]) == {"default init", "lowrank", "tiled"}
    assert out["finetune_points"] == [0, 2, 4]
    assert all(len(c) == 3 for runs in out["finetune_curves"].values() for c in runs)
    # Step 0 of the curve is the no-training accuracy of (a).
    for s in ("default init", "lowrank", "tiled"):
        assert [c[0] for c in out["finetune_curves"][s]] == out["step0_accuracy"]["held-out"][s]
    assert out["decoder_params"]["lowrank"] < out["decoder_params"]["tiled"]
    for a in out["held_out"]:
        assert "-d6-" in a or "-d8-" in a


@needs_mnist
def test_ghn_mnist_resumes_exactly(tmp_path: Path, interrupted_run) -> None:
    r = get_recipe("ghn-mnist")
    cfg = dict(TINY, finetune_steps=0, held_out=1)
    ref = run_recipe(r, r.config(**cfg), out_dir=tmp_path / "ref", data_dir=DATA, **KW)
    # step 6: inside the second GHN's training
    run_dir = interrupted_run(r, r.config(**cfg), 6, out_dir=tmp_path / "cut", data_dir=DATA, **KW)
    resumed = run_recipe(r, resume=run_dir, show_progress=False, print_tables=False)
    assert _timeless(resumed.results) == _timeless(ref.results)
    assert (run_dir / "metrics.jsonl").read_text() == (ref.run_dir / "metrics.jsonl").read_text()


def test_ghn_mnist_config_checks() -> None:
    r = get_recipe("ghn-mnist")
    with pytest.raises(ConfigError, match="held-out depths .* must exceed the training space"):
        r.config(held_depths=(3, 6))
    with pytest.raises(ConfigError, match="tiled_block must have 4 sizes"):
        r.config(tiled_block=(8, 8))


def test_ghn_charlm_short_on_a_small_corpus(tmp_path: Path) -> None:
    text = tmp_path / "tiny.txt"
    text.write_text("in the beginning was the word, and the word was with god. " * 40)
    r = get_recipe("ghn-charlm")
    cfg = dict(corpus=str(text), steps=2, meta_batch=2, batch_size=4, context=16, held_out=1, finetune_steps=2,
               eval_every=1, eval_windows=4, dim=8, rank=2, block=8, hidden=8, tiled_block=(8, 8, 1, 1))
    res = run_recipe(r, r.config(**cfg), out_dir=tmp_path / "runs", **KW)
    out = res.results
    assert (res.run_dir / "finetune_curves.png").is_file()
    assert out["finetune_points"] == [0, 1, 2]
    assert set(out["finetune_curves"]) == {"default init", "lowrank", "tiled"}
    # Bits per character of any model on this text: finite and below log2(vocab) + a margin at init.
    for curves in out["finetune_curves"].values():
        assert all(0 < v < 10 for v in curves[0])
    with pytest.raises(ConfigError, match="held-out layers .* must exceed"):
        r.config(held_layers=(2, 3))


def test_ghn_charlm_finds_the_corpus_without_a_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --data-dir: the corpus is looked for under $HYPERDNN_DATA (a TypeError on None before)."""
    from hyperdnn.errors import DataError
    from hyperdnn.experiments.recipes.ghn_charlm import Config, _corpus_path

    class Ctx:
        data_dir = None

    (tmp_path / "kjv").mkdir()
    (tmp_path / "kjv" / "kjv.txt").write_text("In the beginning")
    monkeypatch.setenv("HYPERDNN_DATA", str(tmp_path))
    assert _corpus_path(Config(), Ctx()) == tmp_path / "kjv" / "kjv.txt"
    monkeypatch.setenv("HYPERDNN_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="from HYPERDNN_DATA"):
        _corpus_path(Config(), Ctx())
