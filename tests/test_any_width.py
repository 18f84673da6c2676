"""The any-width method (NeuMeta): permutation, pruning baseline, losses, steps, evaluation."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import hyperdnn as hd
from hyperdnn.methods.any_width import (
    AnyWidth,
    chain_groups,
    keep_first_channels,
    shortest_path_order,
    smooth_permutation,
    total_variation,
    weighted_reconstruction,
)
from hyperdnn.methods.any_width.permute import path_length


class Net(nn.Module):
    def __init__(self, w: int = 4) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv_2 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.linear = nn.Linear(2 * w, 3)

    def forward(self, x):
        x = F.relu(self.conv_1(x))
        return self.linear(F.relu(self.conv_2(x)).mean((2, 3)))


def test_chain_groups_of_a_chain():
    assert chain_groups(Net(4)) == [
        [("conv_1.weight", 0), ("conv_1.bias", 0), ("conv_2.weight", 1)],
        [("conv_2.weight", 0), ("conv_2.bias", 0), ("linear.weight", 1)],
    ]


def test_permutation_keeps_the_function_and_shortens_the_path():
    torch.manual_seed(0)
    net = Net(8)
    x = torch.randn(5, 1, 6, 6)
    perm = smooth_permutation(net)
    torch.testing.assert_close(perm(x), net(x), rtol=1e-5, atol=1e-6)
    assert not torch.equal(perm.conv_1.weight, net.conv_1.weight)
    assert total_variation(perm) < total_variation(net)
    for group in chain_groups(net):
        params = dict(net.named_parameters())
        cities = torch.cat([params[n].movedim(d, 0).reshape(params[n].shape[d], -1) for n, d in group], dim=1)
        dist = torch.cdist(cities.double(), cities.double(), p=1)
        assert path_length(dist, shortest_path_order(cities)) <= path_length(dist, list(range(len(cities))))


@pytest.mark.parametrize("seed", range(5))
def test_path_heuristic_near_the_brute_force_optimum(seed):
    g = torch.Generator().manual_seed(seed)
    cities = torch.randn(7, 3, generator=g)
    dist = torch.cdist(cities.double(), cities.double(), p=1)
    best = min(path_length(dist, list(p)) for p in itertools.permutations(range(7)))
    order = shortest_path_order(cities)
    assert sorted(order) == list(range(7))
    assert path_length(dist, order) <= 1.1 * best


def test_keep_first_channels_is_the_leading_block():
    torch.manual_seed(0)
    wide, narrow = Net(8), Net(3)
    cut = keep_first_channels(wide, narrow)
    torch.testing.assert_close(cut.conv_2.weight, wide.conv_2.weight[:6, :3])
    torch.testing.assert_close(cut.linear.weight, wide.linear.weight[:, :6])
    with pytest.raises(hd.ShapeError, match="at most the reference's"):
        keep_first_channels(narrow, wide)


def test_weighted_reconstruction_by_hand():
    ref = {"a": torch.tensor([1.0, -2.0, 4.0]), "b": torch.tensor([[0.5]])}
    theta = {"a": torch.tensor([0.0, 0.0, 0.0]), "b": torch.tensor([[1.5]])}
    eps = 1e-6
    a = ((1 * (1 + eps) + 4 * (2 + eps) + 16 * (4 + eps)) / (4 + eps)) / 3
    b = 1.0
    assert float(weighted_reconstruction(theta, ref)) == pytest.approx((a + b) / 2)


def make(widths=(2, 4), **kw):
    torch.manual_seed(0)
    model = hd.HyperDNN(Net(4), outputs=hd.Implicit(num_freqs=4), body=hd.MLP(hidden=(32, 32)))
    reference = Net(4)
    return AnyWidth(model, Net, widths, reference, **kw), reference


def test_loss_parts_follow_the_paper():
    method, reference = make(recon=2.0, recon_decay_steps=10, kd=0.5, reg=1e-3)
    x, y = torch.randn(6, 1, 5, 5), torch.randint(0, 3, (6,))
    total, parts = method.loss(x, y, width=4)
    theta = method.model.weights(target=Net(4))
    logits = functional_call(Net(4), theta, (x,))
    ce = F.cross_entropy(logits, y)
    reg = sum(t.norm() for t in theta.values())
    recon = weighted_reconstruction(theta, dict(smooth_permutation(reference).named_parameters()))
    kd = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(reference(x), -1), log_target=True, reduction="batchmean")
    assert float(total) == pytest.approx(float(ce + 1e-3 * reg + 2.0 * recon + 0.5 * kd), rel=1e-5)
    _, narrow = method.loss(x, y, width=2)
    assert "recon" not in narrow  # the reference exists at its own width only
    method.steps = 5
    assert method.recon_weight() == pytest.approx(1.0)
    method.steps = 20
    assert method.recon_weight() == 0.0


def test_steps_lower_the_loss_and_evaluate_matches_a_hand_count():
    method, _ = make(widths=(2, 3, 4))
    torch.manual_seed(1)
    x = torch.randn(32, 1, 5, 5)
    y = (x.mean((1, 2, 3)) > 0).long()
    opt = torch.optim.Adam(method.model.parameters(), 3e-3)
    first = sum(method.loss(x, y, width=w)[1]["ce"] for w in (2, 3, 4))
    for _ in range(40):
        method.step(x, y, opt)
    last = sum(method.loss(x, y, width=w)[1]["ce"] for w in (2, 3, 4))
    assert last < first
    acc = method.evaluate(x, y, widths=[3, 5], batch=7)
    method.model.eval()
    theta = method.model.weights(target=Net(5))
    hand = 100.0 * float((functional_call(Net(5), theta, (x,)).argmax(-1) == y).float().mean())
    assert acc[5] == pytest.approx(hand) and set(acc) == {3, 5}


def test_width_sampling_resumes_exactly():
    method, _ = make(widths=range(1, 9))
    method.steps = 3
    state = method.state_dict()
    first = [method.sample_width() for _ in range(10)]
    other, _ = make(widths=range(1, 9))
    other.load_state_dict(state)
    assert [other.sample_width() for _ in range(10)] == first and other.steps == 3


def test_bad_arguments():
    with pytest.raises(hd.HDTypeError, match="AnyWidth: model must be a HyperDNN"):
        AnyWidth(Net(2), Net, [2], Net(2))
    method, ref = make()
    with pytest.raises(hd.ConfigError, match="loss weight recon"):
        AnyWidth(method.model, Net, [2], ref, recon=-1)
    with pytest.raises(hd.ConfigError, match="widths must be positive"):
        AnyWidth(method.model, Net, [], ref)


REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(
    not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()),
    reason=f"MNIST not found under {DATA}",
)


@needs_mnist
def test_recipe_any_width_mnist_short(tmp_path):
    from hyperdnn.experiments.registry import get_recipe
    from hyperdnn.experiments.runs import run_recipe

    r = get_recipe("any-width-mnist")
    cfg = r.config(min_width=3, max_width=5, net_steps=3, hyper_steps=4, batch_size=16, train_subset=64,
                   test_subset=50, num_freqs=2, hidden=(8,))
    res = run_recipe(r, cfg, data_dir=DATA, out_dir=tmp_path, show_progress=False, print_tables=False,
                     checkpoint_every=0, threads=1)
    out = res.results
    assert out["train_widths"] == [4, 5] and out["test_widths"] == [3, 4, 5]
    assert set(out["accuracy"]) == {"scratch", "pruned", "pruned (permuted)", "grid", "grid-no-permutation", "grid-no-noise"}
    assert out["hypernetwork_params"]["grid"] == out["widest_network_params"]  # the grids are the widest network
    assert all(0 <= a <= 100 for c in out["accuracy"].values() for a in c.values())
    # The widest scratch network is the reference itself, and cutting it to its own width changes nothing.
    assert out["accuracy"]["scratch"]["5"] == out["accuracy"]["pruned"]["5"]
    from hyperdnn.experiments.recipes.any_width_mnist import LeNet

    assert out["replaced_networks_params"] == sum(sum(p.numel() for p in LeNet(w).parameters()) for w in (3, 4, 5))
    assert (res.run_dir / "accuracy_vs_width.png").is_file()
    assert "never sampled in training" in (res.run_dir / "results.md").read_text()


def test_standardized_reconstruction_every_step():
    method, reference = make(recon=1.0, reg=0.0, standardize_recon=True, recon_every_step=True)
    x, y = torch.randn(6, 1, 5, 5), torch.randint(0, 3, (6,))
    total, parts = method.loss(x, y, width=2)  # not the reference width: the reference's weights are made too
    ref = dict(smooth_permutation(reference).named_parameters())
    theta2, theta4 = method.model.weights(target=Net(2)), method.model.weights(target=Net(4))
    eps = 1e-6
    by_hand = torch.stack([
        (((theta4[n] - r) ** 2 * ((r.abs() + eps) / (r.abs() + eps).max())).mean() / (r.var() + eps))
        for n, r in ref.items()
    ]).mean().detach()
    ce = F.cross_entropy(functional_call(Net(2), theta2, (x,)), y)
    assert parts["recon"] == pytest.approx(float(by_hand), rel=1e-5)
    assert float(total.detach()) == pytest.approx(float(ce.detach() + by_hand), rel=1e-5)


@needs_mnist
@pytest.mark.parametrize("stop_at", [5, 11, 13, 15])  # in a scratch network's job; in the grid's; at its end; in the Fourier MLP's
def test_recipe_any_width_mnist_resumes_exactly(tmp_path, interrupted_run, stop_at):
    """Ctrl-C mid-run then ``--resume`` gives the uninterrupted run's results and metrics, byte for byte."""
    import json

    from hyperdnn.experiments.registry import get_recipe
    from hyperdnn.experiments.runs import run_recipe

    r = get_recipe("any-width-mnist")
    cfg = dict(min_width=3, max_width=5, net_steps=3, hyper_steps=4, batch_size=16, train_subset=64,
               test_subset=50, num_freqs=2, hidden=(8,), variants=("grid", "implicit"))
    kw = dict(data_dir=DATA, show_progress=False, print_tables=False, checkpoint_every=0, threads=1, seed=0)
    ref = run_recipe(r, r.config(**cfg), out_dir=tmp_path / "ref", **kw)
    run_dir = interrupted_run(r, r.config(**cfg), stop_at, out_dir=tmp_path / "cut", **kw)
    resumed = run_recipe(r, resume=run_dir, show_progress=False, print_tables=False)
    strip = lambda res: {k: v for k, v in res.items() if k != "train_seconds"}  # wall-clock times differ
    assert json.dumps(strip(resumed.results), sort_keys=True) == json.dumps(strip(ref.results), sort_keys=True)
    assert (run_dir / "metrics.jsonl").read_text() == (ref.run_dir / "metrics.jsonl").read_text()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3 * 3 + 2 * 4  # every step logged: 3 networks, 2 hypernetworks
