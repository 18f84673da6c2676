"""Per-sample (dynamic) weights: the batched path equals a Python loop over samples,
forward and backward, for every module type with a batched rule and for the vmap fallback."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyperdnn as hd


class MHAOnly(nn.Module):
    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.batch_first = batch_first

    def forward(self, x, mask=None):
        return self.mha(x, x, x, key_padding_mask=mask)[0]


class Scale(nn.Module):
    """A custom module with a raw parameter: no batched rule, so the vmap fallback runs it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.rand(n) + 0.5)
        self.inner = nn.Linear(n, n)

    def forward(self, x):
        return self.inner(x * self.scale)


class LSTMHead(nn.Module):
    def __init__(self, batch_first: bool, mode: str = "LSTM", layers: int = 2, bidirectional: bool = False) -> None:
        super().__init__()
        cls = nn.LSTM if mode == "LSTM" else nn.GRU
        self.rnn = cls(3, 5, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
        self.out = nn.Linear(5 * (2 if bidirectional else 1), 2)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


def cnn_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding_mode="reflect", padding=1), nn.Flatten(), nn.Linear(4 * 3 * 3, 3),
    )


CASES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), (4,), 0),
    "cnn-bn-eval": (cnn_bn, (2, 6, 6), 0),
    "conv1d-layernorm": (lambda: nn.Sequential(nn.Conv1d(2, 3, 3, groups=1), nn.LayerNorm(5)), (2, 7), 0),
    "lstm-batch-first": (lambda: LSTMHead(True), (4, 3), 0),
    "lstm-seq-first": (lambda: LSTMHead(False), (4, 3), 1),
    "gru-bidirectional": (lambda: LSTMHead(True, "GRU", 1, True), (4, 3), 0),
    "mha": (lambda: MHAOnly(True), (5, 8), 0),
    "mha-seq-first": (lambda: MHAOnly(False), (5, 8), 1),
    "embedding": (lambda: nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Flatten(), nn.Linear(12, 2)), None, 0),
    "fallback-vmap": (lambda: nn.Sequential(Scale(4), nn.Tanh()), (4,), 0),
}


def make_input(case: str, shape, batch: int, batch_dim: int) -> torch.Tensor:
    if case == "embedding":
        return torch.randint(0, 10, (batch, 3))
    x = torch.randn(batch, *shape)
    if batch_dim == 1:
        x = x.transpose(0, 1).contiguous()  # (T, B, F)
    return x


def select_rows(x: torch.Tensor, i: int, batch_dim: int) -> torch.Tensor:
    return x.narrow(batch_dim, i, 1)


# Train-mode BatchNorm mixes the batch by definition: see test_batchnorm_train_mode_* instead.
PAIRS = [(c, m) for c in CASES for m in ("eval", "train") if not (c == "cnn-bn-eval" and m == "train")]


@pytest.mark.parametrize("case,mode", PAIRS)
def test_per_sample_equals_loop(case: str, mode: str) -> None:
    torch.manual_seed(0)
    make, shape, bd = CASES[case]
    model = hd.HyperDNN(make(), inputs=hd.External(dim=3), outputs=hd.ChunkWise(chunk_size=40, chunk_dim=4),
                        body=hd.MLP(hidden=(8,)), batch_dim=bd)
    model.train(mode == "train")
    batch = 4
    x = make_input(case, shape, batch, bd)
    cond = torch.randn(batch, 3)
    y = model(x, condition=cond)
    probe = torch.randn_like(y)
    (y * probe).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    rows = [model(select_rows(x, i, bd), condition=cond[i]) for i in range(batch)]
    y_loop = torch.cat(rows, dim=bd)
    (y_loop * probe).sum().backward()
    torch.testing.assert_close(y, y_loop, atol=1e-5, rtol=1e-4)
    assert grads, "no gradients"
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=f"gradient of {n}")


def test_mha_key_padding_mask_per_sample() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(MHAOnly(True), inputs=hd.External(3), outputs=hd.GenerateOnce(), body=hd.MLP((8,)))
    x, cond = torch.randn(3, 5, 8), torch.randn(3, 3)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, -2:] = True
    y = model(x, mask=mask, condition=cond)
    y_loop = torch.cat([model(x[i:i + 1], mask=mask[i:i + 1], condition=cond[i]) for i in range(3)])
    torch.testing.assert_close(y, y_loop, atol=1e-5, rtol=1e-4)


