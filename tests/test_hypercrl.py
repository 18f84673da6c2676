"""HyperCRL (Huang et al. 2021): the CEM planner against a closed form, the task environments'
physics against Pendulum's equations, the regularized hypernetwork against a hand-written loop,
the baselines' losses by hand, and a short run of the recipe with an exact resume."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import hyperdnn as hd
from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.methods.continual import flat_weights
from hyperdnn.methods.hypercrl import (
    CEMPlanner,
    HyperCRL,
    MultiHeadDynamics,
    PendulumTask,
    ReplayBaseline,
    Transitions,
    dynamics_mlp,
    make_pendulum,
    pendulum_cost,
    rollout_cost,
)

gym = pytest.importorskip("gymnasium")  # the [rl] extra is part of [test]; without it the env tests cannot run


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: these small networks only slow down with more, and other work shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- CEM


def test_cem_finds_the_closed_form_optimum_of_a_quadratic_cost() -> None:
    # s' = s + u in 2-D, cost sum_h ||s_h - g||^2 + lam ||u_h||^2: a least-squares problem in the stacked actions U
    H, lam = 4, 0.5
    g, s0 = torch.tensor([1.0, -0.5]), torch.tensor([0.2, 0.3])
    cost = lambda s, u: ((s - g) ** 2).sum(-1) + lam * (u**2).sum(-1)  # noqa: E731
    dyn = lambda s, u: s + u  # noqa: E731
    # s_h = s0 + sum_{j<=h} u_j: rows of A (2H x 2H) are lower-triangular sums
    L = torch.tril(torch.ones(H, H))
    A = torch.kron(L, torch.eye(2))
    b = (s0 - g).repeat(H)
    U = -torch.linalg.solve(A.T @ A + lam * torch.eye(2 * H), A.T @ b)
    best = U.reshape(H, 2)
    planner = CEMPlanner(cost, torch.full((2,), -3.0), torch.full((2,), 3.0), horizon=H, population=400, elites=20, iterations=40,
                         generator=torch.Generator().manual_seed(0))
    plan = planner.plan(dyn, s0)
    assert torch.allclose(plan, best, atol=2e-2), (plan, best)
    opt_cost = rollout_cost(dyn, cost, s0, best.unsqueeze(0)).item()
    assert rollout_cost(dyn, cost, s0, plan.unsqueeze(0)).item() <= opt_cost + 1e-3
    # MPC: the first action is the plan's; the next search starts from the shifted plan
    planner.reset()
    a0 = planner.act(dyn, s0)
    assert torch.allclose(a0, best[0], atol=2e-2)


def test_cem_respects_action_bounds_and_checks_its_arguments() -> None:
    # the unconstrained optimum u = 5 lies outside [-1, 1]: the plan sits at the bound
    planner = CEMPlanner(lambda s, u: ((u - 5.0) ** 2).sum(-1), torch.tensor([-1.0]), torch.tensor([1.0]), horizon=3, population=50, elites=5,
                         iterations=10, generator=torch.Generator().manual_seed(0))
    plan = planner.plan(lambda s, u: s, torch.zeros(1))
    assert plan.shape == (3, 1) and bool((plan <= 1.0).all()) and bool((plan > 0.95).all())
    with pytest.raises(ConfigError, match="elites"):
        CEMPlanner(lambda s, u: s.sum(-1), torch.tensor([-1.0]), torch.tensor([1.0]), population=4, elites=5)
    with pytest.raises(ConfigError, match="action_low must be below"):
        CEMPlanner(lambda s, u: s.sum(-1), torch.tensor([1.0]), torch.tensor([-1.0]))
    with pytest.raises(ShapeError, match="rollout_cost"):
        rollout_cost(lambda s, u: s, lambda s, u: s.sum(-1), torch.zeros(2, 2), torch.zeros(3, 2, 1))


# ----------------------------------------------------------------------------- environments


def pendulum_step(th: float, thdot: float, u: float, task: PendulumTask) -> tuple[float, float]:
    """Pendulum-v1's equations (gymnasium's pendulum.py), written out: dt 0.05, speed clipped at 8."""
    dt = 0.05
    u = max(-2.0, min(2.0, u))
    new_thdot = thdot + (3 * task.gravity / (2 * task.length) * math.sin(th) + 3.0 / (task.mass * task.length**2) * u) * dt
    new_thdot = max(-8.0, min(8.0, new_thdot))
    return th + new_thdot * dt, new_thdot


@pytest.mark.parametrize("task", [PendulumTask(), PendulumTask(gravity=18.0), PendulumTask(gravity=12.0, mass=0.5, length=1.4)])
def test_task_parameters_change_the_environment_dynamics_as_the_equations_say(task: PendulumTask) -> None:
    env = make_pendulum(task)
    env.reset(seed=0)
    th, thdot, u = 0.7, -1.3, 1.5
    env.unwrapped.state = torch.tensor([th, thdot]).numpy().astype("float64")
    obs, reward, *_ = env.step([u])
    new_th, new_thdot = pendulum_step(th, thdot, u, task)
    assert obs == pytest.approx([math.cos(new_th), math.sin(new_th), new_thdot], abs=1e-5)
    # gymnasium's reward charges the state before the step
    assert reward == pytest.approx(-(th**2 + 0.1 * thdot**2 + 0.001 * u**2), abs=1e-5)
    env.close()


def test_different_tasks_give_different_next_states() -> None:
    outs = []
    for task in (PendulumTask(10.0), PendulumTask(18.0), PendulumTask(10.0, mass=2.0)):
        env = make_pendulum(task)
        env.reset(seed=0)
        env.unwrapped.state = torch.tensor([0.7, 0.0]).numpy().astype("float64")
        outs.append(torch.tensor(env.step([1.0])[0]))
        env.close()
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    with pytest.raises(ConfigError, match="gravity must be a finite number > 0"):
        PendulumTask(gravity=-1.0)


def test_pendulum_cost_is_the_negated_reward_of_the_state() -> None:
    th, thdot, u = torch.tensor([0.3, -2.5]), torch.tensor([1.0, -4.0]), torch.tensor([[0.5], [-2.0]])
    s = torch.stack([th.cos(), th.sin(), thdot], dim=1)
    assert torch.allclose(pendulum_cost(s, u), th**2 + 0.1 * thdot**2 + 0.001 * u[:, 0] ** 2)
    with pytest.raises(ShapeError, match="pendulum_cost"):
        pendulum_cost(torch.zeros(2, 2), u)


# ----------------------------------------------------------------------------- HyperCRL


def hnet(tasks: int = 2, seed: int = 0) -> hd.HyperDNN:
    torch.manual_seed(seed)
    return hd.HyperDNN(dynamics_mlp(3, 1, (8, 8)), inputs=hd.TaskEmbedding(tasks, 4), outputs=hd.GenerateOnce(), body=hd.MLP((8,), "relu"))


def linear_task(A: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s, a = torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g)
    return s, a, s + torch.cat([s, a], 1) @ A.T


def test_hypercrl_step_equals_a_hand_written_loop() -> None:
    # task 1's steps without look-ahead: loss + beta * ||H(e_0) - H*(e_0)||^2, e_0 kept, plain Adam
    beta, lr = 0.5, 1e-2
    model = hnet()
    ref = copy.deepcopy(model)
    crl = HyperCRL(model, torch.optim.Adam(model.parameters(), lr=lr), beta=beta, lookahead=False)
    A0, A1 = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)) * 0.3, torch.randn(3, 4, generator=torch.Generator().manual_seed(2)) * 0.3
    data0, data1 = linear_task(A0, 32, 3), linear_task(A1, 32, 4)
    crl.start_task(0)
    for _ in range(3):
        crl.step(crl.loss(*data0, 0))
    crl.end_task()
    # the reference replays task 0 by hand too
    opt = torch.optim.Adam(ref.parameters(), lr=lr)
    names = [p.name for p in ref.spec.params]
    emb = ref.hypernetwork.inputs.table.weight
    for _ in range(3):
        s, a, s2 = data0
        opt.zero_grad()
        F.mse_loss(ref(torch.cat([s, a], 1), task=0), s2 - s).backward()
        emb.grad[1] = 0
        opt.step()
    stored = flat_weights(ref.weights(task=0), names).detach()
    opt = torch.optim.Adam(ref.parameters(), lr=lr)  # a fresh Adam per task
    crl.start_task(1)
    for _ in range(4):
        crl.step(crl.loss(*data1, 1))
        s, a, s2 = data1
        opt.zero_grad()
        loss = F.mse_loss(ref(torch.cat([s, a], 1), task=1), s2 - s) + beta * ((flat_weights(ref.weights(task=0), names) - stored) ** 2).sum()
        loss.backward()
        emb.grad[0] = 0
        opt.step()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_regularized_hypernetwork_keeps_the_old_tasks_dynamics_predictions() -> None:
    A0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)) * 0.5
    A1 = torch.randn(3, 4, generator=torch.Generator().manual_seed(2)) * 0.5
    data0, data1 = linear_task(A0, 256, 3), linear_task(A1, 256, 4)
    probe_s, probe_a, _ = linear_task(A0, 64, 5)
    drift = {}
    for beta in (0.0, 0.5):
        model = hnet(seed=7)
        crl = HyperCRL(model, torch.optim.Adam(model.parameters(), lr=1e-2), beta=beta)
        crl.start_task(0)
        for _ in range(100):
            crl.step(crl.loss(*data0, 0))
        crl.end_task()
        before = crl.dynamics(0)(probe_s, probe_a)
        crl.start_task(1)
        for _ in range(100):
            last = crl.step(crl.loss(*data1, 1))
        crl.end_task()
        after = crl.dynamics(0)(probe_s, probe_a)
        drift[beta] = (after - before).abs().max().item()
        assert last.loss.item() < 0.05  # task 1 is learned either way
    assert drift[0.5] < 0.1 * drift[0.0], drift


def test_hypercrl_checks_shapes_and_tasks() -> None:
    crl = HyperCRL(hnet(), torch.optim.Adam(hnet().parameters()))
    with pytest.raises(ShapeError, match="HyperCRL.loss: expected states"):
        crl.loss(torch.zeros(4, 2), torch.zeros(4, 1), torch.zeros(4, 2), 0)
    with pytest.raises(ConfigError, match="tasks are learned in order"):
        crl.start_task(1)


# ----------------------------------------------------------------------------- baselines


def filled(seed: int, n: int) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    t = Transitions(3, 1)
    t.add(torch.randn(n, 3, generator=g), torch.randn(n, 1, generator=g), torch.randn(n, 3, generator=g))
    return t


@pytest.mark.parametrize("mode", ["finetune", "multitask", "coreset"])
def test_baseline_step_equals_its_loss_by_hand(mode: str) -> None:
    torch.manual_seed(0)
    net = MultiHeadDynamics(3, 1, (8,), 3)
    ref = copy.deepcopy(net)
    b = ReplayBaseline(net, torch.optim.SGD(net.parameters(), lr=0.1), mode, coreset_size=5, generator=torch.Generator().manual_seed(1))
    d0, d1 = filled(0, 40), filled(1, 40)
    b.start_task(0)
    b.end_task(d0)
    kept = b.kept[0]
    assert len(kept) == {"finetune": 0, "multitask": 40, "coreset": 5}[mode]
    b.start_task(1)
    gen = torch.Generator().manual_seed(9)
    b.generator = gen
    b.step(d1, 8)
    # by hand, with the same draws
    g2 = torch.Generator().manual_seed(9)
    s, a, s2 = d1.sample(8, g2)
    loss = F.mse_loss(ref(s, a, 1), s2 - s)
    if mode == "multitask":
        os_, oa, os2 = d0.sample(8, g2)
        loss = loss + F.mse_loss(ref(os_, oa, 0), os2 - os_)
    elif mode == "coreset":
        loss = loss + F.mse_loss(ref(kept.states, kept.actions, 0), kept.next_states - kept.states)
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    for (n, p), q in zip(net.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (mode, n)
    with pytest.raises(ConfigError, match="mode must be one of"):
        ReplayBaseline(net, torch.optim.SGD(net.parameters(), lr=0.1), "replay")


# ----------------------------------------------------------------------------- recipe

TINY = dict(gravity=(10.0, 16.0), episodes=1, episode_steps=25, eval_episodes=2, train_steps=6, batch_size=16, horizon=3, population=12, elites=3, cem_iterations=2)


def test_recipe_short_run_and_exact_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperdnn.experiments.context import RunContext
    from hyperdnn.experiments.recipes import get_recipe
    from hyperdnn.experiments.runs import run_recipe

    r = get_recipe("hypercrl")
    ref = run_recipe(r, r.config(**TINY), out_dir=tmp_path / "ref", show_progress=False, print_tables=False, checkpoint_every=0, threads=1)
    res = ref.results
    assert set(res["methods"]) == {"hypercrl", "finetune", "multitask", "coreset"}
    for m, v in res["methods"].items():
        assert [len(row) for row in v["returns_after_each_task"]] == [1, 2], m
        assert all(-16.3 * 25 <= x <= 0 for x in v["final"]), (m, v["final"])  # a step's reward lies in [-16.3, 0]
    assert (ref.run_dir / "returns.png").is_file()
    # Ctrl-C in the middle of a round of the second method: the resumed run equals the uninterrupted one
    original = RunContext.step_done

    def interrupt_once(self: RunContext, n: int = 1, **metrics: object) -> None:
        if self.global_step == 21 and not getattr(RunContext, "_hit", False):
            RunContext._hit = True  # type: ignore[attr-defined]
            self._interrupted = True
        original(self, n, **metrics)

    monkeypatch.setattr(RunContext, "step_done", interrupt_once)
    from hyperdnn.experiments.context import RunInterrupted

    with pytest.raises(RunInterrupted):
        run_recipe(r, r.config(**TINY), out_dir=tmp_path / "cut", show_progress=False, print_tables=False, checkpoint_every=0, threads=1)
    monkeypatch.setattr(RunContext, "step_done", original)
    run_dir = next(p for p in (tmp_path / "cut").iterdir() if p.is_dir())
    again = run_recipe("hypercrl", resume=run_dir, show_progress=False, print_tables=False)

    def strip(res: dict) -> dict:
        return {k: v for k, v in res.items() if k != "seconds"}

    assert strip(again.results) == strip(res)
    assert (run_dir / "metrics.jsonl").read_text() == (ref.run_dir / "metrics.jsonl").read_text()
    assert json.loads((run_dir / "config.json").read_text())


def test_recipe_config_errors() -> None:
    from hyperdnn.experiments.recipes import get_recipe

    cfg = get_recipe("hypercrl").config
    with pytest.raises(ConfigError, match="mass must hold one value or one per task"):
        cfg(gravity=(10.0, 12.0), mass=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="unknown method"):
        cfg(methods=("hypercrl", "ewc"))
    with pytest.raises(ConfigError, match="elites"):
        cfg(population=4, elites=5)
    with pytest.raises(ConfigError, match="eval_episodes must be > 0"):
        cfg(eval_episodes=0)
