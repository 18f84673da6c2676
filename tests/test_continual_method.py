"""ContinualLearning, the method object: a hand-written reference loop, CL3 by a per-sample loop, errors, state."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.errors import ConfigError, HDTypeError, ShapeError
from hyperdnn.methods import ContinualLearning

NUM_TASKS, HEAD = 3, 2


def make_model(seed: int = 0, outputs=None) -> hd.HyperDNN:
    torch.manual_seed(seed)
    target = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, HEAD * NUM_TASKS))  # one 2-way head per task
    return hd.HyperDNN(target, inputs=hd.TaskEmbedding(NUM_TASKS, 3), outputs=outputs or hd.ChunkWise(chunk_size=16, chunk_dim=3), body=hd.MLP((8,)))


def heads() -> list[slice]:
    return [slice(HEAD * k, HEAD * k + HEAD) for k in range(NUM_TASKS)]


def task_data(steps: int, seed: int = 1) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    return [[(torch.randn(5, 4, generator=g), torch.randint(0, HEAD, (5,), generator=g)) for _ in range(steps)] for _ in range(NUM_TASKS)]


def reference_training(model: hd.HyperDNN, opt: torch.optim.Adam, data, beta: float, reg_tasks: int | None, gen: torch.Generator, lookahead: bool) -> list[float]:
    """The paper's training written out by hand, independent of hyperdnn.methods: the look-ahead is
    the step a copy of the optimizer really takes, the regularizer the plain formula."""
    names = [p.name for p in model.spec.params]
    table = model.hypernetwork.inputs.table.weight
    regs = []
    for t, batches in enumerate(data):
        opt.state.clear()
        with torch.no_grad():
            stored = [torch.cat([w.reshape(-1) for w in model.weights(task=k).values()]) for k in range(t)]
        for x, y in batches:
            loss = F.cross_entropy(model(x, task=t)[:, heads()[t]], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t > 0:
                ids = list(range(t)) if reg_tasks is None or reg_tasks >= t else torch.randperm(t, generator=gen)[:reg_tasks].sort().values.tolist()
                model_c, opt_c = copy.deepcopy((model, opt))  # Adam's state comes along
                for p, pc in zip(model.parameters(), model_c.parameters()):
                    pc.grad = None if p.grad is None else p.grad.clone()
                if lookahead:
                    opt_c.step()
                outs, outs_c = model.hypernetwork.outputs, model_c.hypernetwork.outputs
                moved = {n: p + (pc.detach() - p.detach()) for (n, p), pc in zip(outs.named_parameters(), outs_c.parameters())}
                reg = 0.0
                for k in ids:
                    theta = torch.func.functional_call(outs, moved, (model.condition(task=k).z,))
                    flat = torch.cat([theta[n].reshape(-1) for n in names])
                    reg = reg + ((flat - stored[k]) ** 2).sum()
                reg = reg / len(ids)
                (beta * reg).backward()
                regs.append(reg.item())
            keep = table.grad[t].clone()
            table.grad.zero_()
            table.grad[t] = keep
            opt.step()
    return regs


@pytest.mark.parametrize("reg_tasks,lookahead", [(None, True), (1, True), (None, False)])
def test_training_equals_a_hand_written_loop(reg_tasks: int | None, lookahead: bool) -> None:
    data = task_data(steps=4)
    model, ref = make_model(), make_model()
    opt, opt_ref = torch.optim.Adam(model.parameters(), lr=0.05), torch.optim.Adam(ref.parameters(), lr=0.05)
    g, g_ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    cl = ContinualLearning(model, opt, beta=0.5, reg_tasks=reg_tasks, lookahead=lookahead, heads=heads(), generator=g)
    regs = []
    for t, batches in enumerate(data):
        cl.start_task(t)
        for x, y in batches:
            done = cl.step(F.cross_entropy(cl.predict(x, t), y))
            if t > 0:
                regs.append(done.reg.item())
        cl.end_task()
    regs_ref = reference_training(ref, opt_ref, data, 0.5, reg_tasks, g_ref, lookahead)
    assert regs == pytest.approx(regs_ref, rel=1e-4, abs=1e-7) and max(regs) > 0
    for (n, p), p_ref in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, p_ref, rtol=1e-4, atol=1e-6, msg=n)
    assert cl.learned == NUM_TASKS and cl.task is None


def test_step_returns_the_task_loss_and_zero_regularizer_on_the_first_task() -> None:
    model = make_model()
    cl = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=0.01), heads=heads())
    cl.start_task(0)
    x, y = torch.randn(5, 4), torch.randint(0, 2, (5,))
    loss = F.cross_entropy(cl.predict(x, 0), y)
    done = cl.step(loss)
    assert done.loss.item() == loss.item() and not done.loss.requires_grad
    assert done.reg.item() == 0.0


def cl3_by_hand(model: hd.HyperDNN, x: torch.Tensor, y: torch.Tensor, k: int, offsets: list[int]) -> tuple[int, int]:
    """Per sample: the entropy of every task's head, the argmin task, its class."""
    correct = inferred = 0
    for i in range(x.shape[0]):
        ents, preds = [], []
        for j in range(NUM_TASKS):
            p = F.softmax(model(x[i : i + 1], task=j)[0, heads()[j]], -1)
            ents.append(-(p * p.log()).sum().item())
            preds.append(int(p.argmax()))
        j = min(range(NUM_TASKS), key=lambda c: (ents[c], c))
        correct += preds[j] + offsets[j] == int(y[i]) + offsets[k]
        inferred += j == k
    return correct, inferred


