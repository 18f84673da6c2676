"""The batched Linear rule on per-sample LoRA weights (shared W0, per-group A and B): fused path vs formed weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperdnn.batched.linear_conv import linear
from hyperdnn.factored import Factored


@pytest.mark.parametrize("case", ["shared base, shared bias", "shared base, generated bias", "no base", "batched base"])
def test_factored_linear_equals_the_formed_per_group_weights(case: str) -> None:
    torch.manual_seed(0)
    g, n, t, i, o, r = 3, 2, 5, 7, 4, 2
    mod = nn.Linear(i, o)
    x = torch.randn(g * n, t, i)
    a, b = torch.randn(g, o, r), torch.randn(g, i, r)
    base = None if case == "no base" else (torch.randn(g, o, i) if case == "batched base" else mod.weight.detach())
    f = Factored(a, b, (o, i), base, scale=0.5)
    weights = {"weight": f}
    bias = mod.bias.detach()
    if case == "shared base, generated bias":
        bias = torch.randn(g, o)
        weights["bias"] = bias
    y = linear(mod, weights, g, 0, x)
    dense = f.dense()  # (G, o, i)
    want = torch.cat([
        nn.functional.linear(x[k * n:(k + 1) * n], dense[k], bias[k] if bias.dim() == 2 else bias) for k in range(g)
    ])
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
