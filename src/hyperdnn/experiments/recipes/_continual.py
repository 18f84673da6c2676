"""The training loop shared by the continual-learning recipes (toy-regression, split-mnist, permuted-mnist).

Two phases in one run: (1) the task-conditioned hypernetwork with the output
regularizer (von Oswald et al. 2020), trained and evaluated by
:class:`hyperdnn.methods.ContinualLearning` (the recipe draws the batches and
calls it), (2) for comparison the same target trained directly on the tasks in
sequence with no regularizer. Each phase fills an accuracy matrix ``a[t][k]``
(metric on task k after training task t, CL1: task id given); the hypernetwork
is also evaluated in CL3 (task inferred by lowest predictive entropy) at the
end. The loop is resumable at any step boundary (see :mod:`hyperdnn.experiments.runs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.bodies import ACTIVATIONS, MLP
from hyperdnn.conditioning import TaskEmbedding
from hyperdnn.data.continual_tasks import Task, sample_batch, tasks_to
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.errors import ConfigError
from hyperdnn.methods.continual import ContinualLearning, average_final, forgetting, score, xavier_init_
from hyperdnn.methods.continual.diagnostics import cl3_diagnostics
from hyperdnn.outputs import ChunkWise
from hyperdnn.experiments.recipes import boolean, non_negative, one_of, positive, positive_ints
from hyperdnn.experiments.runs import RunContext


@dataclass
class ContinualSpec:
    """What a continual recipe hands to :func:`run_continual`.

    Attributes:
        tasks: the task sequence.
        make_target: builds a fresh target network (called twice: hypernetwork copy, baseline).
        make_model: wraps a target into a task-conditioned HyperDNN.
        steps: optimizer steps per task.
        batch_size: training batch size.
        lr: Adam learning rate (hypernetwork and baseline).
        beta: output-regularizer strength.
        reg_tasks: earlier tasks regularized per step (None: all).
        lookahead: evaluate the regularizer at phi + Delta phi (the step Adam would take on
            the task loss alone), as in the paper's eq. 2 and released configurations.
        baseline: also train the plain target in sequence without regularizer.
        multi_head: the target has one output head per task (``sum(num_outputs)`` outputs,
            all made by the hypernetwork) and task ``k`` reads its own slice of them, as
            the released code's split-MNIST main net for CL1/CL3 (``n_out = out_dim *
            num_tasks``); False: all tasks share the outputs.
        sweeps: draw training batches as the released data handlers do, in shuffled sweeps
            through the task's training set restarted at each task; False: independent
            draws with replacement.
        cl3: evaluate CL3 (classification only).
        nll_scale: ``"mean"``: the task loss averaged over the batch (hypercl);
            ``"train-set"``: times the task's number of training samples, as
            posterior_replay_cl's ``train_bbb`` scales its NLL (so ``beta`` weighs the
            regularizer against the whole training set's loss).
        reg_own_head: each earlier task's regularizer term leaves out the output weights
            of the other tasks' heads (posterior_replay_cl's ``inds_of_out_heads``);
            needs ``multi_head`` and a target whose last layer is a linear layer.
        fix_earlier_embeddings: keep earlier task embeddings fixed (hypercl); False: the
            regularizer's gradient moves them (posterior_replay_cl).
        paper: published numbers for the summary table, e.g. ``{"cl1": 99.79, "cl3": 69.48}``.
        plot: optional ``plot(ctx, model, baseline, tasks)`` for recipe-specific figures.
    """

    tasks: list[Task]
    make_target: Callable[[], nn.Module]
    make_model: Callable[[nn.Module], HyperDNN]
    steps: int
    batch_size: int
    lr: float
    beta: float
    reg_tasks: int | None = None
    lookahead: bool = True
    baseline: bool = True
    multi_head: bool = False
    sweeps: bool = False
    cl3: bool = True
    nll_scale: str = "mean"
    reg_own_head: bool = False
    fix_earlier_embeddings: bool = True
    paper: dict[str, float] | None = None
    plot: Callable[..., None] | None = None


def check_chunked_config(part: str, cfg: Any) -> None:
    """Check the fields that the chunked MNIST recipes (split-mnist, permuted-mnist) share.

    Turns list values of ``target_hidden``/``hnet_hidden`` (from JSON or by hand) into
    tuples; ``tasks`` is the recipe's own to check (its range differs).

    Args:
        part: the recipe name, for the messages.
        cfg: the recipe's ``Config``.
    """
    cfg.target_hidden, cfg.hnet_hidden = (tuple(v) if isinstance(v, list) else v for v in (cfg.target_hidden, cfg.hnet_hidden))
    for name in ("steps", "batch_size", "emb_dim", "chunk_size", "chunk_dim"):
        positive(part, name, getattr(cfg, name))
    if cfg.reg_tasks is not None:
        positive(part, "reg_tasks", cfg.reg_tasks)
    positive(part, "lr", cfg.lr, float)
    non_negative(part, "beta", cfg.beta, float)
    positive_ints(part, "target_hidden", cfg.target_hidden)
    positive_ints(part, "hnet_hidden", cfg.hnet_hidden)
    one_of(part, "hnet_activation", cfg.hnet_activation, ACTIVATIONS)
    one_of(part, "hnet_init", cfg.hnet_init, ("xavier", "target"))
    for name in ("multi_head", "sweeps", "lookahead", "baseline"):
        boolean(part, name, getattr(cfg, name))


def chunked_spec(cfg: Any, tasks: list[Task], make_target: Callable[[], nn.Module], paper: dict[str, float], cl3: bool = True) -> ContinualSpec:
    """The :class:`ContinualSpec` of a chunked MNIST recipe: a task-embedding hypernetwork
    (MLP body, chunk-wise outputs; Xavier-uniform weights and zero biases with
    ``hnet_init="xavier"``, as the released code sets them) and the config's training settings.

    Args:
        cfg: a config checked by :func:`check_chunked_config`.
        tasks: the task sequence.
        make_target: builds a fresh target network.
        paper: published numbers for the summary table.
        cl3: evaluate CL3 at the end.
    """

    def make_model(target: nn.Module) -> HyperDNN:
        outputs = ChunkWise(cfg.chunk_size, cfg.chunk_dim, getattr(cfg, "chunk_init_std", 1.0))
        model = HyperDNN(target, inputs=TaskEmbedding(len(tasks), cfg.emb_dim), outputs=outputs, body=MLP(cfg.hnet_hidden, cfg.hnet_activation))
        if cfg.hnet_init == "xavier":
            xavier_init_(model)
        return model

    return ContinualSpec(
        tasks=tasks,
        make_target=make_target,
        make_model=make_model,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        beta=cfg.beta,
        reg_tasks=cfg.reg_tasks,
        lookahead=cfg.lookahead,
        baseline=cfg.baseline,
        multi_head=cfg.multi_head,
        sweeps=cfg.sweeps,
        cl3=cl3,
        nll_scale=getattr(cfg, "nll_scale", "mean"),
        reg_own_head=getattr(cfg, "reg_own_head", False),
        fix_earlier_embeddings=getattr(cfg, "fix_earlier_embeddings", True),
        paper=paper,
    )


class Sweeps:
    """Training batches in shuffled sweeps through a task's training set, as the released
    code's data handlers draw them (chrhenning/hypercl ``data/dataset.py``,
    ``_get_random_batch``: a fresh shuffle after each complete sweep; restarted per task by
    ``reset_batch_generator``). Resumable: ``state_dict`` holds the order and position.

    Args:
        generator: RNG for the shuffles.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.order = torch.zeros(0, dtype=torch.long)
        self.pos = 0

    def reset(self) -> None:
        """Start a new task: the next batch begins a fresh shuffle."""
        self.order, self.pos = torch.zeros(0, dtype=torch.long), 0

    def batch(self, task: Task, batch_size: int) -> tuple[Tensor, Tensor]:
        """The next ``batch_size`` samples ``(x, y)``; a sweep's end continues into a new shuffle."""
        parts, need = [], batch_size
        while need > 0:
            if self.pos >= self.order.numel():
                self.order, self.pos = torch.randperm(task.num_train, generator=self.generator), 0
            take = min(need, self.order.numel() - self.pos)
            parts.append(self.order[self.pos : self.pos + take])
            self.pos, need = self.pos + take, need - take
        idx = torch.cat(parts).to(task.train_x.device)
        return task.inputs(task.train_x[idx]), task.train_y[idx]

    def state_dict(self) -> dict[str, Tensor]:
        return {"order": self.order.clone(), "pos": torch.tensor(self.pos)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.order, self.pos = state["order"].clone().long(), int(state["pos"])


def _head(spec: ContinualSpec, tasks: list[Task], k: int) -> slice:
    """The outputs task ``k`` reads: its own head with ``multi_head``, else all of them."""
    if not spec.multi_head:
        return slice(None)
    start = sum(t.num_outputs for t in tasks[:k])
    return slice(start, start + tasks[k].num_outputs)


def own_head_mask(model: HyperDNN, heads: list[slice]) -> Tensor:
    """Per task ``k``, the generated weights its regularizer term counts: all but the rows
    of the other tasks' heads in the target's last layer (posterior_replay_cl's
    ``inds_of_out_heads``, ``utils/hnet_regularizer.py`` ``flatten_and_remove_out_heads``).

    Args:
        model: a HyperDNN whose target ends in a linear layer (its last two generated
            parameters: weight ``(O, H)`` and bias ``(O,)``).
        heads: per task, the slice of the ``O`` outputs it reads.

    Returns:
        ``(len(heads), P)`` bool on the model's device.
    """
    params = model.spec.params
    if len(params) < 2 or len(params[-2].shape) != 2 or params[-1].shape != params[-2].shape[:1]:
        raise ConfigError(f"continual: reg_own_head needs a target whose last layer is linear with a bias (got last parameters {[(p.name, p.shape) for p in params[-2:]]})")
    out, hidden = params[-2].shape
    w_start = model.spec.numel - out * hidden - out
    device = next(model.parameters()).device
    mask = torch.ones(len(heads), model.spec.numel, dtype=torch.bool, device=device)
    for k in range(len(heads)):
        for j, head in enumerate(heads):
            if j == k:
                continue
            rows = range(out)[head]
            mask[k, w_start + rows.start * hidden : w_start + rows.stop * hidden] = False
            mask[k, w_start + out * hidden + rows.start : w_start + out * hidden + rows.stop] = False
    return mask


def _loss(task: Task, out: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(out, y) if task.regression else F.cross_entropy(out, y)


def _baseline_head(base: nn.Module, head: slice, x: Tensor) -> Tensor:
    return base(x)[:, head]


class _TestBatches:
    """A task's test set as ``(inputs, targets)`` batches of ``chunk`` rows (re-iterable)."""

    def __init__(self, task: Task, chunk: int) -> None:
        self.task, self.chunk = task, chunk

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x_all, y_all = self.task.test_x, self.task.test_y
        for i in range(0, x_all.shape[0], self.chunk):
            yield self.task.inputs(x_all[i : i + self.chunk]), y_all[i : i + self.chunk]


def run_continual(ctx: RunContext, spec: ContinualSpec) -> dict[str, Any]:
    """Train and evaluate both phases; writes tables and plots through ``ctx``. Returns the results dict."""
    tasks = tasks_to(spec.tasks, ctx.device)
    T = len(tasks)
    regression = tasks[0].regression
    metric = "mse" if regression else "accuracy"
    heads = [_head(spec, tasks, k) for k in range(T)]
    tests = [_TestBatches(task, 10000) for task in tasks]
    model = spec.make_model(spec.make_target()).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    base = spec.make_target().to(ctx.device)
    base_optimizer = torch.optim.Adam(base.parameters(), lr=spec.lr)
    data_rng = torch.Generator().manual_seed(ctx.seed)
    sweeps = Sweeps(data_rng)
    reg_mask = own_head_mask(model, heads) if spec.reg_own_head else None
    cl = ContinualLearning(model, optimizer, beta=spec.beta, reg_tasks=spec.reg_tasks, lookahead=spec.lookahead, heads=heads if spec.multi_head else None, metric=metric, generator=data_rng, reg_mask=reg_mask, fix_earlier_embeddings=spec.fix_earlier_embeddings)
    ctx.track(model=model, optimizer=optimizer, baseline=base, baseline_optimizer=base_optimizer, data_rng=data_rng, continual=cl, **({"sweeps": sweeps} if spec.sweeps else {}))
    phases = ["hnet"] + (["baseline"] if spec.baseline else [])
    # the hypernetwork's accuracy matrix lives in `cl` (checkpointed with it), the baseline's here
    state = ctx.restore({"phase": 0, "task": 0, "step": 0, "matrix": {p: [] for p in phases[1:]}, "seconds": {p: 0.0 for p in phases}})
    ctx.progress(total=T * spec.steps * len(phases))

    for pi in range(state["phase"], len(phases)):
        phase = phases[pi]
        net = model if phase == "hnet" else base
        for t in range(state["task"], T):
            task = tasks[t]
            if state["step"] == 0:
                sweeps.reset()
                if phase == "hnet":
                    cl.start_task(t)  # a fresh Adam, H*(e_k) stored for k < t
                else:
                    base_optimizer.state.clear()  # a fresh Adam per task, as in the released code
            net.train()
            started = time.perf_counter()
            while state["step"] < spec.steps:
                x, y = sweeps.batch(task, spec.batch_size) if spec.sweeps else sample_batch(task, spec.batch_size, data_rng)
                x, y = ctx.shard(x, y)  # this process's slice of the global batch under torchrun
                if phase == "hnet":
                    scale = task.num_train if spec.nll_scale == "train-set" else 1
                    loss = _loss(task, cl.predict(x, t), y)
                    done = cl.step(loss * scale if scale != 1 else loss)
                    loss_task, reg = loss.detach(), done.reg.item()
                else:
                    loss_task, reg = _loss(task, base(x)[:, heads[t]], y), 0.0
                    base_optimizer.zero_grad(set_to_none=True)
                    loss_task.backward()
                    base_optimizer.step()
                state["step"] += 1
                ctx.step_done(loss=loss_task.item(), reg=reg, task=f"{t + 1}/{T}", phase=phase)
            state["seconds"][phase] += time.perf_counter() - started
            net.eval()
            if phase == "hnet":
                row = cl.end_task(tests)
                if spec.cl3 and not regression:  # CL3 right after task t, candidates the tasks seen so far (the released code's "during" test)
                    seen = cl.evaluate_cl3([_TestBatches(tk, 5000) for tk in tasks[: t + 1]], label_offsets=[tk.label_offset for tk in tasks[: t + 1]])
                    state.setdefault("cl3_seen", []).append(seen.per_task[t])
            else:
                row = [score(partial(_baseline_head, base, heads[k]), tests[k], metric) for k in range(t + 1)]
                state["matrix"][phase].append(row)
            ctx.log(kind="eval", phase=phase, after_task=t + 1, metric=row)
            state["task"], state["step"] = t + 1, 0
            ctx.checkpoint()
        state["phase"], state["task"] = pi + 1, 0

    matrices = {"hnet": cl.matrix, **state["matrix"]}
    return _report(ctx, spec, cl, base, tasks, state, matrices)


def _report(ctx: RunContext, spec: ContinualSpec, cl: ContinualLearning, base: nn.Module, tasks: list[Task], state: dict, matrices: dict[str, list[list[float]]]) -> dict[str, Any]:
    T = len(tasks)
    model = cl.model
    regression = cl.metric == "mse"
    name = "test MSE" if regression else "test accuracy (%)"
    summary = model.summary()
    results: dict[str, Any] = {"metric": name, "tasks": [t.name for t in tasks], "compression_ratio": summary.compression_ratio, "summary": summary.to_json(), "seconds": state["seconds"], "steps_per_task": spec.steps}
    rows = []
    for phase, label in (("hnet", "hypernetwork + output regularizer (CL1)"), ("baseline", "target trained in sequence, no regularizer")):
        if phase not in matrices:
            continue
        mat = matrices[phase]
        ctx.table(f"{label}: {name} on task k (columns) after training task t (rows)", ["after task"] + [f"{k + 1}: {t.name}" for k, t in enumerate(tasks)], [[t + 1] + row + [""] * (T - len(row)) for t, row in enumerate(mat)])
        final = average_final(mat)
        forg = forgetting(mat, higher_is_better=not regression)
        results[phase] = {"matrix": mat, "final": mat[-1], "final_average": final, "forgetting": forg, "just_after_training": [mat[k][k] for k in range(T)]}
        rows.append([label, final, forg])
    cl3_row: list[Any] = []
    if spec.cl3 and not regression:
        model.eval()
        cl3 = cl.evaluate_cl3([_TestBatches(task, 5000) for task in tasks], label_offsets=[t.label_offset for t in tasks])
        accs, infs = cl3.per_task, cl3.task_inference
        results["hnet"]["cl3"] = {"per_task": accs, "average": cl3.average, "task_inference_per_task": infs, "task_inference_average": cl3.task_inference_average}
        ctx.table("hypernetwork, CL3 (task inferred by lowest predictive entropy)", ["task", "CL3 accuracy (%)", "task inferred correctly (%)"], [[f"{k + 1}: {tasks[k].name}", a, i] for k, (a, i) in enumerate(zip(accs, infs))])
        cl3_row = [cl3.average]
        diag = cl3_diagnostics(model, [_TestBatches(task, 5000) for task in tasks], [_head(spec, tasks, k) for k in range(T)], [t.label_offset for t in tasks])
        during = state.get("cl3_seen", [])
        results["hnet"]["cl3_diagnostics"] = {
            "zero_probability_inputs": diag.zero_probability,
            "test_inputs": diag.inputs,
            "released_entropy_per_task": diag.released_entropy,
            "released_entropy_average": sum(diag.released_entropy) / T,
            "seen_candidates_final_per_task": diag.seen_candidates,
            "seen_candidates_final_average": sum(diag.seen_candidates) / T,
            "seen_candidates_during_per_task": during,
            "seen_candidates_during_average": sum(during) / len(during) if during else None,
        }
        ctx.table(
            "CL3 diagnostics",
            ["task", "inputs with a candidate's softmax p == 0 (fp32)", "CL3, released entropy -sum(p log p) (%)", "CL3, candidates 0..k, final model (%)", "CL3, candidates 0..k, right after task k (%)"],
            [[f"{k + 1}: {tasks[k].name}", f"{diag.zero_probability[k]} / {diag.inputs[k]}", diag.released_entropy[k], diag.seen_candidates[k], during[k] if k < len(during) else ""] for k in range(T)],
        )
    paper = spec.paper or {}
    head = ["method", f"final average {name}", "forgetting"]
    if cl3_row:
        head.append("CL3 average (%)")
        rows[0].append(cl3_row[0])
        for r in rows[1:]:
            r.append("n/a")
    head.append("compression ratio (hypernet / generated, < 1 means compressed)")
    rows[0].append(summary.compression_ratio)
    for r in rows[1:]:
        r.append(1.0)
    if paper and ctx.published:  # the paper's numbers only beside a run of the paper's settings
        paper_row: list[Any] = ["paper (von Oswald et al. 2020)", paper.get("final", ""), ""]
        if cl3_row:
            paper_row.append(paper.get("cl3", ""))
        paper_row.append(paper.get("compression_ratio", ""))
        rows.append(paper_row)
    ctx.table(f"Summary ({T} tasks x {spec.steps} steps)", head, rows, note=f"hypernetwork: {summary.hypernetwork:,} trainable parameters for {summary.generated:,} generated target weights")
    results["paper"] = paper
    if spec.plot is not None:
        spec.plot(ctx, model, base, tasks)
    from hyperdnn.checkpoint import save

    save(model, ctx.run_dir / "model", extra={"recipe": ctx.recipe, "tasks": [t.name for t in tasks]})
    return results
