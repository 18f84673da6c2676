"""PEFT's lora_dropout on the generated path: dropout on the LoRA branch's input only, in training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.errors import ConfigError
from hyperdnn.factored import Factored
from hyperdnn.methods.lora import LoraTargets, lora_model


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(6, 4)
        self.value = nn.Linear(4, 3)

    def forward(self, x):
        return self.value(torch.tanh(self.query(x)))


def _model(p: float, inputs) -> tuple[nn.Module, hd.HyperDNN]:
    torch.manual_seed(0)
    base = Two().requires_grad_(False)
    model = lora_model(base, LoraTargets(target_modules=("query", "value"), r=2, lora_alpha=4, lora_dropout=p),
                       inputs=inputs, zero_init=False)
    return base, model


def _by_hand(base: Two, theta: dict, x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``W0 x + b + s B A dropout(x)`` per layer, the masks drawn in the order the layers run."""
    torch.manual_seed(seed)
    h = x
    for name, act in (("query", torch.tanh), ("value", lambda t: t)):
        lin, w = getattr(base, name), theta[f"{name}.weight"]
        low = F.dropout(h, p, training=True) @ w.b  # (..., r)
        h = act(F.linear(h, lin.weight, lin.bias) + w.scale * low @ w.a.transpose(-1, -2))
    return h


@pytest.mark.parametrize("per_sample", [False, True])
def test_dropout_on_the_branch_only_equals_the_hand_formula(per_sample: bool) -> None:
    p = 0.5
    inputs = hd.External(3) if per_sample else hd.TaskEmbedding(2, 3)
    base, model = _model(p, inputs)
    x = torch.randn(5, 6)
    cond = {"condition": torch.randn(5, 3)} if per_sample else {"task": 1}
    theta = model.weights(x, **cond, dense=False)
    assert all(isinstance(w, Factored) and w.dropout == p for w in theta.values())
    model.train()
    torch.manual_seed(7)
    got = model(x, **cond)
    if per_sample:  # one adapter per row: the hand formula row by row, masks drawn for the whole batch
        torch.manual_seed(7)
        h = x
        for name, act in (("query", torch.tanh), ("value", lambda t: t)):
            lin, w = getattr(base, name), theta[f"{name}.weight"]
            low = torch.einsum("bi,bir->br", F.dropout(h, p, training=True), w.b)
            h = act(F.linear(h, lin.weight, lin.bias) + w.scale * torch.einsum("br,bor->bo", low, w.a))
        ref = h
    else:
        ref = _by_hand(base, theta, x, p, 7)
    torch.testing.assert_close(got, ref)
    model.eval()
    no_drop = _model(0.0, inputs)[1]
    no_drop.load_state_dict(model.state_dict())
    no_drop.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, **cond), no_drop(x, **cond))  # eval: nothing dropped


def test_dropout_differs_in_training_and_averages_to_eval() -> None:
    """A single adapted Linear is linear in the dropped input, so the mean over many training
    draws is the eval output (inverted dropout keeps the expectation)."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 4)).requires_grad_(False)
    model = lora_model(base, LoraTargets(target_modules=("0",), r=2, lora_alpha=4, lora_dropout=0.3),
                       inputs=hd.TaskEmbedding(2, 3), zero_init=False)
    x = torch.randn(4, 6)
    with torch.no_grad():
        model.eval()
        clean = model(x, task=0)
        model.train()
        draws = torch.stack([model(x, task=0) for _ in range(4000)])
    assert not torch.allclose(draws[0], clean)
    torch.testing.assert_close(draws.mean(0), clean, atol=0.03, rtol=0)


def test_dropout_refused_where_the_weight_must_be_formed() -> None:
    emb = nn.Embedding(10, 4)
    w = Factored(torch.randn(2, 10, 1), torch.randn(2, 4, 1), (10, 4), emb.weight.detach(), 1.0, dropout=0.2)
    from hyperdnn.batched.linear_conv import embedding

    emb.train()
    with pytest.raises(ConfigError, match="dropout=0.2"):
        embedding(emb, {"weight": w}, 2, 0, torch.randint(0, 10, (4, 3)))
    emb.eval()
    assert embedding(emb, {"weight": w}, 2, 0, torch.randint(0, 10, (4, 3))).shape == (4, 3, 4)
    with pytest.raises(hd.ShapeError, match="dropout must be in"):
        Factored(torch.randn(3, 1), torch.randn(2, 1), (3, 2), dropout=1.0)
    with pytest.raises(ConfigError):
        LoraTargets(target_modules=("q",), lora_dropout=1.5)
