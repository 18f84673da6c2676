"""``model(x, samples=k)`` in inference on a CPU runs members in chunks (batched/members.py):
the same numbers as one batched call and as a loop over members, training untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyperdnn as hd
from hyperdnn.batched.members import CPU_ROWS_PER_CALL, members_per_call, one_group, take_groups
from hyperdnn.factored import Factored


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 12), nn.ReLU(), nn.Linear(12, 3))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3))


OUTPUTS = {
    "once": lambda: None,
    "lowrank": lambda: hd.LowRank(rank=2),
    "lora": lambda: hd.Additive(hd.LowRank(rank=2), scale=0.5, zero_init=False),
}


def test_rule() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert members_per_call(64, 32, cpu) == CPU_ROWS_PER_CALL // 32 == 16
    assert members_per_call(64, 512, cpu) == 1
    assert members_per_call(4, 32, cpu) == 4  # never more than k
    assert members_per_call(64, 0, cpu) == 64  # an empty batch: one call
    assert members_per_call(64, 4096, cuda) == 64  # accelerators: one call


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["mlp", "cnn"])
@pytest.mark.parametrize("k,batch", [(5, 200), (7, 100), (1, 600)])
def test_chunks_equal_one_call_and_loop(make, output, k, batch) -> None:
    torch.manual_seed(0)
    strategy = OUTPUTS[output]()
    model = hd.HyperDNN(make(), inputs=hd.Noise(8), **({} if strategy is None else {"outputs": strategy}))
    x = torch.randn(batch, 1, 6, 6)
    z = torch.randn(k, 8)
    per_call = members_per_call(k, batch, x.device)
    assert per_call < k or k == 1
    one_call = model(x, samples=z).detach()  # autograd on: one batched call
    with torch.no_grad():
        chunked = model(x, samples=z)
        theta = model.hypernetwork(z)
        loop = torch.stack([model.run_target(x, one_group(theta, i)) for i in range(k)])
    assert chunked.shape == (k, batch, 3)
    torch.testing.assert_close(chunked, one_call, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked, loop, rtol=1e-5, atol=1e-5)


def test_take_groups_keeps_a_shared_base() -> None:
    a, b, base = torch.randn(4, 3, 2), torch.randn(4, 5, 2), torch.randn(3, 5)
    f = Factored(a, b, (3, 5), base, 0.5)
    cut = take_groups({"w": f, "v": torch.randn(4, 3)}, 1, 3)
    assert cut["w"].groups == 2 and cut["w"].base is base and cut["v"].shape == (2, 3)
    torch.testing.assert_close(cut["w"].dense(), f.dense()[1:3])
    torch.testing.assert_close(one_group({"w": f}, 2)["w"].dense(), f.dense()[2])


def test_training_batchnorm_runs_one_call() -> None:
    """Chunks would apply one running-statistics update per chunk; one call applies one."""
    torch.manual_seed(0)
    target = nn.Sequential(nn.Flatten(), nn.Linear(36, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))
    model = hd.HyperDNN(target, inputs=hd.Noise(8))
    twin = hd.HyperDNN(nn.Sequential(nn.Flatten(), nn.Linear(36, 12), nn.BatchNorm1d(12), nn.ReLU(),
                                     nn.Linear(12, 3)), inputs=hd.Noise(8))
    twin.load_state_dict(model.state_dict())
    x, z = torch.randn(300, 1, 6, 6), torch.randn(4, 8)
    with torch.no_grad():
        out = model(x, samples=z)
    ref = twin(x, samples=z).detach()
    torch.testing.assert_close(out, ref)
    bn, bn_ref = model.target[2], twin.target[2]
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
    assert int(bn.num_batches_tracked) == int(bn_ref.num_batches_tracked) == 1


def test_structured_output_falls_back_to_one_call() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            y = self.lin(x)
            return {"y": y, "s": y.sum(-1)}

    torch.manual_seed(0)
    model = hd.HyperDNN(Two(), inputs=hd.Noise(4))
    x, z = torch.randn(300, 4), torch.randn(3, 4)
    with torch.no_grad():
        out = model(x, samples=z)
    ref = model(x, samples=z)
    assert out["y"].shape == (3, 300, 2)
    torch.testing.assert_close(out["y"], ref["y"].detach())
    torch.testing.assert_close(out["s"], ref["s"].detach())
