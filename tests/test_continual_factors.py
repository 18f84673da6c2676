"""The factored (Gram-matrix) output regularizer, the per-task masks, the CL3 diagnostics and the
split-mnist presets, each against an independent reference: a per-task loop, positions by hand,
a per-sample loop, the posterior_replay_cl command lines."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.methods import ContinualLearning, adam_lookahead, output_regularizer, store_targets
from hyperdnn.methods.continual.chunk_factors import factored_regularizer, make_factors, store_factors
from hyperdnn.methods.continual.diagnostics import cl3_diagnostics

NUM_TASKS = 4


def make_model(seed: int = 0, chunk_size: int = 64, dtype: torch.dtype = torch.float32, bias: bool = True) -> hd.HyperDNN:
    torch.manual_seed(seed)
    target = nn.Sequential(nn.Linear(20, 30), nn.Tanh(), nn.Linear(30, 2 * NUM_TASKS))  # 908 weights: 15 chunks of 64, the last one partial
    model = hd.HyperDNN(target, inputs=hd.TaskEmbedding(NUM_TASKS, 5), outputs=hd.ChunkWise(chunk_size=chunk_size, chunk_dim=3), body=hd.MLP((7,), "elu")).to(dtype)
    if not bias:
        model.hypernetwork.outputs.head.bias = None
    return model


def per_task_loop(model: hd.HyperDNN, stored: list[torch.Tensor], ids: list[int], delta: dict[str, torch.Tensor] | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The regularizer as the released code writes it: one task at a time, all weights flattened."""
    outs = model.hypernetwork.outputs
    params = {n: p + (delta[n] if delta and n in delta else 0) for n, p in outs.named_parameters()}
    total = 0.0
    for k in ids:
        theta = torch.func.functional_call(outs, params, (model.condition(task=k).z,))
        flat = torch.cat([theta[p.name].reshape(-1) for p in model.spec.params])
        diff = flat - stored[k]
        total = total + ((diff if mask is None else diff[mask[k]]) ** 2).sum()
    return total / len(ids)


def moved_away(model: hd.HyperDNN, scale: float = 0.05) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("ids", [[0, 1, 2], [2], [0, 2]])
@pytest.mark.parametrize("bias", [True, False])
def test_factored_regularizer_equals_the_per_task_loop(dtype: torch.dtype, rtol: float, ids: list[int], bias: bool) -> None:
    model = make_model(dtype=dtype, bias=bias)
    assert model.spec.numel % 64 != 0  # the last chunk's tail is not a target weight
    targets, factors = store_targets(model, 3), store_factors(model, 3)
    stored = [targets[k].clone() for k in range(3)]
    moved_away(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 20, dtype=dtype), task=3).pow(2).sum().backward()
    delta = adam_lookahead(model, opt)
    params = list(model.parameters())
    for d in (None, delta):
        ref = per_task_loop(model, stored, ids, d)
        got = output_regularizer(model, targets, ids, d, factors=factors)
        assert ref.item() > 1e-3 and got.item() == pytest.approx(ref.item(), rel=rtol)
        g_ref = torch.autograd.grad(ref, params, allow_unused=True)
        g_got = torch.autograd.grad(got, params, allow_unused=True)
        for (name, _), a, b in zip(model.named_parameters(), g_ref, g_got):
            if a is None:
                assert b is None or not b.any(), name
            else:
                torch.testing.assert_close(b, a, rtol=rtol * 10, atol=rtol * float(a.abs().max()), msg=name)


def test_factored_regularizer_is_zero_at_the_stored_point_and_checks_its_factors() -> None:
    model = make_model()
    targets, factors = store_targets(model, 2), store_factors(model, 2)
    assert abs(output_regularizer(model, targets, None, factors=factors).item()) < 1e-9
    with pytest.raises(ShapeError, match="factors hold 2 tasks"):
        output_regularizer(model, store_targets(model, 3), None, factors=factors)
    with pytest.raises(ShapeError, match="chunks of 64"):
        factored_regularizer(make_model(chunk_size=100), factors, torch.arange(2))
    with pytest.raises(ShapeError, match="do not make"):
        make_factors(factors.weight, factors.bias, factors.hidden, 10_000)
    with pytest.raises(ShapeError, match="weight must be"):
        make_factors(factors.weight, factors.bias, factors.hidden[..., :2], model.spec.numel)
    other = hd.HyperDNN(nn.Linear(3, 2), inputs=hd.TaskEmbedding(2, 2), outputs=hd.LowRank(rank=1))
    assert store_factors(other, 1) is None  # not chunk-wise: the straightforward formula
    with pytest.raises(ConfigError, match="ChunkWise"):
        factored_regularizer(other, factors, torch.arange(1))


