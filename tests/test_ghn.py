"""The graph hypernetwork (GHN-2 / LoGAH): the gated GNN against ppuda's node-by-node loop, the
decoders against hand-written equivalents, predicted shapes for an unseen architecture."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.factored import Factored
from hyperdnn.methods.graph.gnn import schedule
from hyperdnn.methods.graph.normalize import fan_in_normalize as normalize
from hyperdnn.methods.graph import (
    GatedGNN,
    GraphHyperNetwork,
    GraphNode,
    LowRankDecoder,
    ModelGraph,
    TiledDecoder,
    block_codes,
    predict_into,
    run_with,
    tile_to,
    write_params,
)


def ppuda_loop(gnn: GatedGNN, h: torch.Tensor, n: int, edges: list[tuple[int, int, int]]) -> torch.Tensor:
    """ppuda's GatedGNN.forward for one graph, node by node (ghn/gatedgnn.py), written out."""
    h = h.clone()
    for _ in range(gnn.steps):
        for backward in (False, True):
            order = range(n - 1, -1, -1) if backward else range(n)
            for v in order:
                m = torch.zeros(h.shape[1])
                for s, d, k in edges:
                    src, dst = (d, s) if backward else (s, d)
                    if dst != v:
                        continue
                    if k == 1:
                        m = m + gnn.mlp(h[src])
                    if gnn.mlp_sp is not None:
                        m = m + gnn.mlp_sp(h[src]) / k
                h[v] = gnn.gru(m.unsqueeze(0), h[v].unsqueeze(0))[0]
    return h


@pytest.mark.parametrize("virtual", [False, True])
def test_level_parallel_sweeps_equal_the_node_by_node_loop(virtual):
    torch.manual_seed(0)
    nodes = tuple(GraphNode(str(i), "other") for i in range(7))
    g = ModelGraph(nodes, ((0, 1), (1, 2), (2, 3), (1, 3), (3, 5), (0, 4), (4, 5), (5, 6)))
    edges = g.virtual_edges(50 if virtual else 1)
    gnn = GatedGNN(8, virtual_edges=virtual, steps=2)
    h = torch.randn(7, 8)
    got = gnn(h, schedule(7, edges))
    torch.testing.assert_close(got, ppuda_loop(gnn, h, 7, edges))


def test_tile_to_against_a_loop():
    block = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    out = tile_to(block, (5, 2, 4))
    for i in range(5):
        for j in range(2):
            for k in range(4):
                assert out[i, j, k] == block[i % 2, j % 3, k % 2]


def test_tiled_decoder_is_ghn2s_block_sliced_and_tiled():
    torch.manual_seed(0)
    dec = TiledDecoder(8, block=(4, 3, 3, 3), hidden=16)
    e = torch.randn(8)
    block = dec.mlp(e).view(4, 3, 3, 3)
    torch.testing.assert_close(dec(e, (6, 5, 3, 3)), block.repeat(2, 2, 1, 1)[:6, :5])
    torch.testing.assert_close(dec(e, (3, 2, 1, 1)), block[:3, :2, :1, :1])
    torch.testing.assert_close(dec(e, (10, 7)), block[:, :, 0, 0].repeat(3, 3)[:10, :7])
    torch.testing.assert_close(dec(e, (9,)), dec.mlp_1d(e).repeat(3)[:9])


def test_low_rank_decoder_equals_its_dense_form():
    torch.manual_seed(0)
    dec = LowRankDecoder(8, rank=3, block=4, hidden=16)
    e = torch.randn(8)
    f = dec(e, (10, 2, 3, 3))
    assert isinstance(f, Factored) and f.a.shape == (10, 3) and f.b.shape == (18, 3)
    codes = block_codes(5, 8)
    a = torch.cat([dec.mlp_a(e + codes[j]).view(4, 3) for j in range(3)])[:10]
    b = torch.cat([dec.mlp_b(e + codes[j]).view(4, 3) for j in range(5)])[:18]
    dense = (a @ b.T).view(10, 2, 3, 3)
    torch.testing.assert_close(f.dense(), dense)
    # Normalised: the scale sqrt(beta / (fan_in r)) stays in the Factored value.
    n = normalize(f, "conv.weight", beta=2.0)
    torch.testing.assert_close(n.dense(), dense * math.sqrt(2.0 / (18 * 3)))
    # Written into a module, the factored weight equals the dense one.
    conv = nn.Conv2d(2, 10, 3, bias=False)
    write_params(conv, {"weight": n})
    torch.testing.assert_close(conv.weight.detach(), n.dense())


