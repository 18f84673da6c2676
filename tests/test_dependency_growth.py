"""Network growth of dependency-preserving hypernetworks (the authors' per-task parameter copies):
each task generated from its own copy equals the hypernetwork as it was at the end of that task
(a deep copy taken then), CL1/CL3 against hand-written loops, the frozen recurrent weights held
once, checkpoints, errors, and the dphn recipe's rnn-grow model (with resume)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.methods.continual import ContinualLearning, NetworkGrowth, dependency_preserving_hnet, flat_weights, freeze_recurrent_, recurrent_parameters

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(not ((DATA / "mnist").is_dir() or (DATA / "train-images-idx3-ubyte.gz").is_file()), reason=f"MNIST not found under {DATA}")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def target() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 6))  # two 3-class heads


def flat(model: hd.HyperDNN, theta: dict) -> torch.Tensor:
    return flat_weights(theta, [p.name for p in model.spec.params])


def train_three_tasks():
    """3 tasks (3 classes each, heads 0:3 and 3:6), frozen recurrent weights from task 2 on,
    a copy stored after each task; also deep copies of the whole model at each task's end."""
    torch.manual_seed(0)
    model = dependency_preserving_hnet(target(), 3, emb_dim=5, chunk_size=10, chunk_dim=4, hidden=7)
    heads = [slice(0, 3), slice(3, 6), slice(0, 3)]
    cl = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=2e-2), beta=0.05, heads=heads)
    grow = NetworkGrowth(model)
    data = [(torch.randn(40, 6), torch.randint(0, 3, (40,))) for _ in range(3)]
    ends = []
    for t in range(3):
        if t == 1:
            freeze_recurrent_(model)
        cl.start_task(t)
        x, y = data[t]
        for _ in range(6):
            cl.step(F.cross_entropy(cl.predict(x, t), y))
        cl.end_task()
        grow.store(t)
        ends.append(copy.deepcopy(model))
    return model, cl, grow, data, ends, heads


def test_each_task_is_generated_by_its_copy_as_at_the_end_of_its_training() -> None:
    model, cl, grow, data, ends, heads = train_three_tasks()
    live = {n: p.detach().clone() for n, p in model.named_parameters()}
    for k in range(3):
        expected = flat(ends[k], ends[k].weights(task=k)).detach()
        assert torch.allclose(flat(model, grow.weights(k)), expected, atol=1e-6)
    # the live model drifted for the earlier tasks (that is what the copies avoid) and is restored after use
    assert not torch.allclose(flat(model, model.weights(task=0)).detach(), flat(ends[0], ends[0].weights(task=0)).detach())
    assert all(torch.equal(p, live[n]) for n, p in model.named_parameters())
    # the copy of the last task is the live model
    assert torch.allclose(flat(model, grow.weights(2)), flat(model, model.weights(task=2)).detach(), atol=1e-6)


def test_cl1_and_cl3_from_the_copies_equal_hand_written_loops() -> None:
    model, cl, grow, data, ends, heads = train_three_tasks()
    thetas = [ends[k].weights(task=k) for k in range(3)]
    with torch.no_grad():
        logits = [[ends[0].run_target(x, th)[..., heads[j]] for j, th in enumerate(thetas)] for x, _ in data]
    cl1 = [100.0 * int((logits[k][k].argmax(-1) == y).sum()) / y.numel() for k, (_, y) in enumerate(data)]
    assert grow.evaluate_cl1(cl, data) == pytest.approx(cl1, abs=1e-9)
    assert grow.evaluate_cl1(cl, data[:2]) == pytest.approx(cl1[:2], abs=1e-9)
    # CL3: per input, the task whose softmax has the lowest entropy predicts; labels offset by 3 per task
    accs, infs = [], []
    for k, (_, y) in enumerate(data):
        ent = torch.stack([-(F.softmax(l, -1) * F.log_softmax(l, -1)).sum(-1) for l in logits[k]])  # (J, N)
        which = ent.argmin(0)
        pred = torch.stack([logits[k][int(j)][i].argmax() + 3 * int(j) for i, j in enumerate(which)])
        accs.append(100.0 * int((pred == y + 3 * k).sum()) / y.numel())
        infs.append(100.0 * int((which == k).sum()) / y.numel())
    got = grow.evaluate_cl3(cl, data, label_offsets=[0, 3, 6])
    assert got.per_task == pytest.approx(accs, abs=1e-9) and got.task_inference == pytest.approx(infs, abs=1e-9)


