"""LoGAH's code against ours: the normalisation of predicted weights to a fixed std (GPT-2's 0.02), the authors' decoder."""

from __future__ import annotations

import pytest
import torch

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.factored import Factored
from hyperdnn.methods.graph import (
    GraphHyperNetwork,
    LoGAHDecoder,
    LowRankDecoder,
    TiledDecoder,
)
from hyperdnn.methods.graph.normalize import factored_moments, std_normalize
from hyperdnn.methods.graph.samplers import CharGPTArch


def test_factored_moments_equal_the_dense_ones():
    torch.manual_seed(0)
    f = Factored(torch.randn(7, 3) + 0.3, torch.randn(10, 3) - 0.1, (7, 2, 5), scale=0.7)
    mean, std = factored_moments(f)
    w = f.dense()
    torch.testing.assert_close(mean, w.mean())
    torch.testing.assert_close(std, w.std())


def test_moments_refuse_what_they_would_get_wrong():
    a, b = torch.randn(4, 2), torch.randn(3, 2)
    with pytest.raises(ConfigError, match="dense base"):
        factored_moments(Factored(a, b, (4, 3), base=torch.full((4, 3), 5.0)))
    with pytest.raises(ShapeError, match="2-D factors"):
        factored_moments(Factored(torch.randn(2, 4, 2), torch.randn(2, 3, 2), (4, 3)))
    with pytest.raises(ShapeError, match="1 entry"):
        std_normalize(Factored(torch.randn(1, 2), torch.randn(1, 2), (1, 1)), 0.02)
    with pytest.raises(ShapeError, match="1 entry"):
        std_normalize(torch.randn(1, 1), 0.02)


def test_std_normalize_as_logah_for_dense_and_factored():
    torch.manual_seed(0)
    w = torch.randn(6, 4) * 3 + 1
    torch.testing.assert_close(std_normalize(w, 0.02), w / (w.std() + 1e-7) * 0.02)
    f = Factored(torch.randn(6, 2), torch.randn(4, 2), (6, 4))
    n = std_normalize(f, 0.02)
    assert isinstance(n, Factored)
    torch.testing.assert_close(n.dense(), f.dense() / (f.dense().std() + 1e-7) * 0.02)
    # Differentiable through the factors.
    a = torch.randn(6, 2, requires_grad=True)
    std_normalize(Factored(a, torch.randn(4, 2), (6, 4)), 0.02).dense().pow(3).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


@pytest.mark.parametrize("decoder", [LowRankDecoder(16, rank=4, block=8), TiledDecoder(16, block=(8, 8, 1, 1))])
def test_ghn_with_std_norm_predicts_weights_of_that_std_embeddings_raw(decoder):
    torch.manual_seed(0)
    model = CharGPTArch(2, 32, 2, 20, 16).build()
    plain = GraphHyperNetwork(decoder, dim=16, s_max=3)
    ghn = GraphHyperNetwork(decoder, dim=16, s_max=3, weight_norm="std", init_std=0.05)
    ghn.load_state_dict(plain.state_dict())
    with torch.no_grad():
        theta, ref = ghn(model), plain(model)
    dense = lambda w: w.dense() if isinstance(w, Factored) else w
    for name, p in model.named_parameters():
        w = dense(theta[name])
        if name in ("tok.weight", "pos.weight"):  # LoGAH leaves nn.Embedding weights as predicted
            # the fan-in path scaled the raw value by sqrt(1 / (fan_in r)) (r = 1 for a dense tensor)
            r = decoder.rank if isinstance(decoder, LowRankDecoder) else 1
            torch.testing.assert_close(w, dense(ref[name]) * (32 * r) ** 0.5)
        elif p.dim() >= 2:
            torch.testing.assert_close(w.std(), torch.tensor(0.05), rtol=1e-4, atol=1e-6)
        else:  # vectors as GHN-2
            torch.testing.assert_close(w, dense(ref[name]))


def test_weight_norm_misuse():
    with pytest.raises(ConfigError, match="weight_norm must be one of"):
        GraphHyperNetwork(LowRankDecoder(8), dim=8, weight_norm="unit")
    with pytest.raises(ConfigError, match="init_std > 0"):
        GraphHyperNetwork(LowRankDecoder(8), dim=8, weight_norm="std", init_std=0.0)


def convdecoder3lora(dec: LoGAHDecoder, e: torch.Tensor, out: int, inp: int) -> torch.Tensor:
    """LoGAH's ConvDecoder3LoRA.forward (Blackzxy/LoGAH ghn3/nn.py) for a 2-d weight, written out."""
    r, ck = dec.rank, dec.max_rows
    x = dec.mlp(e.unsqueeze(0)).view(-1, 2 * r, r)  # [b, 2r, r]
    x = dec.table(torch.relu(x)).view(-1, 2 * ck, r)  # [b, 2ck, r]
    a, b_t = torch.split(x, ck, dim=1)
    b = b_t.transpose(1, 2)  # [b, r, ck]
    return torch.bmm(a[:, :out, :], b[:, :, :inp])[0]


def test_logah_decoder_equals_the_authors_forward():
    torch.manual_seed(0)
    dec = LoGAHDecoder(8, rank=3, max_rows=20)
    e = torch.randn(8)
    f = dec(e, (12, 7))
    assert isinstance(f, Factored) and f.a.shape == (12, 3) and f.b.shape == (7, 3)
    torch.testing.assert_close(f.dense(), convdecoder3lora(dec, e, 12, 7))
    # A conv weight is an (out, in k k) matrix; wider than max_rows: tiled as LoGAH tiles.
    g = dec(e, (45, 2, 3, 3))
    full = convdecoder3lora(dec, e, 20, 18)
    torch.testing.assert_close(g.dense().view(45, 18), full.repeat(3, 1)[:45])
    # Vectors: the first column of the product (LoGAH's n_dim=1 path).
    torch.testing.assert_close(dec(e, (9,)), convdecoder3lora(dec, e, 9, 1)[:, 0])
    assert sum(p.numel() for p in dec.parameters()) == (8 * 32 + 32) + (32 * 64 + 64) + (64 * 18 + 18) + (3 * 20 + 20)
