"""Continual-learning method: output regularizer, task inference by entropy, metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hyperdnn.bodies import MLP
from hyperdnn.conditioning import TaskEmbedding
from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.continual import (
    ContinualLearning,
    average_final,
    choose_regularized_tasks,
    cl3_predict,
    flat_weights,
    forgetting,
    infer_task,
    output_regularizer,
    predictive_entropy,
    store_targets,
    xavier_init_,
)
from hyperdnn.outputs import ChunkWise, GenerateOnce


def small_model(outputs=None) -> HyperDNN:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))  # P = 9 + 4 = 13
    return HyperDNN(target, inputs=TaskEmbedding(3, 4), outputs=outputs or GenerateOnce(), body=MLP((5,), "relu"))


def test_store_targets_is_the_flattened_weights_per_task() -> None:
    model = small_model()
    targets = store_targets(model, 2)
    assert targets.shape == (2, 13) and not targets.requires_grad
    for k in range(2):
        theta = model.weights(task=k)
        ref = torch.cat([theta[n].reshape(-1) for n in ["0.weight", "0.bias", "2.weight", "2.bias"]])
        assert torch.allclose(targets[k], ref)
        assert torch.allclose(flat_weights(theta, [p.name for p in model.spec.params]), ref)
    assert store_targets(model, 0).shape == (0, 13)


@pytest.mark.parametrize("outputs", [GenerateOnce(), ChunkWise(chunk_size=5, chunk_dim=3)])
def test_regularizer_hand_computed(outputs) -> None:
    model = small_model(outputs)
    current = store_targets(model, 2)  # (2, 13)
    # targets moved by +1 for task 0 and by -2 for task 1: ||.||^2 = 13 and 4 * 13
    targets = current + torch.tensor([[1.0], [-2.0]])
    reg = output_regularizer(model, targets)
    assert reg.item() == pytest.approx((13 * 1.0 + 13 * 4.0) / 2, rel=1e-5)
    assert output_regularizer(model, targets, [1]).item() == pytest.approx(52.0, rel=1e-5)
    assert output_regularizer(model, targets, []).item() == 0.0


@pytest.mark.parametrize("ids", [None, [0, 1, 2], [2, 0], [0, 2], [1]])
def test_regularizer_matches_a_loop_and_its_gradient(ids: list[int] | None) -> None:
    model = small_model(ChunkWise(chunk_size=4, chunk_dim=2))
    targets = store_targets(model, 3)
    with torch.no_grad():  # move phi so that the regularizer is not zero
        for p in model.hypernetwork.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reg = output_regularizer(model, targets, ids)
    names = [p.name for p in model.spec.params]
    ks = ids if ids is not None else [0, 1, 2]
    ref = sum(((flat_weights(model.weights(task=k), names) - targets[k]) ** 2).sum() for k in ks) / len(ks)
    assert torch.allclose(reg, ref, rtol=1e-5)
    g1 = torch.autograd.grad(reg, list(model.hypernetwork.outputs.parameters()))
    g2 = torch.autograd.grad(ref, list(model.hypernetwork.outputs.parameters()))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_regularizer_shape_error() -> None:
    model = small_model()
    with pytest.raises(ShapeError, match=r"\(K, 13\)"):
        output_regularizer(model, torch.zeros(2, 12))


def test_other_task_embeddings_do_not_move() -> None:
    model = small_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    cl = ContinualLearning(model, opt, beta=1.0)
    cl.start_task(0)
    cl.end_task()
    cl.start_task(1)
    before = model.hypernetwork.inputs.table.weight.detach().clone()
    regs = []
    for _ in range(3):
        x = torch.randn(8, 2)
        regs.append(cl.step(model(x, task=1).pow(2).mean()).reg.item())  # the regularizer reaches row 0
    assert all(r > 0 for r in regs)  # so row 0 had a gradient, and was kept fixed
    after = model.hypernetwork.inputs.table.weight.detach()
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.equal(after[1], before[1])


def test_entropy_and_task_inference_by_hand() -> None:
    # two candidate tasks, three inputs, two classes
    logits = torch.tensor(
        [
            [[4.0, 0.0], [0.0, 0.0], [1.0, 1.0]],  # task 0: confident on input 0
            [[0.0, 0.0], [0.0, -5.0], [1.0, 1.0]],  # task 1: confident on input 1; input 2 ties
        ]
    )
    h = predictive_entropy(logits)
    p = 1 / (1 + math.exp(-4.0))
    assert h[0, 0].item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)), rel=1e-5)
    assert h[0, 1].item() == pytest.approx(math.log(2), rel=1e-6)
    assert infer_task(logits).tolist() == [0, 1, 0]  # a tie goes to the lowest index
    labels, tasks = cl3_predict(logits, label_offsets=[0, 2])
    assert tasks.tolist() == [0, 1, 0] and labels.tolist() == [0, 2, 0]
    with pytest.raises(ShapeError):
        infer_task(logits[0])


def test_metrics_by_hand() -> None:
    m = [[99.0], [90.0, 98.0], [80.0, 97.0, 96.0]]
    assert average_final(m) == pytest.approx((80 + 97 + 96) / 3)
    assert forgetting(m) == pytest.approx(((99 - 80) + (98 - 97)) / 2)
    mse = [[0.1], [0.5, 0.2], [0.4, 0.3, 0.1]]
    assert forgetting(mse, higher_is_better=False) == pytest.approx(((0.4 - 0.1) + (0.3 - 0.2)) / 2)
    assert forgetting([[1.0]]) == 0.0


def test_choose_regularized_tasks() -> None:
    g = torch.Generator().manual_seed(0)
    assert choose_regularized_tasks(4, None).tolist() == [0, 1, 2, 3]
    assert choose_regularized_tasks(3, 5).tolist() == [0, 1, 2]
    ids = choose_regularized_tasks(9, 3, g)
    assert len(ids) == 3 and len(set(ids.tolist())) == 3 and ids.max() < 9
    with pytest.raises(ConfigError):
        choose_regularized_tasks(3, 0)


def test_adam_lookahead_is_the_step_adam_takes() -> None:
    import copy

    from hyperdnn.methods.continual import adam_lookahead

    model = small_model(ChunkWise(chunk_size=5, chunk_dim=3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(3):  # the first step (empty state) and later ones
        x = torch.randn(6, 2)
        opt.zero_grad()
        model(x, task=step % 3).pow(2).mean().backward()
        delta = adam_lookahead(model, opt)
        before = {n: p.detach().clone() for n, p in model.hypernetwork.outputs.named_parameters()}
        opt.step()
        assert set(delta) == set(before)
        for n, p in model.hypernetwork.outputs.named_parameters():
            assert torch.allclose(p.detach() - before[n], delta[n], rtol=1e-4, atol=1e-8), (step, n)
    # the regularizer with a look-ahead equals the plain one on a model moved by delta
    targets = store_targets(model, 2) + 0.1
    opt.zero_grad()
    model(torch.randn(6, 2), task=2).pow(2).mean().backward()
    delta = adam_lookahead(model, opt)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in moved.hypernetwork.outputs.named_parameters():
            p.add_(delta[n])
    reg = output_regularizer(model, targets, delta=delta)
    assert torch.allclose(reg, output_regularizer(moved, targets), rtol=1e-5)
    # its gradient reaches phi (through phi + delta, delta held constant)
    g = torch.autograd.grad(reg, model.hypernetwork.outputs.head.weight)[0]
    g_ref = torch.autograd.grad(output_regularizer(moved, targets), moved.hypernetwork.outputs.head.weight)[0]
    assert torch.allclose(g, g_ref, rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="Adam"):
        adam_lookahead(model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_xavier_init_resets_body_and_head_only() -> None:
    model = small_model(ChunkWise(chunk_size=5, chunk_dim=3))
    emb = model.hypernetwork.inputs.table.weight.detach().clone()
    chunks = model.hypernetwork.outputs.chunk_embeddings.detach().clone()
    torch.manual_seed(1)
    xavier_init_(model)
    linears = [m for m in model.hypernetwork.outputs.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2  # body layer 7 -> 5 and the head 5 -> 5
    for m in linears:
        bound = math.sqrt(6.0 / (m.in_features + m.out_features))  # Glorot & Bengio's uniform bound
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.5 * bound
        assert torch.equal(m.bias, torch.zeros_like(m.bias))
    assert torch.equal(model.hypernetwork.inputs.table.weight, emb)
    assert torch.equal(model.hypernetwork.outputs.chunk_embeddings, chunks)
    with pytest.raises(ConfigError, match="xavier_init_"):
        xavier_init_(nn.Linear(2, 2))
