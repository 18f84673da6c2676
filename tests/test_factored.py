"""The output contract: Factored values, consumed in parts by Linear, Conv and Embedding."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import hyperdnn as hd


class LargestIntermediate(TorchDispatchMode):
    """Records the element count of the largest tensor any operator produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_factored_dense_is_base_plus_scaled_product() -> None:
    a, b, base = torch.randn(2, 6, 3), torch.randn(2, 20, 3), torch.randn(6, 4, 5)
    f = hd.Factored(a, b, (6, 4, 5), base=base, scale=0.25)
    want = base + 0.25 * torch.einsum("gor,gir->goi", a, b).reshape(2, 6, 4, 5)
    torch.testing.assert_close(f.dense(), want)
    assert f.groups == 2 and not f.base_batched
    g = hd.Factored(a[0], b[0], (6, 4, 5)).with_base(base, 2.0)
    torch.testing.assert_close(g.dense(), base + 2.0 * (a[0] @ b[0].T).reshape(6, 4, 5))


def test_factored_parts_that_do_not_compose_are_refused() -> None:
    with pytest.raises(hd.ShapeError, match="do not compose"):
        hd.Factored(torch.randn(6, 3), torch.randn(19, 3), (6, 4, 5))


class Mixed(nn.Module):
    """An embedding, a convolution and a linear layer: the three factored paths."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 8, padding_idx=0)
        self.conv = nn.Conv1d(8, 12, 3, padding=1)
        self.fc = nn.Linear(12, 5)

    def forward(self, idx):
        h = self.emb(idx).transpose(1, 2)  # (B, 8, T)
        h = torch.relu(self.conv(h)).mean(-1)  # (B, 12)
        return self.fc(h)


@pytest.mark.parametrize("outputs", ["lowrank", "lora"])
def test_factored_per_sample_equals_the_loop_with_formed_weights(outputs: str) -> None:
    torch.manual_seed(0)
    strategy = hd.LowRank(rank=2) if outputs == "lowrank" else hd.Additive(hd.LowRank(rank=2), scale=0.5, zero_init=False)
    model = hd.HyperDNN(Mixed(), inputs=hd.External(3), outputs=strategy, generate=("emb.weight", "conv.weight", "fc.weight"))
    idx = torch.randint(0, 11, (4, 7))
    c = torch.randn(4, 3)
    kinds = {n: type(w).__name__ for n, w in model.weights(condition=c, dense=False).items()}
    assert kinds == {"emb.weight": "Factored", "conv.weight": "Factored", "fc.weight": "Factored"}
    y = model(idx, condition=c)
    y.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # Reference: each sample alone, with its weights formed densely (the static path).
    y_loop = torch.cat([model.run_target(idx[i:i + 1], model.weights(condition=c[i])) for i in range(4)])
    y_loop.square().sum().backward()
    torch.testing.assert_close(y, y_loop, atol=1e-5, rtol=1e-4)
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)


@pytest.mark.parametrize("layer", ["linear", "conv", "embedding"])
def test_lora_per_sample_forms_no_per_sample_matrix(layer: str) -> None:
    torch.manual_seed(0)
    batch = 32
    if layer == "linear":
        target, x = nn.Linear(256, 256), torch.randn(batch, 256)
    elif layer == "conv":
        target, x = nn.Conv2d(64, 64, 3, padding=1), torch.randn(batch, 64, 4, 4)
    else:
        target, x = nn.Embedding(4096, 64), torch.randint(0, 4096, (batch, 3))
    model = hd.HyperDNN(target, inputs=hd.External(4), outputs=hd.Additive(hd.LowRank(rank=4)), generate="weight")
    one_weight = model.spec.numel  # a single (out, in) matrix, what W0 itself holds
    c = torch.randn(batch, 4)
    theta = model.weights(condition=c, dense=False)  # the hypernetwork's own work, outside the probe
    with LargestIntermediate() as probe:
        y = model.run_target(x, theta)
    torch.testing.assert_close(y, model(x, condition=c))
    # Nothing larger than one weight matrix, the activations or the factors themselves; a
    # formed per-sample weight would hold batch * one_weight numbers.
    factors = max(t.numel() for t in theta["weight"].parts().values())
    assert probe.largest <= max(one_weight, y.numel(), x.numel(), factors) < batch * one_weight / 10, (
        probe.largest, one_weight, factors)
    with torch.no_grad():
        dense = model.weights(condition=c)["weight"]  # (B, *shape): the reference, formed on purpose
        ref = torch.cat([model.run_target(x[i:i + 1], {"weight": dense[i]}) for i in range(batch)])
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-4)


def test_weights_dense_false_returns_the_strategy_parts() -> None:
    model = hd.HyperDNN(nn.Linear(6, 4), inputs=hd.TaskEmbedding(2, 3), outputs=hd.Additive(hd.LowRank(rank=2), scale=0.5))
    parts = model.weights(task=1, dense=False)
    f = parts["weight"]
    assert isinstance(f, hd.Factored) and f.scale == 0.5 and f.base is not None
    assert isinstance(parts["bias"], torch.Tensor)
    torch.testing.assert_close(model.weights(task=1)["weight"], f.dense())
    # zero_init: the model starts exactly at the target's own weights
    torch.testing.assert_close(f.dense(), model.hypernetwork.outputs.theta0[:24].view(4, 6))