def test_cl1_and_cl3_match_a_per_sample_loop() -> None:
    model = make_model(3)
    cl = ContinualLearning(model, torch.optim.Adam(model.parameters()), heads=heads())
    g = torch.Generator().manual_seed(0)
    tests = [(3 * torch.randn(40, 4, generator=g), torch.randint(0, HEAD, (40,), generator=g)) for _ in range(NUM_TASKS)]
    for offsets in (None, [0, 0, 0]):
        scores = cl.evaluate_cl3(tests, label_offsets=offsets)
        for k, (x, y) in enumerate(tests):
            with torch.no_grad():
                correct, inferred = cl3_by_hand(model, x, y, k, offsets or [0, 2, 4])
            assert scores.per_task[k] == pytest.approx(100.0 * correct / 40)
            assert scores.task_inference[k] == pytest.approx(100.0 * inferred / 40)
        assert scores.average == pytest.approx(sum(scores.per_task) / 3)
    # offsets 0 count a right class from the wrong task as right: never lower
    assert all(a >= b for a, b in zip(cl.evaluate_cl3(tests, [0, 0, 0]).per_task, cl.evaluate_cl3(tests).per_task))
    with torch.no_grad():
        cl1 = [100.0 * (model(x, task=k)[:, heads()[k]].argmax(-1) == y).float().mean().item() for k, (x, y) in enumerate(tests)]
    assert cl.evaluate_cl1(tests) == pytest.approx(cl1)
    # batches give the same as the whole set; the model's mode is restored
    model.train()
    batched = [[(x[:15], y[:15]), (x[15:], y[15:])] for x, y in tests]
    assert cl.evaluate_cl1(batched) == cl.evaluate_cl1(tests) and cl.evaluate_cl3(batched) == cl.evaluate_cl3(tests)
    assert model.training and model.target.training


def test_mse_metric_matrix_and_forgetting_by_hand() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(nn.Linear(1, 1), inputs=hd.TaskEmbedding(2, 2), body=hd.MLP((4,)))
    cl = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=0.05), beta=0.1, metric="mse")
    xs = [torch.linspace(-1, 0, 20).unsqueeze(1), torch.linspace(0, 1, 20).unsqueeze(1)]
    tests = [(x, 2 * x + k) for k, x in enumerate(xs)]
    rows = []
    for t in range(2):
        cl.start_task(t)
        for _ in range(30):
            cl.step(F.mse_loss(model(xs[t], task=t), tests[t][1]))
        rows.append(cl.end_task(tests))
        with torch.no_grad():
            assert rows[-1] == pytest.approx([F.mse_loss(model(x, task=k), y).item() for k, (x, y) in enumerate(tests[: t + 1])], rel=1e-6)
    assert cl.matrix == rows and [len(r) for r in rows] == [1, 2]
    res = cl.evaluate(tests)
    assert res.cl3 is None and res.final_average == pytest.approx(sum(rows[1]) / 2)
    assert res.forgetting == pytest.approx(rows[1][0] - rows[0][0])  # errors: how much it grew
    with pytest.raises(ConfigError, match="CL3 needs classification"):
        cl.evaluate_cl3(tests)


def test_state_dict_resumes_exactly() -> None:
    data = task_data(steps=3)

    def build():
        model = make_model()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        return model, opt, ContinualLearning(model, opt, beta=0.5, heads=heads())

    model, opt, cl = build()
    cl.start_task(0)
    for x, y in data[0]:
        cl.step(F.cross_entropy(cl.predict(x, 0), y))
    cl.end_task([data[0][0]])
    cl.start_task(1)
    x, y = data[1][0]
    cl.step(F.cross_entropy(cl.predict(x, 1), y))
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), cl.state_dict()))
    model2, opt2, cl2 = build()
    model2.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    cl2.load_state_dict(saved[2])
    assert cl2.task == 1 and cl2.learned == 1 and cl2.matrix == cl.matrix
    for c in (cl, cl2):  # the same next steps from the live objects and from the restored ones
        for x, y in data[1][1:]:
            c.step(F.cross_entropy(c.predict(x, 1), y))
    for p, p2 in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, p2)
    with pytest.raises(ConfigError, match="targets"):
        cl2.load_state_dict({**saved[2], "targets": torch.zeros(2, 3)})
    with pytest.raises(ConfigError, match="keys"):
        cl2.load_state_dict({"targets": saved[2]["targets"]})


