"""The convolution rule's execution choice (grouped convolution or a loop over members) gives the same
results and gradients, and ensemble members equal separate calls on either path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyperdnn as hd
from hyperdnn.batched import linear_conv


def _model(outputs) -> hd.HyperDNN:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    return hd.HyperDNN(target, inputs=hd.Noise(6), outputs=outputs)


@pytest.mark.parametrize("outputs", [hd.ChunkWise(64, 8), hd.LowRank(rank=2)], ids=["dense", "factored"])
@pytest.mark.parametrize("rows", [3, 20])  # below and above LOOP_MIN_ROWS per member
def test_both_executions_equal_each_other_and_separate_calls(outputs, rows: int, monkeypatch) -> None:
    model = _model(outputs)
    x = torch.randn(rows, 2, 6, 6)
    z = torch.randn(4, 6)
    assert linear_conv.loop_over_groups(x.repeat(4, 1, 1, 1), 4) == (rows >= linear_conv.LOOP_MIN_ROWS)

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        y = model(x, samples=z)
        (y * torch.arange(y.numel()).reshape(y.shape).sin()).sum().backward()
        return y.detach(), [p.grad.clone() for p in model.parameters()]

    y_auto, g_auto = run()
    monkeypatch.setattr(linear_conv, "LOOP_MIN_ROWS", 1)  # always loop
    y_loop, g_loop = run()
    monkeypatch.setattr(linear_conv, "LOOP_MIN_ROWS", 10**9)  # never loop
    y_grouped, g_grouped = run()
    assert torch.allclose(y_loop, y_grouped, atol=1e-5)
    assert torch.allclose(y_auto, y_grouped, atol=1e-5)
    for a, b in zip(g_loop, g_grouped):
        assert torch.allclose(a, b, atol=1e-4)
    with torch.no_grad():
        for i in range(4):
            assert torch.allclose(y_auto[i], model(x, samples=z[i]), atol=1e-5)


def test_per_sample_weights_keep_the_grouped_convolution() -> None:
    x = torch.randn(64, 2, 6, 6)
    assert not linear_conv.loop_over_groups(x, 64)  # one row per weight set
    assert linear_conv.loop_over_groups(x, 4)  # 16 rows per member
    assert not linear_conv.loop_over_groups(x, 1)