def train(factored: bool, steps: int = 5, **kw) -> tuple[ContinualLearning, list[float]]:
    model = make_model()
    cl = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=0.01), beta=0.5, factored_regularizer=factored, generator=torch.Generator().manual_seed(3), **kw)
    g = torch.Generator().manual_seed(1)
    regs = []
    for t in range(NUM_TASKS):
        cl.start_task(t)
        for _ in range(steps):
            x, y = torch.randn(6, 20, generator=g), torch.randint(0, 2, (6,), generator=g)
            done = cl.step(F.cross_entropy(cl.predict(x, t)[:, 2 * t : 2 * t + 2], y))
            regs.append(done.reg.item())
        cl.end_task()
    return cl, regs


def test_training_with_factors_equals_the_straightforward_regularizer() -> None:
    fast, regs_fast = train(True)
    slow, regs_slow = train(False)
    assert fast.factors is not None and slow.factors is None
    assert regs_fast == pytest.approx(regs_slow, rel=1e-4, abs=1e-7) and max(regs_fast) > 0
    for (n, a), b in zip(fast.model.named_parameters(), slow.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)


def test_state_with_factors_resumes_and_old_states_load() -> None:
    cl, _ = train(True, steps=2)
    cl.learned, cl.task = NUM_TASKS - 1, None
    cl.start_task(NUM_TASKS - 1)
    state = copy.deepcopy(cl.state_dict())
    assert set(state["factors"]) == {"weight", "bias", "hidden"} and state["factors"]["hidden"].shape[0] == NUM_TASKS - 1
    twin = ContinualLearning(cl.model, cl.optimizer)
    twin.load_state_dict(state)
    x = torch.randn(6, 20)
    a = output_regularizer(cl.model, cl.targets, None, factors=cl.factors)
    b = output_regularizer(twin.model, twin.targets, None, factors=twin.factors)
    assert a.item() == b.item() and torch.equal(twin.factors.gram, cl.factors.gram)
    old = {k: v for k, v in state.items() if k != "factors"}  # a checkpoint from before the factors
    twin.load_state_dict(old)
    assert twin.factors is None and twin.step(F.cross_entropy(twin.predict(x, NUM_TASKS - 1)[:, :2], torch.zeros(6, dtype=torch.long))).reg.item() > 0
    with pytest.raises(ConfigError, match="factors must be"):
        twin.load_state_dict({**state, "factors": {"weight": state["factors"]["weight"]}})


def test_mask_leaves_out_what_it_says_and_factors_are_not_used_with_it() -> None:
    model = make_model()
    targets, factors = store_targets(model, 3), store_factors(model, 3)
    moved_away(model)
    mask = torch.rand(NUM_TASKS, model.spec.numel, generator=torch.Generator().manual_seed(0)) > 0.3
    ref = per_task_loop(model, list(targets), [0, 2], mask=mask)
    assert output_regularizer(model, targets, [0, 2], mask=mask, factors=factors).item() == pytest.approx(ref.item(), rel=1e-5)
    assert output_regularizer(model, targets, [0, 2], mask=mask).item() < output_regularizer(model, targets, [0, 2]).item()
    with pytest.raises(ShapeError, match="mask must be"):
        output_regularizer(model, targets, [0], mask=mask.float())
    with pytest.raises(ConfigError, match="reg_mask"):
        ContinualLearning(model, torch.optim.Adam(model.parameters()), reg_mask=mask[:2])


def test_own_head_mask_positions_by_hand() -> None:
    from hyperdnn.experiments.recipes._continual import own_head_mask

    model = make_model()
    heads = [slice(2 * k, 2 * k + 2) for k in range(NUM_TASKS)]
    mask = own_head_mask(model, heads)
    # flat layout: W1 (30x20), b1 (30), W2 (8x30), b2 (8)
    w2, b2 = 20 * 30 + 30, 20 * 30 + 30 + 8 * 30
    for k in range(NUM_TASKS):
        expect = torch.ones(model.spec.numel, dtype=torch.bool)
        for j in range(NUM_TASKS):
            if j != k:
                expect[w2 + 2 * j * 30 : w2 + (2 * j + 2) * 30] = False
                expect[b2 + 2 * j : b2 + 2 * j + 2] = False
        assert torch.equal(mask[k], expect)
    assert int((~mask[0]).sum()) == 3 * (2 * 30 + 2)


def test_free_earlier_embeddings_move_and_fixed_ones_do_not() -> None:
    ends = {}
    for fix in (True, False):
        model = make_model()
        cl = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=0.01), beta=0.5, fix_earlier_embeddings=fix)
        table = model.hypernetwork.inputs.table.weight
        g = torch.Generator().manual_seed(1)
        for t in range(2):
            cl.start_task(t)
            for _ in range(3):
                cl.step(F.cross_entropy(cl.predict(torch.randn(6, 20, generator=g), t)[:, 2 * t : 2 * t + 2], torch.randint(0, 2, (6,), generator=g)))
            cl.end_task()
            if t == 0:
                after_task_0 = table[0].detach().clone()
        ends[fix] = (after_task_0, table[0].detach().clone())
    assert torch.equal(*ends[True])  # fixed: task 0's embedding as it was learned
    assert torch.equal(ends[True][0], ends[False][0]) and not torch.allclose(*ends[False])  # free: the regularizer moved it


