"""Dependency-preserving (RNN) hypernetworks (Chandra et al. 2023): the generated weights against a
hand-written LSTM loop, the dependency of later chunks on earlier ones (absent in the chunked MLP),
the frozen recurrent weights under ContinualLearning, and a short run of the dphn recipe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.methods.continual import ContinualLearning, dependency_preserving_hnet, flat_weights, freeze_recurrent_, recurrent_parameters

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()), reason=f"MNIST not found under {DATA}")


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: these small networks only slow down with more, and other work shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def target() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))  # 92 weights


def flat(model: hd.HyperDNN, task: int) -> torch.Tensor:
    return flat_weights(model.weights(task=task), [p.name for p in model.spec.params])


def test_generated_weights_equal_a_hand_written_lstm_over_the_chunks() -> None:
    torch.manual_seed(0)
    model = dependency_preserving_hnet(target(), 3, emb_dim=5, chunk_size=10, chunk_dim=4, hidden=7)
    out = model.hypernetwork.outputs
    lstm = out.body.rnn
    cell = nn.LSTMCell(9, 7)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, f"{name}_l0"))
    e_task = model.hypernetwork.inputs.table.weight[2]
    h = c = torch.zeros(1, 7)
    chunks = []
    for e_c in out.chunk_embeddings:  # in chunk order, the state carried over
        h, c = cell(torch.cat([e_task, e_c]).unsqueeze(0), (h, c))
        chunks.append(out.head(h)[0])
    expected = torch.cat(chunks)[:92]
    assert out.chunk_embeddings.shape[0] == 10  # ceil(92 / 10)
    assert torch.allclose(flat(model, 2), expected, atol=1e-6)


def test_later_chunks_depend_on_earlier_ones_only_in_the_rnn_hypernetwork() -> None:
    torch.manual_seed(0)
    rnn = dependency_preserving_hnet(target(), 2, emb_dim=5, chunk_size=10, chunk_dim=4, hidden=7)
    mlp = hd.HyperDNN(target(), inputs=hd.TaskEmbedding(2, 5), outputs=hd.ChunkWise(10, 4), body=hd.MLP((7,)))
    for model, depends in ((rnn, True), (mlp, False)):
        before = flat(model, 0).detach().clone()
        with torch.no_grad():
            model.hypernetwork.outputs.chunk_embeddings[0] += 1.0  # change chunk 0's input only
        after = flat(model, 0).detach()
        assert not torch.allclose(before[:10], after[:10])  # chunk 0 itself moves in both
        assert (not torch.allclose(before[10:], after[10:])) == depends  # the later chunks move only with the RNN


def test_freeze_recurrent_keeps_hidden_to_hidden_weights_under_continual_learning() -> None:
    torch.manual_seed(0)
    model = dependency_preserving_hnet(target(), 2, emb_dim=5, chunk_size=10, chunk_dim=4, hidden=7)
    cl = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=1e-2), beta=0.1, metric="mse")
    x, y = torch.randn(32, 6), torch.randn(32, 4)
    cl.start_task(0)
    for _ in range(3):
        cl.step(F.mse_loss(cl.predict(x, 0), y))
    cl.end_task()
    lstm = model.hypernetwork.outputs.body.rnn
    hh, ih = lstm.weight_hh_l0.detach().clone(), lstm.weight_ih_l0.detach().clone()
    frozen = freeze_recurrent_(model)
    assert frozen == 4 * 7 * 7 + 4 * 7  # weight_hh_l0 and bias_hh_l0
    assert [p.shape for p in recurrent_parameters(model)] == [torch.Size([28, 7]), torch.Size([28])]
    cl.start_task(1)
    for _ in range(3):
        done = cl.step(F.mse_loss(cl.predict(x, 1), -y))
    assert done.reg.item() > 0  # the output regularizer still runs (with the look-ahead over the trainable part)
    assert torch.equal(lstm.weight_hh_l0, hh) and not torch.equal(lstm.weight_ih_l0, ih)


def test_recurrent_parameters_need_an_rnn_hypernetwork() -> None:
    mlp = hd.HyperDNN(target(), inputs=hd.TaskEmbedding(2, 5), outputs=hd.ChunkWise(10, 4), body=hd.MLP((7,)))
    with pytest.raises(ConfigError, match="has no RNN body"):
        freeze_recurrent_(mlp)
    with pytest.raises(HDTypeError, match="must be a hyperdnn.HyperDNN"):
        recurrent_parameters(target())  # type: ignore[arg-type]


@needs_mnist
def test_dphn_recipe_short_run(tmp_path: Path) -> None:
    from hyperdnn.experiments.recipes import get_recipe
    from hyperdnn.experiments.runs import run_recipe

    r = get_recipe("dphn")
    res = run_recipe(r, r.config(tasks=2, steps=4, models=("mlp", "rnn", "rnn-freeze")), data_dir=DATA, out_dir=tmp_path, show_progress=False,
                     print_tables=False, checkpoint_every=0, threads=1).results
    m = res["models"]
    assert set(m) == {"mlp", "rnn", "rnn-freeze"}
    for v in m.values():
        assert len(v["cl1"]) == 2 and all(0 <= a <= 100 for a in v["cl1"]) and 0 <= v["cl3_average"] <= 100
        assert 0.5 < v["compression_ratio"] < 1.5
    # rnn and rnn-freeze start from the same draws and differ only after task 1
    assert m["rnn"]["matrix"][0] == m["rnn-freeze"]["matrix"][0]
    assert m["rnn-freeze"]["hypernetwork_parameters"] < m["rnn"]["hypernetwork_parameters"]  # frozen weights are not trainable
    with pytest.raises(ConfigError, match="split-MNIST has at most 5 tasks"):
        r.config(tasks=6)