def test_batchnorm_train_mode_uses_batch_statistics_and_updates_running_stats() -> None:
    """In train mode the statistics are the whole batch's, exactly as plain BatchNorm; only
    the affine scale/shift differ per sample."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    model = hd.HyperDNN(nn.Sequential(bn), inputs=hd.External(2), outputs=hd.GenerateOnce(), body=hd.MLP((4,)))
    model.train()
    x, cond = torch.randn(4, 3, 5, 5), torch.randn(4, 2)
    ref_bn = nn.BatchNorm2d(3, affine=False)
    theta = model.weights(condition=cond)
    y = model.run_target(x, theta)
    expected = ref_bn(x) * theta["0.weight"][:, :, None, None] + theta["0.bias"][:, :, None, None]
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(model.target[0].running_mean, ref_bn.running_mean)
    torch.testing.assert_close(model.target[0].running_var, ref_bn.running_var)
    assert int(model.target[0].num_batches_tracked) == 1


def test_noise_ensemble_equals_loop_over_members() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(cnn_bn(), inputs=hd.Noise(dim=5), outputs=hd.ChunkWise(50, 4), body=hd.MLP((8,))).eval()
    x = torch.randn(3, 2, 6, 6)
    torch.manual_seed(7)
    y = model(x, samples=4)
    assert y.shape == (4, 3, 3)
    torch.manual_seed(7)
    z = torch.randn(4, 5)
    for k in range(4):
        torch.testing.assert_close(y[k], model.run_target(x, model.hypernetwork(z[k])), atol=1e-5, rtol=1e-4)


def test_task_ids_per_sample_equal_static_calls() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(nn.Linear(4, 2), inputs=hd.TaskEmbedding(3, 4), outputs=hd.GenerateOnce())
    x, ids = torch.randn(5, 4), torch.tensor([0, 2, 1, 2, 0])
    y = model(x, task=ids)
    y_loop = torch.cat([model(x[i:i + 1], task=int(ids[i])) for i in range(5)])
    torch.testing.assert_close(y, y_loop)


def test_data_conditioned_equals_loop() -> None:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
    model = hd.HyperDNN(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)),
                        inputs=hd.DataEncoder(enc, 6), outputs=hd.LowRank(rank=2))
    x = torch.randn(6, 4)
    y = model(x)
    z = enc(x)
    y_loop = torch.cat([model.run_target(x[i:i + 1], model.hypernetwork(z[i])) for i in range(6)])
    torch.testing.assert_close(y, y_loop, atol=1e-6, rtol=1e-5)


def test_batched_path_has_no_python_loop_over_samples(monkeypatch) -> None:
    """The target's Linear layers run once per call, whatever the batch."""
    calls = []
    import hyperdnn.batched.linear_conv as lc

    real = lc.linear

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    from hyperdnn.batched import rules

    monkeypatch.setitem(rules.RULES, nn.Linear, counting)
    model = hd.HyperDNN(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)), inputs=hd.External(3))
    model(torch.randn(64, 4), condition=torch.randn(64, 3))
    assert len(calls) == 2


class SeqFirstInside(nn.Module):
    """Batch-first input, a sequence-first LSTM inside, then a per-step head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.rnn(x.transpose(0, 1))  # (T, B, H)
        return self.fc(out)


def test_a_generated_module_that_sees_the_batch_elsewhere_is_refused() -> None:
    model = hd.HyperDNN(SeqFirstInside(), inputs=hd.External(2), generate="fc.*")
    x, c = torch.randn(4, 5, 3), torch.randn(4, 2)  # T=5 is not a multiple of B=4
    with pytest.raises(hd.ShapeError, match=r"Linear \(with generated weights\) got an input of shape \(5, 4, 4\)"):
        model(x, condition=c)


class Masked(nn.Module):
    """A custom module with its own generated parameter and a shared mask argument."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 2))

    def forward(self, x, mask):
        return (x @ self.w) * mask


def test_vmap_fallback_shares_tensors_that_are_not_batched() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(Masked(), inputs=hd.External(3))
    # Rule: a tensor with as many rows as x is split per sample, any other is shared.
    x, c, mask = torch.randn(3, 2, 2), torch.randn(3, 3), torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    y = model(x, mask, condition=c)
    y_loop = torch.cat([model(x[i:i + 1], mask, condition=c[i]) for i in range(3)])
    torch.testing.assert_close(y, y_loop)