@torch.no_grad()
def test_cl3_diagnostics_by_a_per_sample_loop() -> None:
    model = make_model(seed=2)
    with torch.no_grad():  # saturate some softmaxes: fp32 probabilities of exactly 0
        model.hypernetwork.outputs.head.weight.mul_(40)
    heads = [slice(2 * k, 2 * k + 2) for k in range(NUM_TASKS)]
    offsets = [2 * k for k in range(NUM_TASKS)]
    g = torch.Generator().manual_seed(0)
    tests = [(torch.randn(30, 20, generator=g), torch.randint(0, 2, (30,), generator=g)) for _ in range(NUM_TASKS)]
    model.eval()
    diag = cl3_diagnostics(model, tests, heads, offsets)
    for k, (x, y) in enumerate(tests):
        zero = released = seen = 0
        for i in range(x.shape[0]):
            probs = [F.softmax(model(x[i : i + 1], task=j)[0, heads[j]], -1) for j in range(NUM_TASKS)]
            zero += any(bool((p == 0).any()) for p in probs)
            ent = [float(-(p * torch.log(p)).sum()) for p in probs]
            nan = [j for j in range(NUM_TASKS) if math.isnan(ent[j])]
            j = nan[0] if nan else min(range(NUM_TASKS), key=lambda c: (ent[c], c))  # torch.argmin picks a NaN
            released += int(probs[j].argmax()) + offsets[j] == int(y[i]) + offsets[k]
            logps = [F.log_softmax(model(x[i : i + 1], task=c)[0, heads[c]], -1) for c in range(k + 1)]
            clean = [float(-(lp.exp() * lp).sum()) for lp in logps]  # 0 log 0 = 0
            j = min(range(k + 1), key=lambda c: (clean[c], c))
            seen += int(probs[j].argmax()) + offsets[j] == int(y[i]) + offsets[k]
        assert diag.zero_probability[k] == zero and diag.inputs[k] == 30
        assert diag.released_entropy[k] == pytest.approx(100 * released / 30)
        assert diag.seen_candidates[k] == pytest.approx(100 * seen / 30)
    assert sum(diag.zero_probability) > 0  # the saturated case was exercised
    assert diag.seen_candidates[0] == pytest.approx(100 * float((model(tests[0][0], task=0)[:, :2].argmax(-1) == tests[0][1]).float().mean()))
    with pytest.raises(ConfigError, match="one entry per task"):
        cl3_diagnostics(model, tests, heads[:2], offsets)


def test_split_mnist_presets_are_the_posterior_replay_cl_command_lines() -> None:
    from hyperdnn.experiments.recipes.split_mnist import Config

    large = Config(preset="henning2021-large-mlp")
    # README.rst: --chmlp_chunk_size=4500 --beta=2.0 --n_iter=5000 --lr=0.0001 --hmlp_arch=100,100
    # --chunk_emb_size=32 --hnet_net_act=sigmoid; defaults: mlp_arch 400,400, batch 128, cond_emb_size 32
    assert (large.chunk_size, large.beta, large.steps, large.lr, large.hnet_hidden, large.hnet_activation) == (4500, 2.0, 5000, 1e-4, (100, 100), "sigmoid")
    assert (large.target_hidden, large.batch_size, large.emb_dim, large.chunk_dim, large.chunk_init_std) == ((400, 400), 128, 32, 32, 1.0)
    assert (large.lookahead, large.nll_scale, large.reg_own_head, large.fix_earlier_embeddings) == (False, "train-set", True, False)
    small = Config(preset="henning2021-small-mlp")
    # --chmlp_chunk_size=8000 --beta=10.0 --batch_size=32 --lr=0.0005 --mlp_arch="100,100"
    # --hmlp_arch="10,10,10,10" --cond_emb_size=32 --chunk_emb_size="32" --std_normal_emb=0.1
    assert (small.chunk_size, small.beta, small.batch_size, small.lr, small.target_hidden, small.hnet_hidden, small.hnet_activation, small.chunk_init_std) == (8000, 10.0, 32, 5e-4, (100, 100), (10, 10, 10, 10), "relu", 0.1)
    assert Config(preset="henning2021-large-mlp", steps=300, beta=0.5).steps == 300  # options given keep their values
    assert Config().beta == 0.01 and Config().lookahead  # no preset: the released configuration
    with pytest.raises(ConfigError, match="preset"):
        Config(preset="henning")
    with pytest.raises(ConfigError, match="reg_own_head"):
        Config(reg_own_head=True, multi_head=False)
    with pytest.raises(ConfigError, match="nll_scale"):
        Config(nll_scale="sum")
