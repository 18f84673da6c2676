"""A HyperDNN given a plain model's weights computes exactly what the plain model computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import hyperdnn as hd


class MHABlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        return self.norm(x + self.mha(x, x, x)[0])


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 6, num_layers=2, batch_first=True)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


TARGETS = {
    "linear": (lambda: nn.Linear(5, 3), (5,)),
    "conv-bn": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)), (2, 6, 6)),
    "lstm": (LSTMNet, (7, 3)),
    "mha": (MHABlock, (5, 8)),
}


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", list(TARGETS))
def test_given_weights_equal_plain_model(name: str, train: bool) -> None:
    torch.manual_seed(0)
    make, shape = TARGETS[name]
    plain = make()
    model = hd.HyperDNN(copy.deepcopy(plain), inputs=hd.TaskEmbedding(2, 4), outputs=hd.ChunkWise(64, 4))
    plain.train(train)
    model.train(train)
    x = torch.randn(4, *shape)
    theta = {n: p.detach() for n, p in plain.named_parameters()}
    torch.testing.assert_close(model.run_target(x, theta), plain(x))
    # The same weights given once per sample (batched path) give the same result in eval mode.
    if not train:
        batched = {n: t.expand(4, *t.shape) for n, t in theta.items()}
        torch.testing.assert_close(model.run_target(x, batched), plain(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(TARGETS))
def test_additive_output_starts_at_the_targets_own_init(name: str) -> None:
    torch.manual_seed(0)
    make, shape = TARGETS[name]
    plain = make().eval()
    model = hd.HyperDNN(plain, inputs=hd.External(3, encoding="cos-sin"), outputs=hd.Additive(hd.ChunkWise(64, 4))).eval()
    x = torch.randn(4, *shape)
    torch.testing.assert_close(model(x, condition=torch.rand(3)), plain(x))


def test_user_model_is_not_modified() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    params_before = [id(p) for p in plain.parameters()]
    model = hd.HyperDNN(plain, inputs=hd.TaskEmbedding(2, 4), generate=nn.Linear)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(8, 3), task=1).sum().backward()
    opt.step()
    assert [id(p) for p in plain.parameters()] == params_before
    for k, v in plain.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in plain.parameters())


def test_buffers_train_eval_and_state_dict_reach_the_target() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), inputs=hd.TaskEmbedding(2, 4), generate=nn.Linear)
    bn = model.target[1]
    model.train()
    model(torch.randn(8, 3) * 3 + 1, task=0)
    assert int(bn.num_batches_tracked) == 1 and not torch.equal(bn.running_mean, torch.zeros(4))
    model.eval()
    assert not bn.training
    keys = model.state_dict().keys()
    assert "target.1.running_mean" in keys and "target.1.weight" in keys
    assert not any(k.startswith("target.0.") for k in keys)  # generated: not stored as target tensors
    own = {n for n, _ in model.named_parameters()}
    assert "target.1.weight" in own and "target.0.weight" not in own
    model.to(torch.float64)
    assert model(torch.randn(2, 3, dtype=torch.float64), task=1).dtype == torch.float64


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, idx):
        return self.out(torch.tanh(self.emb(idx)))


def test_tied_weights_are_generated_once_and_used_everywhere() -> None:
    torch.manual_seed(0)
    plain = Tied()
    model = hd.HyperDNN(copy.deepcopy(plain), inputs=hd.TaskEmbedding(2, 4))
    assert model.spec.names == ["emb.weight"]
    idx = torch.randint(0, 10, (3, 5))
    torch.testing.assert_close(model.run_target(idx, {"emb.weight": plain.emb.weight.detach()}), plain(idx))


def test_target_built_from_shapes_alone_on_the_meta_device() -> None:
    with torch.device("meta"):
        big = nn.Sequential(nn.Linear(300, 200), nn.Linear(200, 50))
    model = hd.HyperDNN(big, inputs=hd.TaskEmbedding(2, 4), outputs=hd.ChunkWise(1000, 8))
    theta = model.weights(task=0)
    assert theta["0.weight"].device.type == "cpu" and theta["0.weight"].shape == (200, 300)
    want = 1 / (3 * 300) ** 0.5
    assert 0.5 * want < theta["0.weight"].std().item() < 2 * want
    y = model(torch.randn(2, 300), task=1)
    assert y.shape == (2, 50)
