"""Recipe ``dphn``: dependency-preserving (RNN) hypernetworks beside the chunked MLP hypernetwork.

Chandra, Varshney, Srijith, Gupta, "Continual Learning with Dependency Preserving
Hypernetworks", WACV 2023. On split-MNIST (``--benchmark split``) or permuted-MNIST
(``--benchmark permuted``) the same target, data, steps, optimizer and output
regularizer are used for each hypernetwork of ``--models``:

- ``mlp``: the chunked MLP hypernetwork of the ``split-mnist`` / ``permuted-mnist``
  recipe with that recipe's defaults (von Oswald et al. 2020), built by its helper;
- ``rnn``: the chunks generated in order by an LSTM (hidden ``rnn_hidden``; the authors'
  code: 96, one layer) from the tokens ``[task embedding, chunk embedding]``, a linear head
  per chunk; ``rnn_chunk_size`` sets the head's size (by default as large as the MLP's
  head, so both compress about equally); same task and chunk embedding widths;
- ``rnn-freeze``: the same, its hidden-to-hidden weights frozen after the first task as
  the authors' LSTM cell does;
- ``rnn-grow``: ``rnn-freeze`` trained alike, plus the authors' network growth as their
  code shows it (:class:`~hyperdnn.methods.continual.NetworkGrowth`): a copy of the
  hypernetwork's parameters is kept per task (the frozen recurrent weights shared) and
  task ``k`` is generated from copy ``k``. Its compression counts every copy and the
  task embeddings. Not in the default ``--models``.

The table gives CL1 (task given), CL3 (task inferred by predictive entropy),
forgetting and the compression ratio of each. ``--steps`` is per task; the
benchmark's other settings (target, beta, lr, batch) are its recipe's defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import boolean, one_of, positive, recipe, some_of
from hyperdnn.experiments.runs import RunContext

MODELS = ("mlp", "rnn", "rnn-freeze", "rnn-grow")
DEFAULT_MODELS = ("mlp", "rnn", "rnn-freeze")
LABELS = {"mlp": "chunked MLP hypernetwork", "rnn": "RNN (LSTM) hypernetwork", "rnn-freeze": "RNN hypernetwork, recurrent weights frozen after task 1",
          "rnn-grow": "RNN hypernetwork, frozen recurrent weights + per-task copies (authors' network growth)"}
FROZEN = ("rnn-freeze", "rnn-grow")  # the hidden-to-hidden weights frozen from task 2 on


@dataclass
class Config:
    """Configuration of ``dphn`` (short runs; the benchmark's own settings otherwise)."""

    benchmark: str = field(default="split", metadata={"help": "'split' (split-MNIST, 5 tasks) or 'permuted' (permuted-MNIST, 10 tasks)"})
    models: tuple[str, ...] = field(default=DEFAULT_MODELS, metadata={"help": "hypernetworks to compare, some of mlp,rnn,rnn-freeze,rnn-grow (default: the first three)"})
    steps: int = field(default=500, metadata={"help": "optimizer steps per task (split-mnist's default: 2000, permuted-mnist's: 5000)"})
    tasks: int = field(default=0, metadata={"help": "number of tasks, 0 = the benchmark's (5 split, 10 permuted)"})
    rnn_hidden: int = field(default=96, metadata={"help": "LSTM state width of the RNN hypernetwork (the authors' code: 96)"})
    rnn_cell: str = field(default="lstm", metadata={"help": "'lstm' (the authors') or 'gru'"})
    rnn_chunk_size: int = field(default=0, metadata={"help": "weights per chunk of the RNN hypernetwork (head rnn_hidden x this), 0 = a head as large as the MLP's"})
    rnn_chunk_dim: int = field(default=0, metadata={"help": "chunk embedding width of the RNN hypernetwork, 0 = the MLP's"})

    def __post_init__(self) -> None:
        part = "dphn"
        one_of(part, "benchmark", self.benchmark, ("split", "permuted"))
        self.models = some_of(part, "models", self.models, MODELS)
        for name in ("steps", "rnn_hidden"):
            positive(part, name, getattr(self, name))
        if self.tasks < 0 or self.rnn_chunk_dim < 0 or self.rnn_chunk_size < 0:
            raise ConfigError(f"{part}: tasks, rnn_chunk_size and rnn_chunk_dim must be >= 0 (0: the default) (got {self.tasks}, {self.rnn_chunk_size} and {self.rnn_chunk_dim})")
        if self.benchmark == "split" and self.tasks > 5:
            raise ConfigError(f"{part}: split-MNIST has at most 5 tasks (got {self.tasks})")
        one_of(part, "rnn_cell", self.rnn_cell, ("lstm", "gru"))

    def base(self) -> Any:
        """The benchmark recipe's config (its defaults, with this run's steps and tasks)."""
        from hyperdnn.experiments.recipes import permuted_mnist, split_mnist

        mod = split_mnist if self.benchmark == "split" else permuted_mnist
        kw: dict[str, Any] = {"steps": self.steps, "baseline": False}
        if self.tasks:
            kw["tasks"] = self.tasks
        return mod.Config(**kw)


def _tasks(ctx: RunContext, cfg: Config, base: Any) -> list[Any]:
    from hyperdnn.data.continual_tasks import permuted_mnist, split_mnist, tasks_to
    from hyperdnn.data.mnist import load_mnist

    mnist = load_mnist(ctx.data_dir)
    tasks = split_mnist(mnist, base.tasks) if cfg.benchmark == "split" else permuted_mnist(mnist, base.tasks, base.padding, base.data_seed)
    return tasks_to(tasks, ctx.device)


def _build(kind: str, cfg: Config, base: Any, tasks: list[Any]) -> Any:
    """A fresh HyperDNN of ``kind`` on the benchmark's target."""
    from hyperdnn.experiments.recipes._continual import chunked_spec
    from hyperdnn.experiments.recipes.toy_regression import make_mlp
    from hyperdnn.methods.continual import dependency_preserving_hnet

    out = 2 * len(tasks) if cfg.benchmark == "split" else 10 * len(tasks)
    sizes = [tasks[0].input_dim, *base.target_hidden, out]
    target = make_mlp(sizes, "relu")
    if kind == "mlp":
        return chunked_spec(base, tasks, lambda: make_mlp(sizes, "relu"), paper={}).make_model(target)
    # default: the head (rnn_hidden x chunk) as large as the MLP hypernetwork's (last hidden x chunk)
    chunk = cfg.rnn_chunk_size or round(base.hnet_hidden[-1] * base.chunk_size / cfg.rnn_hidden)
    return dependency_preserving_hnet(target, len(tasks), emb_dim=base.emb_dim, chunk_size=chunk,
                                      chunk_dim=cfg.rnn_chunk_dim or base.chunk_dim, hidden=cfg.rnn_hidden, cell=cfg.rnn_cell)


def _heads(tasks: list[Any]) -> list[slice]:
    starts = [sum(t.num_outputs for t in tasks[:k]) for k in range(len(tasks))]
    return [slice(s, s + t.num_outputs) for s, t in zip(starts, tasks)]


@recipe("dphn", "dependency-preserving RNN hypernetworks vs the chunked MLP hypernetwork on split/permuted MNIST: CL1, CL3, compression (Chandra et al. 2023)", Config)
def run(ctx: RunContext) -> dict:
    from hyperdnn.experiments.recipes._continual import Sweeps, _TestBatches
    from hyperdnn.methods.continual import ContinualLearning, NetworkGrowth, forgetting, freeze_recurrent_

    cfg: Config = ctx.config
    base = cfg.base()
    tasks = _tasks(ctx, cfg, base)
    T = len(tasks)
    heads = _heads(tasks)
    tests = [_TestBatches(task, 10000) for task in tasks]
    models, cls, growths = {}, {}, {}
    for kind in cfg.models:
        torch.manual_seed(ctx.seed)  # every hypernetwork from the same draws: rnn and rnn-freeze start equal
        model = _build(kind, cfg, base, tasks).to(ctx.device)
        models[kind] = model
        cls[kind] = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=base.lr), beta=base.beta, lookahead=base.lookahead, heads=heads)
        if kind == "rnn-grow":
            growths[kind] = NetworkGrowth(model)
    data_rng = torch.Generator().manual_seed(ctx.seed)
    sweeps = Sweeps(data_rng)
    ctx.track(data_rng=data_rng, sweeps=sweeps, **{f"model_{k}": m for k, m in models.items()},
              **{f"optimizer_{k}": c.optimizer for k, c in cls.items()}, **{f"continual_{k}": c for k, c in cls.items()},
              **{f"growth_{k}": g for k, g in growths.items()})
    state = ctx.restore({"model": 0, "task": 0, "step": 0, "seconds": {k: 0.0 for k in cfg.models}, "grown_matrix": {k: [] for k in growths}})
    ctx.progress(total=len(cfg.models) * T * cfg.steps)
    for mi, kind in enumerate(cfg.models):  # a resumed run: requires_grad is not in the checkpoint
        if kind in FROZEN and (mi < state["model"] and T > 1 or mi == state["model"] and state["task"] > 0):
            freeze_recurrent_(models[kind])
    for mi in range(state["model"], len(cfg.models)):
        kind = cfg.models[mi]
        cl, model = cls[kind], models[kind]
        for t in range(state["task"], T):
            if state["step"] == 0:
                if t == 0:
                    data_rng.manual_seed(ctx.seed)  # every hypernetwork sees the same batches
                sweeps.reset()
                if kind in FROZEN and t == 1:
                    freeze_recurrent_(model)
                cl.start_task(t)
            model.train()
            started = time.perf_counter()
            while state["step"] < cfg.steps:
                x, y = sweeps.batch(tasks[t], base.batch_size)
                done = cl.step(F.cross_entropy(cl.predict(x, t), y))
                state["step"] += 1
                ctx.step_done(loss=done.loss.item(), reg=done.reg.item(), task=f"{t + 1}/{T}", model=kind)
            state["seconds"][kind] += time.perf_counter() - started
            if kind in growths:  # rows from the per-task copies (the live model is rnn-freeze's)
                cl.end_task()
                growths[kind].store(t)
                row = growths[kind].evaluate_cl1(cl, tests[: t + 1])
                state["grown_matrix"][kind].append(row)
            else:
                row = cl.end_task(tests)
            ctx.log(kind="eval", model=kind, after_task=t + 1, accuracy=row)
            state["task"], state["step"] = t + 1, 0
            ctx.checkpoint()
        state["model"], state["task"] = mi + 1, 0
    results: dict[str, Any] = {"benchmark": cfg.benchmark, "tasks": [t.name for t in tasks], "steps_per_task": cfg.steps, "models": {}, "seconds": state["seconds"]}
    rows = []
    for kind in cfg.models:
        cl, model = cls[kind], models[kind]
        model.eval()
        cl3_tests, offsets = [_TestBatches(task, 5000) for task in tasks], [t.label_offset for t in tasks]
        summary = model.summary()
        if kind in growths:
            growth, matrix = growths[kind], state["grown_matrix"][kind]
            cl3 = growth.evaluate_cl3(cl, cl3_tests, label_offsets=offsets)
            params, ratio = growth.inference_parameters(), growth.inference_parameters() / summary.generated
        else:
            matrix = cl.matrix
            cl3 = cl.evaluate_cl3(cl3_tests, label_offsets=offsets)
            params, ratio = summary.hypernetwork, summary.compression_ratio
        final = matrix[-1]
        results["models"][kind] = {"matrix": matrix, "cl1": final, "cl1_average": sum(final) / T, "forgetting": forgetting(matrix),
                                   "cl3": cl3.per_task, "cl3_average": cl3.average, "task_inference_average": cl3.task_inference_average,
                                   "hypernetwork_parameters": params, "compression_ratio": ratio}
        rows.append([LABELS[kind], f"{sum(final) / T:.2f}", f"{forgetting(matrix):.2f}", f"{cl3.average:.2f}", f"{params:,}", f"{ratio:.3f}", f"{state['seconds'][kind]:.0f}"])
    name = "split-MNIST" if cfg.benchmark == "split" else "permuted-MNIST"
    ctx.table(f"{name}, {T} tasks x {cfg.steps} steps: hypernetworks side by side", ["hypernetwork", "CL1 average (%)", "forgetting (points)", "CL3 average (%)", "trainable parameters", "compression ratio (hnet / target)", "seconds"],
              rows, note=f"target {tasks[0].input_dim}-{'-'.join(map(str, base.target_hidden))} with one head per task; beta {base.beta}, Adam lr {base.lr}, batch {base.batch_size}"
              + ("; rnn-grow: the parameters are every per-task copy plus the task embeddings" if growths else ""))
    return results
