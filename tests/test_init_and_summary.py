"""Hyperfan-in init gives generated weights the target's own scale; summary counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyperdnn as hd

OUTPUTS = {
    "once": hd.GenerateOnce(),
    "multihead": hd.MultiHead(),
    "chunk": hd.ChunkWise(chunk_size=1000, chunk_dim=8),
    "component": hd.ComponentWise(tile=(16, 16), embedding_dim=8),
    "lowrank": hd.LowRank(rank=8),
}


@pytest.mark.parametrize("body", [hd.MLP((64, 64)), hd.RNN(32), hd.Attention(32, 4, 1)], ids=["mlp", "rnn", "attention"])
@pytest.mark.parametrize("out", list(OUTPUTS))
def test_generated_weights_start_at_the_targets_scale(out: str, body) -> None:
    torch.manual_seed(0)
    target = nn.Linear(256, 64)
    model = hd.HyperDNN(target, inputs=hd.TaskEmbedding(4, 8), outputs=OUTPUTS[out], body=body, generate="weight")
    want = target.weight.std().item()  # kaiming-uniform: 1 / sqrt(3 * 256)
    for task in range(4):
        got = model.weights(task=task)["weight"].std().item()
        assert 0.5 * want < got < 2.0 * want, (task, got, want)


def test_layer_norm_scale_starts_near_one() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(nn.LayerNorm(32), inputs=hd.TaskEmbedding(2, 4), outputs=hd.MultiHead())
    w = model.weights(task=0)["weight"]
    assert (w - 1).abs().max() < 1e-4


def test_summary_counts_and_compression_ratio() -> None:
    target = nn.Sequential(nn.Linear(10, 20), nn.LayerNorm(20), nn.Linear(20, 5))
    model = hd.HyperDNN(target, inputs=hd.TaskEmbedding(3, 4), outputs=hd.ChunkWise(64, 8), body=hd.MLP((16,)),
                        generate=nn.Linear, freeze="1.bias")
    s = model.summary()
    assert s.generated == 10 * 20 + 20 + 20 * 5 + 5
    assert s.own == 20 and s.frozen == 20
    n_chunks = -(-s.generated // 64)
    hyper = 3 * 4 + n_chunks * 8 + (12 * 16 + 16) + (16 * 64 + 64)
    assert s.hypernetwork == hyper
    assert s.compression_ratio == pytest.approx(hyper / s.generated)
    text = str(s)
    assert "compression ratio" in text and "generated" in text and "frozen" in text
    assert [r[2] for r in s.rows] == ["generated", "generated", "own", "frozen", "generated", "generated"]


def test_ha_component_wise_parameter_count() -> None:
    """Ha et al.'s MNIST kernel: 7x7x16x16 from one tile embedding of 4 by 4,240 generator weights."""
    model = hd.HyperDNN(nn.Conv2d(16, 16, 7), outputs=hd.ComponentWise(tile=(16, 16), embedding_dim=4),
                        body=hd.MLP(hidden=()), generate="weight")
    s = model.summary()
    assert s.generated == 12544
    assert s.hypernetwork == 4244


def test_component_wise_tiles_non_square_and_ragged_channels() -> None:
    torch.manual_seed(0)
    target = nn.Conv2d(20, 40, 3)
    model = hd.HyperDNN(target, outputs=hd.ComponentWise(tile=(16, 16), embedding_dim=4), body=hd.MLP(hidden=()))
    out = model.hypernetwork.outputs
    theta = model.weights()
    assert theta["weight"].shape == (40, 20, 3, 3)
    assert out.num_tiles == 3 * 2 + 3  # 3x2 kernel tiles (40/16 -> 3, 20/16 -> 2) + 3 bias tiles
    # The tile at output block 1, input block 0 is made from its own embedding by W_in then W_out.
    key = "16x16x3x3"
    e = out.tile_embeddings[2 * 1 + 0]
    a = out.w_in[key](e).view(16, 4)
    tile = out.w_out[key](a).view(16, 16, 3, 3).transpose(0, 1)
    torch.testing.assert_close(theta["weight"][16:32, 0:16], tile)


@pytest.mark.parametrize("scheme,fan", [("hyperfan-in", 48 * 9), ("hyperfan-out", 24 * 9)])
def test_hyperfan_schemes_give_one_over_fan(scheme: str, fan: int) -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(nn.Conv2d(48, 24, 3), inputs=hd.TaskEmbedding(3, 8), outputs=hd.ChunkWise(2000, 8),
                        body=hd.MLP((64, 64)), generate="weight", init=scheme)
    got = model.weights(task=0)["weight"].std().item()
    want = fan ** -0.5
    assert 0.7 * want < got < 1.4 * want
    with pytest.raises(hd.ConfigError, match="init must be 'target', 'hyperfan-in' or 'hyperfan-out'"):
        hd.HyperDNN(nn.Linear(3, 3), inputs=hd.TaskEmbedding(2, 2), init="xavier")
