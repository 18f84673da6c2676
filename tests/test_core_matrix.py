"""One matrix: every inputs x body x outputs combination through the same checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyperdnn as hd

INPUTS = {
    "task": lambda: (hd.TaskEmbedding(num_tasks=3, dim=6), {"task": 1}),
    "external": lambda: (hd.External(dim=5), {"condition": torch.randn(5)}),
    "external-cos-sin": lambda: (hd.External(dim=2, encoding="cos-sin"), {"condition": torch.rand(2)}),
    "noise": lambda: (hd.Noise(dim=4), {}),
    "data": lambda: (hd.DataEncoder(nn.Linear(4, 6), dim=6), {}),
    "task+noise": lambda: (hd.Concat(hd.TaskEmbedding(3, 4), hd.Noise(3)), {"task": 2}),
    "none": lambda: (None, {}),
}
BODIES = {
    "mlp": lambda: hd.MLP(hidden=(16, 16)),
    "linear": lambda: hd.MLP(hidden=()),
    "rnn": lambda: hd.RNN(hidden=16),
    "lstm": lambda: hd.RNN(hidden=12, cell="lstm"),
    "attention": lambda: hd.Attention(dim=16, heads=2, layers=1),
}
OUTPUTS = {
    "once": lambda: hd.GenerateOnce(),
    "multihead": lambda: hd.MultiHead(embedding_dim=4),
    "component": lambda: hd.ComponentWise(tile=(4, 4), embedding_dim=3),
    "chunk": lambda: hd.ChunkWise(chunk_size=17, chunk_dim=5),
    "lowrank": lambda: hd.LowRank(rank=2),
    "additive": lambda: hd.Additive(hd.ChunkWise(chunk_size=20, chunk_dim=4), zero_init=False),
    "lora": lambda: hd.Additive(hd.LowRank(rank=2), scale=0.5, zero_init=False),
}


def make_target() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def build(inp: str, body: str, out: str) -> tuple[hd.HyperDNN, dict]:
    torch.manual_seed(1)
    inputs, cond = INPUTS[inp]()
    model = hd.HyperDNN(make_target(), inputs=inputs, outputs=OUTPUTS[out](), body=BODIES[body]())
    return model, cond


@pytest.mark.parametrize("out", list(OUTPUTS))
@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("inp", list(INPUTS))
def test_shapes_and_gradients(inp: str, body: str, out: str) -> None:
    if inp == "none" and out in ("once", "multihead", "lowrank", "lora") and (out == "once" or body in ("mlp", "linear")):
        with pytest.raises(hd.ConfigError, match="sees no input"):
            build(inp, body, out)
        return
    model, cond = build(inp, body, out)
    x = torch.randn(5, 4)
    theta = model.weights(x=x, **cond)
    if inp == "data":
        assert {n: t.shape[1:] for n, t in theta.items()} == {n: p.shape for n, p in make_target().named_parameters()}
    else:
        assert {n: t.shape for n, t in theta.items()} == {n: p.shape for n, p in make_target().named_parameters()}
    y = model(x, **cond)
    assert y.shape == (5, 3)
    y.pow(2).sum().backward()
    # With a single token, a recurrent body's state-to-state weights are structurally unused.
    unused = ("weight_hh",) if out == "once" and body in ("rnn", "lstm") else ()
    missing = [
        n for n, p in model.hypernetwork.named_parameters()
        if p.requires_grad and p.numel() and not any(u in n for u in unused)
        and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"no gradient reached {missing}"


def _regression_task(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    w = torch.randn(4, 3, generator=g)
    return x, [x @ w, torch.sin(x @ w)]


@pytest.mark.parametrize("out", list(OUTPUTS))
@pytest.mark.parametrize("body", ["mlp", "rnn", "attention"])
def test_training_lowers_loss(body: str, out: str) -> None:
    model, _ = build("task", body, out)
    x, ys = _regression_task()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_fn():
        return sum(nn.functional.mse_loss(model(x, task=t), ys[t]) for t in range(2))

    first = loss_fn().item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.5 * first


@pytest.mark.parametrize("out", list(OUTPUTS))
@pytest.mark.parametrize("body", ["mlp", "rnn", "attention"])
def test_save_load_round_trip_is_bit_exact(tmp_path, body: str, out: str) -> None:
    model, _ = build("task", body, out)
    x = torch.randn(5, 4)
    hd.save(model, tmp_path / "ckpt")
    loaded = hd.load(tmp_path / "ckpt", target=make_target())
    assert torch.equal(model(x, task=2), loaded(x, task=2))
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


@pytest.mark.parametrize("out", list(OUTPUTS))
@pytest.mark.parametrize("body", ["mlp", "rnn", "attention"])
def test_per_sample_weights_equal_the_loop(body: str, out: str) -> None:
    torch.manual_seed(1)
    model = hd.HyperDNN(make_target(), inputs=hd.External(5), outputs=OUTPUTS[out](), body=BODIES[body]())
    x, c = torch.randn(4, 4), torch.randn(4, 5)
    y = model(x, condition=c)
    y.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    y_loop = torch.cat([model(x[i:i + 1], condition=c[i]) for i in range(4)])
    y_loop.sum().backward()
    torch.testing.assert_close(y, y_loop, atol=1e-5, rtol=1e-4)
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)
