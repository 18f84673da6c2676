"""The target given at call time: model(x, target=module), weights(target=), summary(target=), save/load."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import hyperdnn as hd
import hyperdnn.dynamic_target as dynamic_target


class SmallCNN(nn.Module):
    def __init__(self, w: int = 4) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv_2 = nn.Conv2d(w, 2 * w, 5, padding=2)
        self.linear = nn.Linear(2 * w, 3)

    def forward(self, x):
        x = F.relu(self.conv_1(x))
        x = F.relu(self.conv_2(x)).mean((2, 3))
        return self.linear(x)


class WithNorm(nn.Module):
    def __init__(self, w: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, w)
        self.bn = nn.BatchNorm1d(w)
        self.out = nn.Linear(w, 2)

    def forward(self, x):
        return self.out(self.bn(self.fc(x)))


class WithLSTM(SmallCNN):
    def __init__(self, w: int = 4) -> None:
        super().__init__(w)
        self.rnn = nn.LSTM(3, 3)


def implicit(target: nn.Module, inputs=None, **kw) -> hd.HyperDNN:
    torch.manual_seed(0)
    return hd.HyperDNN(target, inputs=inputs, outputs=hd.Implicit(**kw), body=hd.MLP(hidden=(16,)))


X = torch.randn(4, 1, 6, 6)


def test_call_time_target_equals_functional_call_of_the_users_module():
    model = implicit(SmallCNN(4))
    user = SmallCNN(9)
    before = {n: p.detach().clone() for n, p in user.named_parameters()}
    y = model(X, target=user)
    theta = model.weights(target=user)
    torch.testing.assert_close(y, functional_call(user, theta, (X,)))
    # The user's module is not modified.
    for n, p in user.named_parameters():
        assert isinstance(p, nn.Parameter) and torch.equal(p, before[n])


def test_prepared_once_per_shape_signature(monkeypatch):
    model = implicit(SmallCNN(4))
    calls = []
    real = dynamic_target.prepare_target
    monkeypatch.setattr(dynamic_target, "prepare_target", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(3):
        model(X, target=SmallCNN(7))  # a fresh instance each time, same shapes
    model.weights(target=SmallCNN(7))
    model(X, target=SmallCNN(5))
    assert len(calls) == 2
    assert len(model._dynamic._cache) == 2


def test_per_sample_conditions_with_a_dynamic_target_equal_the_loop():
    model = implicit(SmallCNN(4), inputs=hd.TaskEmbedding(3, 5))
    ids = torch.tensor([2, 0, 1, 2])
    target = SmallCNN(6)
    y = model(X, task=ids, target=target)
    loop = torch.cat([model(X[i : i + 1], task=int(ids[i]), target=target) for i in range(len(ids))])
    torch.testing.assert_close(y, loop)
    theta = model.weights(task=ids, target=target)
    assert theta["conv_2.weight"].shape == (4, 12, 6, 5, 5)


def test_data_and_noise_inputs_with_a_dynamic_target():
    model = implicit(SmallCNN(4), inputs=hd.Noise(dim=3))
    out = model(X, samples=5, target=SmallCNN(3))
    assert out.shape == (5, 4, 3)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(36, 6))
    model = implicit(SmallCNN(4), inputs=hd.DataEncoder(enc, dim=6))
    y = model(X, target=SmallCNN(5))
    loop = torch.cat([model(X[i : i + 1], target=SmallCNN(5)) for i in range(len(X))])
    torch.testing.assert_close(y, loop)


def test_mode_follows_the_model():
    torch.manual_seed(0)
    model = implicit(WithNorm(3))
    x = torch.randn(6, 4)
    model.train()
    model(x, target=WithNorm(5))
    model.eval()
    y = model(x, target=WithNorm(5))
    entry = next(iter(model._dynamic._cache.values()))
    assert not entry.target.training
    # eval: BatchNorm uses its running statistics, so one row gives the same output alone or in a batch.
    torch.testing.assert_close(model(x[:1], target=WithNorm(5)), y[:1])


def test_strategies_sized_by_the_target_refuse_a_call_time_target():
    model = hd.HyperDNN(SmallCNN(4), outputs=hd.ChunkWise(64, 8))
    with pytest.raises(hd.ConfigError, match=r"output strategy ChunkWise .*hd\.Implicit"):
        model(X, target=SmallCNN(5))
    with pytest.raises(hd.ConfigError, match="ChunkWise"):
        model.weights(target=SmallCNN(5))


def test_a_target_outside_the_family_is_named():
    model = implicit(SmallCNN(4))
    with pytest.raises(hd.ConfigError, match=r"module 'rnn' \(LSTM\) is outside the family"):
        model(X, target=WithLSTM(4))


def test_a_call_time_target_with_parameters_that_are_not_generated_is_refused():
    model = hd.HyperDNN(SmallCNN(4), outputs=hd.Implicit(), body=hd.MLP(hidden=(8,)), generate=nn.Conv2d)
    with pytest.raises(hd.ConfigError, match=r"parameters that are not generated \(\['linear.weight'"):
        model(X, target=SmallCNN(5))


def test_target_keyword_that_is_not_a_module_reaches_the_targets_forward():
    class Loss(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x, target):
            return F.cross_entropy(self.fc(x), target)

    model = implicit(Loss())
    out = model(torch.randn(5, 3), target=torch.tensor([0, 1, 0, 1, 1]))
    assert out.shape == ()


def test_summary_for_a_call_time_target():
    model = implicit(SmallCNN(4))
    target = SmallCNN(11)
    s = model.summary(target=target)
    generated = sum(p.numel() for p in target.parameters())
    hyper = sum(p.numel() for p in model.hypernetwork.parameters())
    assert s.generated == generated and s.hypernetwork == hyper
    assert s.compression_ratio == pytest.approx(hyper / generated)
    assert [r[0] for r in s.rows] == [n for n, _ in target.named_parameters()]
    assert model.summary().generated == sum(p.numel() for p in SmallCNN(4).parameters())


def test_save_load_then_a_width_never_seen(tmp_path):
    model = implicit(SmallCNN(4), inputs=hd.TaskEmbedding(2, 3), coord_noise=0.5)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for w in (4, 6):  # a couple of steps so the state is not the initial one
        model(X, task=1, target=SmallCNN(w)).square().mean().backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    hd.save(model, tmp_path / "run")
    expected = model(X, task=1, target=SmallCNN(13))
    for around in (SmallCNN(4), SmallCNN(10)):  # the saved width or any other member of the family
        loaded = hd.load(tmp_path / "run", target=around).eval()
        torch.testing.assert_close(loaded(X, task=1, target=SmallCNN(13)), expected)
        assert loaded.configs["outputs"].coord_noise == 0.5


def test_deepcopy_gets_its_own_cache():
    model = implicit(SmallCNN(4))
    model(X, target=SmallCNN(5))
    twin = copy.deepcopy(model)
    assert twin._dynamic._cache == {} and twin._dynamic.outputs is twin.hypernetwork.outputs
    torch.testing.assert_close(twin(X, target=SmallCNN(5)), model(X, target=SmallCNN(5)))