def test_the_frozen_recurrent_weights_are_held_once_and_checkpoints_round_trip() -> None:
    model, cl, grow, data, ends, heads = train_three_tasks()
    table = model.hypernetwork.inputs.table.weight
    everything = sum(p.numel() for p in model.hypernetwork.parameters()) - table.numel()
    recurrent = sum(p.numel() for p in recurrent_parameters(model))
    # copy 0 was taken before freezing, but the frozen values are those of task 1's end: shared by all three
    assert grow.stored_parameters() == 3 * (everything - recurrent) + recurrent
    assert grow.inference_parameters() == grow.stored_parameters() + table.numel()
    hh = [n for n in grow.names if "weight_hh" in n][0]
    assert grow.snapshots[0][hh] is grow.snapshots[1][hh] is grow.snapshots[2][hh]

    other = NetworkGrowth(model)
    other.load_state_dict(copy.deepcopy(grow.state_dict()))
    assert other.stored_parameters() == grow.stored_parameters()
    for k in range(3):
        assert torch.equal(flat(model, other.weights(k)), flat(model, grow.weights(k)))
    with pytest.raises(ConfigError, match="tasks 0..n-1"):
        other.load_state_dict({"snapshots": {"1": grow.snapshots[1]}})
    with pytest.raises(ConfigError, match="must be a tensor of shape"):
        other.load_state_dict({"snapshots": {"0": {**grow.snapshots[0], hh: torch.zeros(3)}}})


def test_network_growth_errors() -> None:
    model, cl, grow, data, ends, heads = train_three_tasks()
    with pytest.raises(HDTypeError, match="must be a hyperdnn.HyperDNN"):
        NetworkGrowth(target())  # type: ignore[arg-type]
    plain = hd.HyperDNN(target(), inputs=hd.External(3), outputs=hd.ChunkWise(10, 4), body=hd.MLP((7,)))
    with pytest.raises(ConfigError, match="inputs=TaskEmbedding"):
        NetworkGrowth(plain)
    fresh = NetworkGrowth(model)
    with pytest.raises(ConfigError, match="the next is 0 .got 2."):
        fresh.store(2)
    with pytest.raises(ConfigError, match="no copy is stored for task 0"):
        fresh.weights(0)
    fresh.store(0)
    with pytest.raises(ConfigError, match="1..1 stored tasks .got 3."):
        fresh.evaluate_cl1(cl, data)
    other = ContinualLearning(dependency_preserving_hnet(target(), 3, emb_dim=5, chunk_size=10, chunk_dim=4, hidden=7), torch.optim.Adam([nn.Parameter(torch.zeros(1))]))
    with pytest.raises(HDTypeError, match="cl must be the ContinualLearning training"):
        grow.evaluate_cl1(other, data)
    with pytest.raises(HDTypeError, match="one test set per task"):
        grow.evaluate_cl3(cl, data[0])


@needs_mnist
def test_dphn_recipe_rnn_grow_and_its_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperdnn.experiments.context import RunContext, RunInterrupted
    from hyperdnn.experiments.recipes import get_recipe
    from hyperdnn.experiments.runs import run_recipe

    r = get_recipe("dphn")
    cfg = dict(tasks=2, steps=4, models=("rnn-freeze", "rnn-grow"))
    kw = dict(data_dir=DATA, show_progress=False, print_tables=False, checkpoint_every=0, threads=1)
    ref = run_recipe(r, r.config(**cfg), out_dir=tmp_path / "ref", **kw).results["models"]
    freeze, grow = ref["rnn-freeze"], ref["rnn-grow"]
    # trained alike; the copies keep each task at its end-of-task accuracy: no forgetting
    assert grow["cl1"] == [freeze["matrix"][k][k] for k in range(2)]
    assert grow["matrix"][0] == freeze["matrix"][0] and grow["forgetting"] == 0.0
    assert grow["compression_ratio"] > 1.9 * freeze["compression_ratio"]  # two copies (recurrent weights shared)

    # interrupted in rnn-grow's second task (after copy 0 was stored), then resumed: the same results
    done = RunContext.step_done

    def stop_once(self, n=1, **metrics):
        if self.global_step == 8 + 5 and not getattr(stop_once, "fired", False):
            stop_once.fired = True
            self.request_stop()
        return done(self, n, **metrics)

    monkeypatch.setattr(RunContext, "step_done", stop_once)
    with pytest.raises(RunInterrupted):
        run_recipe(r, r.config(**cfg), out_dir=tmp_path / "cut", **kw)
    monkeypatch.setattr(RunContext, "step_done", done)
    run_dir = next((tmp_path / "cut").iterdir())
    got = run_recipe(r, resume=run_dir, show_progress=False, print_tables=False).results["models"]
    for kind in ("rnn-freeze", "rnn-grow"):
        for key in ("matrix", "cl1", "cl3", "compression_ratio", "hypernetwork_parameters"):
            assert got[kind][key] == ref[kind][key], (kind, key)