def test_misuse_raises_the_librarys_errors() -> None:
    model = make_model()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(HDTypeError, match="HyperDNN"):
        ContinualLearning(nn.Linear(2, 2), opt)
    no_task = hd.HyperDNN(nn.Linear(2, 2), inputs=hd.External(3))
    with pytest.raises(ConfigError, match="TaskEmbedding"):
        ContinualLearning(no_task, torch.optim.Adam(no_task.parameters()))
    with pytest.raises(ConfigError, match=r"torch\.optim\.Adam.*lookahead=False"):
        ContinualLearning(model, torch.optim.SGD(model.parameters(), lr=0.1))
    ContinualLearning(model, torch.optim.SGD(model.parameters(), lr=0.1), lookahead=False)  # fine without it
    with pytest.raises(ConfigError, match="weight_decay"):
        ContinualLearning(model, torch.optim.Adam(model.parameters(), weight_decay=0.1))
    for beta in (-1.0, math.nan, True, "0.1"):
        with pytest.raises(ConfigError, match="beta"):
            ContinualLearning(model, opt, beta=beta)
    for reg_tasks in (0, True, 1.5):
        with pytest.raises(ConfigError, match="reg_tasks"):
            ContinualLearning(model, opt, reg_tasks=reg_tasks)
    with pytest.raises(ConfigError, match="one slice per task"):
        ContinualLearning(model, opt, heads=heads()[:2])
    with pytest.raises(ConfigError, match="metric"):
        ContinualLearning(model, opt, metric="f1")
    with pytest.raises(HDTypeError, match="lookahead"):
        ContinualLearning(model, opt, lookahead=1)

    cl = ContinualLearning(model, opt, heads=heads())
    x, y = torch.randn(5, 4), torch.randint(0, 2, (5,))
    with pytest.raises(ConfigError, match=r"call start_task\(0\) first"):
        cl.step(F.cross_entropy(cl.predict(x, 0), y))
    with pytest.raises(ConfigError, match="the next task is 0"):
        cl.start_task(1)
    with pytest.raises(HDTypeError, match="int"):
        cl.start_task(torch.tensor(0))
    cl.start_task(0)
    with pytest.raises(ShapeError, match="scalar"):
        cl.step(F.cross_entropy(cl.predict(x, 0), y, reduction="none"))
    with pytest.raises(ConfigError, match="tasks 0..0"):
        cl.end_task([])
    with pytest.raises(HDTypeError, match="one test set per task"):
        cl.evaluate_cl1((x, y))
    with pytest.raises(ConfigError, match="1..3 tasks"):
        cl.evaluate_cl1([(x, y)] * 4)
    with pytest.raises(HDTypeError, match=r"pair \(x, y\)"):
        cl.evaluate_cl1([x])
    with pytest.raises(ConfigError, match="label_offsets"):
        cl.evaluate_cl3([(x, y)] * 2, label_offsets=[0])
    cl.end_task()
    with pytest.raises(ConfigError, match="pass tests to every end_task or to none"):
        cl.start_task(1)
        cl.end_task([(x, y)] * 2)
    with pytest.raises(ConfigError, match="empty"):
        cl.forgetting()


def test_methods_package_exports_what_its_modules_export() -> None:
    import importlib
    import pkgutil

    import hyperdnn.methods as methods

    names: set[str] = set()
    owner = {}
    for info in pkgutil.iter_modules(methods.__path__):
        sub = importlib.import_module(f"hyperdnn.methods.{info.name}")
        names |= set(sub.__all__)
        owner.update({n: sub for n in sub.__all__})
    assert "xavier_init_" in names and "ContinualLearning" in names
    assert sorted(methods.__all__) == methods.__all__ and set(methods.__all__) == names
    assert all(getattr(methods, n) is getattr(owner[n], n) for n in names)


@pytest.mark.parametrize("reset", [True, False])
def test_start_task_resets_the_optimizer_only_when_asked(reset: bool) -> None:
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    cl = ContinualLearning(model, opt, reset_optimizer=reset, heads=heads())
    cl.start_task(0)
    cl.step(F.cross_entropy(cl.predict(torch.randn(5, 4), 0), torch.randint(0, 2, (5,))))
    cl.end_task()
    assert len(opt.state) > 0
    cl.start_task(1)
    assert (len(opt.state) == 0) == reset
    # the stored targets are the current outputs for the earlier task
    with torch.no_grad():
        theta = model.weights(task=0)
    assert torch.equal(cl.targets[0], torch.cat([theta[p.name].reshape(-1) for p in model.spec.params]))