def test_noise_ensemble_in_train_mode_treats_members_as_separate_models() -> None:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    model = hd.HyperDNN(target, inputs=hd.Noise(4), generate=nn.Linear).train()
    x = torch.randn(6, 3)
    torch.manual_seed(3)
    y = model(x, samples=3)
    bn = model.target[1]
    after = bn.running_mean.clone()
    torch.manual_seed(3)
    z = torch.randn(3, 4)
    means = []
    for k in range(3):
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        torch.testing.assert_close(y[k], model.run_target(x, model.hypernetwork(z[k])), atol=1e-5, rtol=1e-4)
        means.append(bn.running_mean.clone())
    torch.testing.assert_close(after, torch.stack(means).mean(0), atol=1e-6, rtol=1e-5)


def test_transformer_layer_target_in_eval_mode() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = hd.HyperDNN(layer, inputs=hd.External(3), outputs=hd.ChunkWise(200, 4)).eval()
    x, c = torch.randn(3, 5, 8), torch.randn(3, 3)
    y = model(x, condition=c)
    y_loop = torch.cat([model(x[i:i + 1], condition=c[i]) for i in range(3)])
    torch.testing.assert_close(y, y_loop, atol=1e-5, rtol=1e-4)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(torch.tanh(self.emb(idx)))


def test_tied_weights_per_sample_equal_loop() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(TiedLM(), inputs=hd.TaskEmbedding(3, 4))
    idx, tasks = torch.randint(0, 10, (3, 5)), torch.tensor([0, 2, 1])
    y = model(idx, task=tasks)
    y_loop = torch.cat([model(idx[i:i + 1], task=int(tasks[i])) for i in range(3)])
    torch.testing.assert_close(y, y_loop)
    assert hd.HyperDNN(TiedLM(), inputs=hd.TaskEmbedding(3, 4), generate=nn.Linear).spec.names == ["emb.weight"]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_plain_rnn_per_sample_equals_loop(nonlinearity: str) -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(nn.RNN(3, 4, num_layers=2, nonlinearity=nonlinearity, batch_first=True), inputs=hd.External(2))
    x, c = torch.randn(3, 5, 3), torch.randn(3, 2)
    y, h = model(x, condition=c)
    rows = [model(x[i:i + 1], condition=c[i]) for i in range(3)]
    torch.testing.assert_close(y, torch.cat([r[0] for r in rows]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h, torch.cat([r[1] for r in rows], dim=1), atol=1e-5, rtol=1e-4)


def test_float64_target_and_instance_forward_are_respected() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(3, 2).double()
    model = hd.HyperDNN(lin, inputs=hd.External(2))
    x = torch.randn(4, 3, dtype=torch.float64)
    assert model(x, condition=torch.randn(4, 2, dtype=torch.float64)).dtype == torch.float64
    orig = model.target.forward
    model.target.forward = lambda inp: 2 * orig(inp)
    model(x, condition=torch.randn(4, 2, dtype=torch.float64))
    assert "forward" in model.target.__dict__


def test_attention_options_without_a_batched_rule_are_refused() -> None:
    mha = nn.MultiheadAttention(4, 2, batch_first=True, add_zero_attn=True)
    model = hd.HyperDNN(mha, inputs=hd.External(2))
    q = torch.randn(2, 3, 4)
    with pytest.raises(hd.ConfigError, match="add_zero_attn"):
        model(q, q, q, condition=torch.randn(2, 2))


def test_empty_batch_and_numpy_task_ids() -> None:
    import numpy as np

    model = hd.HyperDNN(nn.Linear(3, 2), inputs=hd.TaskEmbedding(3, 2))
    with pytest.raises(hd.ShapeError, match="batch of 0"):
        model(torch.randn(0, 3), task=torch.zeros(0, dtype=torch.long))
    assert model(torch.randn(2, 3), task=np.int64(2)).shape == (2, 2)
    with pytest.raises(hd.ShapeError, match="expected a positive multiple of the 2 weight sets"):
        model.run_target(torch.randn(3, 3), model.weights(task=torch.tensor([0, 1])))


def test_selecting_attention_by_type_includes_its_output_projection() -> None:
    model = hd.HyperDNN(nn.Sequential(nn.MultiheadAttention(4, 2)), inputs=hd.External(2), generate=nn.MultiheadAttention)
    assert set(model.spec.names) == {"0.in_proj_weight", "0.in_proj_bias", "0.out_proj.weight", "0.out_proj.bias"}
