"""The same checks on a GPU, when one is present (CI has none; run on a GPU machine)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyperdnn as hd

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))


@pytest.mark.parametrize("inputs,kw", [
    (hd.TaskEmbedding(3, 4), {"task": torch.tensor([0, 2, 1, 1])}),
    (hd.External(3), {"condition": torch.randn(4, 3)}),
    (hd.Noise(3), {"samples": 2}),
])
def test_model_moves_to_cuda_and_matches_cpu(inputs, kw) -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(cnn(), inputs=inputs, outputs=hd.ChunkWise(64, 4)).eval()
    x = torch.randn(4, 2, 6, 6)
    kw_cuda = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    torch.manual_seed(1)
    y_cpu = model(x, **kw)
    model.cuda()
    torch.manual_seed(1)
    y_gpu = model(x.cuda(), **kw_cuda)
    assert y_gpu.is_cuda
    if "samples" not in kw:  # noise draws differ between devices
        torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-4, rtol=1e-3)
    y_gpu.sum().backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in model.hypernetwork.parameters() if p.requires_grad and p.numel())


def test_lstm_and_attention_per_sample_on_cuda(monkeypatch) -> None:
    # cuDNN's LSTM (the loop's reference) uses TF32 by default; compare in full fp32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    lstm = hd.HyperDNN(nn.LSTM(3, 5, batch_first=True), inputs=hd.External(2)).cuda()
    x, c = torch.randn(4, 6, 3, device="cuda"), torch.randn(4, 2, device="cuda")
    y = lstm(x, condition=c)[0]
    loop = torch.cat([lstm(x[i:i + 1], condition=c[i])[0] for i in range(4)])
    torch.testing.assert_close(y, loop, atol=1e-4, rtol=1e-3)
    mha = hd.HyperDNN(nn.MultiheadAttention(8, 2, batch_first=True), inputs=hd.External(2)).cuda().eval()
    q = torch.randn(4, 5, 8, device="cuda")
    y = mha(q, q, q, condition=c)[0]
    loop = torch.cat([mha(q[i:i + 1], q[i:i + 1], q[i:i + 1], condition=c[i])[0] for i in range(4)])
    torch.testing.assert_close(y, loop, atol=1e-4, rtol=1e-3)


def test_checkpoint_round_trip_from_cuda(tmp_path) -> None:
    model = hd.HyperDNN(cnn(), inputs=hd.TaskEmbedding(2, 4), outputs=hd.LowRank(2)).cuda().eval()
    hd.save(model, tmp_path)
    loaded = hd.load(tmp_path, target=cnn(), map_location="cuda").eval()
    x = torch.randn(2, 2, 6, 6, device="cuda")
    assert torch.equal(model(x, task=1), loaded(x, task=1))


def test_factored_per_sample_lora_on_cuda_matches_cpu() -> None:
    """Linear, Conv and Embedding consume Factored weights in parts on the GPU as on the CPU."""

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(11, 8)
            self.conv = nn.Conv1d(8, 12, 3, padding=1)
            self.fc = nn.Linear(12, 5)

        def forward(self, idx):
            return self.fc(torch.relu(self.conv(self.emb(idx).transpose(1, 2))).mean(-1))

    torch.manual_seed(0)
    model = hd.HyperDNN(Mixed(), inputs=hd.External(3), outputs=hd.Additive(hd.LowRank(rank=2), scale=0.5, zero_init=False),
                        generate=("emb.weight", "conv.weight", "fc.weight"))
    idx, c = torch.randint(0, 11, (6, 7)), torch.randn(6, 3)
    y_cpu = model(idx, condition=c)
    y_cpu.square().sum().backward()
    g_cpu = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.cuda()
    y = model(idx.cuda(), condition=c.cuda())
    y.square().sum().backward()
    torch.testing.assert_close(y.cpu(), y_cpu, atol=1e-4, rtol=1e-4)
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad.cpu(), g_cpu[n], atol=1e-4, rtol=1e-3, msg=n)