def test_low_rank_decoder_size_does_not_grow_with_width():
    dec = LowRankDecoder(16, rank=4, block=8, hidden=32)
    size = sum(p.numel() for p in dec.parameters())
    f = dec(torch.randn(16), (1000, 3000))
    assert f.a.shape == (1000, 4) and f.b.shape == (3000, 4)
    assert sum(p.numel() for p in dec.parameters()) == size == 2 * (16 * 32 + 32 + 32 * 32 + 32) + (16 * 32 + 32 + 32 * 8 + 8)
    # Blocks differ by their codes: a wide layer is no copy of a narrow one.
    assert not torch.allclose(f.a[:8], f.a[8:16])


def test_normalize_vectors_as_ghn2():
    p = torch.tensor([-10.0, 0.0, 10.0])
    torch.testing.assert_close(normalize(p, "ln.bias"), torch.tanh(0.2 * p))
    torch.testing.assert_close(normalize(p, "ln.weight"), 2 * torch.sigmoid(0.5 * p))
    w = torch.ones(4, 6)
    torch.testing.assert_close(normalize(w, "fc.weight"), w / math.sqrt(6))
    # HuggingFace Conv1D keeps (in, out): its fan-in is shape[0].
    torch.testing.assert_close(normalize(w, "c.weight", module_class="Conv1D"), w / 2)


class Unseen(nn.Module):
    """A CNN whose depth, widths and 7x7 kernel no GHN here has met."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 48, 7, padding=3)
        self.bn = nn.BatchNorm2d(48)
        self.blocks = nn.ModuleList(nn.Conv2d(48, 48, 3, padding=1) for _ in range(3))
        self.ln = nn.LayerNorm(48)
        self.head = nn.Linear(48, 17)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        for conv in self.blocks:
            x = x + F.relu(conv(x))
        return self.head(self.ln(x.mean((2, 3))))


@pytest.mark.parametrize("decoder", ["tiled", "lowrank"])
def test_predicted_shapes_for_an_unseen_architecture(decoder):
    torch.manual_seed(0)
    dec = TiledDecoder(16, block=(8, 8, 3, 3), hidden=16) if decoder == "tiled" else LowRankDecoder(16, rank=4, block=8)
    ghn = GraphHyperNetwork(dec, dim=16, s_max=5)
    model = Unseen()
    theta = ghn(model)
    assert {n: tuple(w.shape) for n, w in theta.items()} == {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert isinstance(theta["head.weight"], Factored) == (decoder == "lowrank")
    before = model.stem.weight.detach().clone()
    predict_into(ghn, model)
    assert not torch.equal(before, model.stem.weight)
    # Fan-in normalisation: the stem conv (followed by a norm, beta 1) has std about 1/sqrt(3*7*7) of the raw values.
    y = model(torch.randn(2, 3, 12, 12))
    assert y.shape == (2, 17) and torch.isfinite(y).all()
    # Prediction with gradients: the loss reaches every GHN parameter.
    loss = run_with(model, ghn(model), torch.randn(2, 3, 12, 12)).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in ghn.parameters())


def test_meta_batch_equals_one_model_at_a_time():
    torch.manual_seed(0)
    ghn = GraphHyperNetwork(LowRankDecoder(16, rank=2, block=4), dim=16, s_max=3)
    models = [nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)), Unseen()]
    batched = ghn(models)
    for m, theta in zip(models, batched):
        alone = ghn(m)
        for name in theta:
            torch.testing.assert_close(theta[name].dense() if isinstance(theta[name], Factored) else theta[name],
                                       alone[name].dense() if isinstance(alone[name], Factored) else alone[name])


def test_predictions_meet_the_wrong_model():
    ghn = GraphHyperNetwork(LowRankDecoder(8, rank=2, block=4), dim=8)
    theta = ghn(nn.Linear(4, 5))
    with pytest.raises(ShapeError, match=r"parameter 'weight' has shape \(6, 4\) but the prediction has \(5, 4\)"):
        write_params(nn.Linear(4, 6), theta)
    with pytest.raises(ConfigError, match="not predicted"):
        write_params(nn.Sequential(nn.Linear(4, 5)), theta)
    with pytest.raises(ConfigError, match="parameters and theta differ"):
        run_with(nn.Sequential(nn.Linear(4, 5)), theta, torch.randn(1, 4))
    with pytest.raises(ConfigError, match="dim >= 2"):
        GraphHyperNetwork(LowRankDecoder(8), dim=1)
