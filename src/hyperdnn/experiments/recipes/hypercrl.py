"""Recipe ``hypercrl``: continual model-based RL on Pendulum tasks (Huang et al., ICRA 2021).

Tasks: gymnasium's ``Pendulum-v1`` with per-task gravity (and optionally mass and
length), met in sequence; the authors' "pendulum" setting (``hypercrl/envs/cl_env.py``
of rvl-lab-utoronto/HyperCRL) uses ``g = 10 + 2 * task``, 5 tasks. Each method acts
in a task's environment with its own model and a CEM controller, from one random
episode then ``episodes`` planned ones, training its dynamics model ``train_steps``
steps before each planned episode and once after the last; a task's data is not
revisited after the task (except by the multi-task and coreset baselines, which
keep all of it or ``coreset_size`` transitions per task).

Methods (all predict ``s' - s`` with a 4-32-32-3 ReLU network):

- ``hypercrl``: a task-embedding (10) hypernetwork, MLP 16-16, generates the whole
  dynamics network; output regularizer ``beta = 0.05`` with look-ahead; Adam;
- ``finetune``: one network, shared trunk and one head per task, trained on the
  current task only (forgets);
- ``multitask``: the same network trained on all tasks' data so far (the upper bound);
- ``coreset``: the current task plus 50 kept transitions of each earlier task.

Settings from the authors' ``hypercrl/tools/default_arg.py`` (``default_arg_pendulum``,
``add_hnet_hparams``): dynamics 32-32, hypernetwork 16-16 (ReLU, Xavier init), task
embedding 10, beta 0.05, hypernetwork lr 1e-4, baselines lr 1e-3, coreset 50 per
task, planner horizon 15, 100 sequences, 5 elites, 10 iterations. Scaled down here
for a CPU: per task 1 random + ``episodes`` planned episodes of 200 steps (the
authors: 10,000 steps, 400 random), ``train_steps`` per round (the authors: 1000 per
400 steps) at batch ``batch_size`` (the authors: 20), hypernetwork lr ``hnet_lr``.

Reports the return of each task's evaluation episode after every task (a fixed
reset seed per task, the same for every method), the final returns per method and
a figure of the returns over the sequence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import boolean, non_negative, positive, positive_ints, recipe, some_of
from hyperdnn.experiments.runs import RunContext

METHODS = ("hypercrl", "finetune", "multitask", "coreset")
LABELS = {"hypercrl": "HyperCRL", "finetune": "fine-tuning", "multitask": "multi-task (all data)", "coreset": "coreset"}


@dataclass
class Config:
    """Configuration of ``hypercrl`` (sizes: the authors' Pendulum setting; lengths: scaled for a CPU)."""

    gravity: tuple[float, ...] = field(default=(10.0, 12.0, 14.0, 16.0, 18.0), metadata={"help": "gravity of each task (the authors': 10 + 2 * task); its length is the task count"})
    mass: tuple[float, ...] = field(default=(1.0,), metadata={"help": "pendulum mass of each task (one value: all tasks)"})
    length: tuple[float, ...] = field(default=(1.0,), metadata={"help": "pendulum length of each task (one value: all tasks)"})
    methods: tuple[str, ...] = field(default=METHODS, metadata={"help": "methods to run, some of hypercrl,finetune,multitask,coreset"})
    episodes: int = field(default=4, metadata={"help": "planned (CEM) episodes of 200 steps per task, after one random episode"})
    train_steps: int = field(default=500, metadata={"help": "dynamics-model optimizer steps before each planned episode and after the last"})
    batch_size: int = field(default=64, metadata={"help": "transitions per training batch (per task for the multi-task baseline)"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the baselines"})
    hnet_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the hypernetwork (the authors: 1e-4 over 20x more steps)"})
    beta: float = field(default=0.05, metadata={"help": "output-regularizer strength of HyperCRL"})
    hidden: tuple[int, ...] = field(default=(32, 32), metadata={"help": "hidden widths of the dynamics network"})
    hnet_hidden: tuple[int, ...] = field(default=(16, 16), metadata={"help": "hidden widths of the hypernetwork"})
    emb_dim: int = field(default=10, metadata={"help": "task embedding size"})
    coreset_size: int = field(default=50, metadata={"help": "transitions kept per finished task by the coreset baseline"})
    horizon: int = field(default=15, metadata={"help": "CEM planning horizon"})
    population: int = field(default=100, metadata={"help": "CEM action sequences sampled per iteration"})
    elites: int = field(default=5, metadata={"help": "CEM elites refitted to"})
    cem_iterations: int = field(default=10, metadata={"help": "CEM refits per environment step"})
    episode_steps: int = field(default=200, metadata={"help": "steps per episode (Pendulum's limit: 200)"})
    eval_episodes: int = field(default=1, metadata={"help": "evaluation episodes per task (different start states), their returns averaged"})
    eval_all: bool = field(default=False, metadata={"help": "after each task, evaluate every task (also the future ones) instead of the tasks seen so far"})

    def __post_init__(self) -> None:
        part = "hypercrl"
        for name in ("gravity", "mass", "length", "methods", "hidden", "hnet_hidden"):
            v = getattr(self, name)
            if isinstance(v, list):
                setattr(self, name, tuple(v))
        self.methods = some_of(part, "methods", self.methods, METHODS)
        T = len(self.gravity)
        for name in ("gravity", "mass", "length"):
            vals = getattr(self, name)
            if not isinstance(vals, tuple) or len(vals) not in (1, T) or not vals:
                raise ConfigError(f"{part}: {name} must hold one value or one per task ({T}, the length of gravity) (got {vals!r})")
            for v in vals:
                positive(part, name, v, float)
        for name in ("episodes", "episode_steps", "eval_episodes", "train_steps", "batch_size", "emb_dim", "coreset_size", "horizon", "population", "elites", "cem_iterations"):
            positive(part, name, getattr(self, name))
        if self.elites > self.population:
            raise ConfigError(f"{part}: elites ({self.elites}) must be at most population ({self.population})")
        if self.episode_steps > 200:
            raise ConfigError(f"{part}: episode_steps must be at most 200, Pendulum's time limit (got {self.episode_steps})")
        positive(part, "lr", self.lr, float)
        positive(part, "hnet_lr", self.hnet_lr, float)
        non_negative(part, "beta", self.beta, float)
        positive_ints(part, "hidden", self.hidden)
        positive_ints(part, "hnet_hidden", self.hnet_hidden)
        boolean(part, "eval_all", self.eval_all)

    def tasks(self) -> list[Any]:
        """The task sequence as ``PendulumTask`` s."""
        from hyperdnn.methods.hypercrl import PendulumTask

        T = len(self.gravity)
        pick = lambda vals, k: float(vals[k] if len(vals) == T else vals[0])  # noqa: E731
        return [PendulumTask(pick(self.gravity, k), pick(self.mass, k), pick(self.length, k)) for k in range(T)]


class _Data:
    """Every method's transitions per task (checkpointed)."""

    def __init__(self, methods: tuple[str, ...], tasks: int) -> None:
        from hyperdnn.methods.hypercrl import Transitions

        self.data = {m: [Transitions(3, 1) for _ in range(tasks)] for m in methods}

    def state_dict(self) -> dict[str, Any]:
        return {m: [d.state_dict() for d in ds] for m, ds in self.data.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for m, ds in self.data.items():
            for d, s in zip(ds, state[m]):
                d.load_state_dict(s)


def _learners(cfg: Config, T: int) -> dict[str, Any]:
    """Each method's learner (HyperCRL or a ReplayBaseline), built in the order of ``cfg.methods``."""
    from hyperdnn import HyperDNN
    from hyperdnn.bodies import MLP
    from hyperdnn.conditioning import TaskEmbedding
    from hyperdnn.methods.continual import xavier_init_
    from hyperdnn.methods.hypercrl import HyperCRL, MultiHeadDynamics, ReplayBaseline, dynamics_mlp
    from hyperdnn.outputs import GenerateOnce

    out: dict[str, Any] = {}
    for m in cfg.methods:
        if m == "hypercrl":
            model = HyperDNN(dynamics_mlp(3, 1, cfg.hidden), inputs=TaskEmbedding(T, cfg.emb_dim), outputs=GenerateOnce(), body=MLP(cfg.hnet_hidden, "relu"))
            xavier_init_(model)  # the authors' hnet_init = "xavier"
            out[m] = HyperCRL(model, torch.optim.Adam(model.parameters(), lr=cfg.hnet_lr), beta=cfg.beta)
        else:
            net = MultiHeadDynamics(3, 1, cfg.hidden, T)
            out[m] = ReplayBaseline(net, torch.optim.Adam(net.parameters(), lr=cfg.lr), m, coreset_size=cfg.coreset_size)
    return out


def _train_step(learner: Any, method: str, data: Any, task: int, batch_size: int, gen: torch.Generator) -> float:
    if method == "hypercrl":
        s, a, s2 = data.sample(batch_size, gen)
        return learner.step(learner.loss(s, a, s2, task)).loss.item()
    learner.generator = gen
    return learner.step(data, batch_size).item()


def _episode_seed(seed: int, task: int, episode: int) -> int:
    """Reset seed of a training episode: the same for every method."""
    return 100_000 * seed + 1000 * task + episode


def _eval_seed(seed: int, task: int, episode: int = 0) -> int:
    """Reset seed of task ``task``'s evaluation episode: the same for every method and time."""
    return 100_000 * seed + 999 - task + 7919 * episode


def _evaluate(env: Any, policy: Any, seed: int, task: int, cfg: Config) -> float:
    """Mean return of ``cfg.eval_episodes`` episodes from fixed start states; ``policy()`` makes a fresh policy."""
    from hyperdnn.methods.hypercrl import run_episode

    rets = [run_episode(env, policy(), _eval_seed(seed, task, i), cfg.episode_steps).total_reward for i in range(cfg.eval_episodes)]
    return sum(rets) / len(rets)


@recipe("hypercrl", "continual model-based RL on Pendulum tasks of different gravity: HyperCRL vs fine-tuning, multi-task and coreset, CEM planning (Huang et al. 2021)", Config, figures=lambda run_dir, name, results, published: figures(run_dir, name, results))
def run(ctx: RunContext) -> dict:
    from hyperdnn.methods.hypercrl import CEMPlanner, make_pendulum, pendulum_cost, run_episode

    cfg: Config = ctx.config
    tasks = cfg.tasks()
    T = len(tasks)
    envs = [make_pendulum(task) for task in tasks]
    learners = _learners(cfg, T)
    data = _Data(cfg.methods, T)
    gen = torch.Generator().manual_seed(ctx.seed)
    planner = CEMPlanner(pendulum_cost, envs[0].action_space.low, envs[0].action_space.high, horizon=cfg.horizon,
                         population=cfg.population, elites=cfg.elites, iterations=cfg.cem_iterations, generator=gen)
    ctx.track(data=data, rng=gen, **{f"{m}_model": (lr.model) for m, lr in learners.items()},
              **{f"{m}_optimizer": (lr.cl.optimizer if m == "hypercrl" else lr.optimizer) for m, lr in learners.items()},
              **{f"{m}_learner": lr for m, lr in learners.items()})
    rounds = cfg.episodes + 1
    state = ctx.restore({"method": 0, "task": 0, "round": 0, "step": 0, "collected": False, "returns": {m: [] for m in cfg.methods},
                         "train_returns": {m: [] for m in cfg.methods}, "seconds": {m: 0.0 for m in cfg.methods}})
    ctx.progress(total=len(cfg.methods) * T * rounds * cfg.train_steps)

    def plan_with(learner: Any, task: int):
        dyn = learner.dynamics(task)
        planner.reset()
        return lambda s: planner.act(dyn, s)

    for mi in range(state["method"], len(cfg.methods)):
        m = cfg.methods[mi]
        learner = learners[m]
        for t in range(state["task"], T):
            buf = data.data[m][t]
            started = time.perf_counter()
            if state["round"] == 0 and state["step"] == 0 and not state["collected"]:
                learner.start_task(t)
                ep = run_episode(envs[t], None, _episode_seed(ctx.seed, t, 0), cfg.episode_steps)  # random exploration
                buf.add(ep.states, ep.actions, ep.next_states)
                state["collected"] = True
            while state["round"] < rounds:
                while state["step"] < cfg.train_steps:
                    loss = _train_step(learner, m, buf, t, cfg.batch_size, gen)
                    state["step"] += 1
                    ctx.step_done(loss=loss, task=f"{t + 1}/{T}", method=m)
                if state["round"] < cfg.episodes:  # act with the model just trained
                    ep = run_episode(envs[t], plan_with(learner, t), _episode_seed(ctx.seed, t, state["round"] + 1), cfg.episode_steps)
                    buf.add(ep.states, ep.actions, ep.next_states)
                    state["train_returns"][m].append(ep.total_reward)
                    ctx.log(kind="episode", method=m, task=t + 1, episode=state["round"] + 1, ret=ep.total_reward)
                state["round"] += 1
                state["step"] = 0
            learner.end_task() if m == "hypercrl" else learner.end_task(buf)
            row = [_evaluate(envs[k], partial(plan_with, learner, k), ctx.seed, k, cfg) for k in range(T if cfg.eval_all else t + 1)]
            state["returns"][m].append(row)
            state["seconds"][m] += time.perf_counter() - started
            ctx.log(kind="eval", method=m, after_task=t + 1, returns=row)
            state["task"], state["round"], state["step"], state["collected"] = t + 1, 0, 0, False
            ctx.checkpoint()
        state["method"], state["task"] = mi + 1, 0
    for env in envs:
        env.close()
    return _report(ctx, cfg, tasks, state)


def _report(ctx: RunContext, cfg: Config, tasks: list[Any], state: dict[str, Any]) -> dict[str, Any]:
    T = len(tasks)
    names = [t.name for t in tasks]
    results: dict[str, Any] = {"tasks": names, "methods": {}, "seconds": state["seconds"],
                               "sizes": {"env_steps_per_task": cfg.episode_steps * (cfg.episodes + 1), "train_steps_per_task": cfg.train_steps * (cfg.episodes + 1)}}
    rows = []
    for m in cfg.methods:
        mat = state["returns"][m]
        final = mat[-1][:T]
        results["methods"][m] = {"returns_after_each_task": mat, "final": final, "final_mean": sum(final) / len(final),
                                 "just_after_training": [mat[k][k] for k in range(T)], "train_episode_returns": state["train_returns"][m]}
        rows.append([LABELS[m], *[f"{r:.0f}" for r in final], f"{sum(final) / len(final):.0f}", f"{state['seconds'][m]:.0f}"])
        ctx.table(f"{LABELS[m]}: return on task k (columns) after learning task t (rows)", ["after task"] + [f"{k + 1}: {n}" for k, n in enumerate(names)],
                  [[t + 1, *[f"{r:.0f}" for r in row], *[""] * (T - len(row))] for t, row in enumerate(mat)])
    ctx.table(f"Return of each task after all {T} tasks (higher is better; mean of {cfg.eval_episodes} evaluation episode(s) of {cfg.episode_steps} steps each)",
              ["method", *[f"{k + 1}: {n}" for k, n in enumerate(names)], "mean", "seconds"], rows,
              note=f"per task: 1 random + {cfg.episodes} planned episodes, {cfg.train_steps} training steps per round; CEM {cfg.population}x{cfg.horizon}, {cfg.cem_iterations} iterations")
    return results


def figures(run_dir: Path, name: str, results: dict[str, Any]) -> list[Path]:
    """``returns.png``: per task, the return of its evaluation episode after each task of the sequence, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    T = len(tasks)
    fig, axes = plt.subplots(1, T, figsize=(2.6 * T + 0.6, 3.2), sharey=True, squeeze=False)
    for k, ax in enumerate(axes[0]):
        for m, res in results["methods"].items():
            mat = res["returns_after_each_task"]
            xs = [t + 1 for t in range(len(mat)) if len(mat[t]) > k]
            ax.plot(xs, [mat[t - 1][k] for t in xs], marker="o", markersize=4, label=LABELS.get(m, m))
        ax.axvspan(k + 0.5, k + 1.5, color="0.9", zorder=0)
        ax.set_title(f"task {k + 1}: {tasks[k]}\n(shaded: while it is learned)", fontsize=8)
        ax.set_xlabel("after learning task")
        ax.set_xticks(range(1, T + 1))
        ax.set_xlim(0.5, T + 0.5)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("return (200 steps)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)  # outside: no point hidden
    fig.suptitle(f"{name}: return per task over the sequence", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = run_dir / "returns.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
