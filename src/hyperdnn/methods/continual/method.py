"""``ContinualLearning``: a task-conditioned HyperDNN learning tasks one after another.

The object holds what makes the method correct and is easy to get wrong in a
hand-written loop: the stored outputs ``H*(e_k)`` of the earlier tasks, the
order of one training step (task-loss backward, the optimizer's look-ahead from
those gradients, the regularizer's backward, the other task embeddings kept
fixed, the optimizer step) and the evaluation (CL1, CL3, accuracy matrix,
forgetting). The user keeps the model, the optimizer, the data and the loop.

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, HDTypeError, ShapeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.continual.chunk_factors import ChunkFactors, make_factors, store_factors
from hyperdnn.methods.continual.evaluation import METRICS, TestData, average_final, batches, cl3_predict, forgetting, score
from hyperdnn.methods.continual.regularizer import (
    adam_lookahead,
    check_lookahead_optimizer,
    choose_regularized_tasks,
    output_regularizer,
    store_targets,
    task_embeddings,
    task_input,
)

__all__ = ["CL3Scores", "ContinualLearning", "ContinualResults", "ContinualStep"]


@dataclass(frozen=True)
class ContinualStep:
    """What one :meth:`ContinualLearning.step` did.

    Attributes:
        loss: the task loss, detached (a scalar tensor).
        reg: the output regularizer before ``beta`` (a scalar tensor; 0 when nothing was regularized).
    """

    loss: Tensor
    reg: Tensor


@dataclass(frozen=True)
class CL3Scores:
    """CL3 evaluation: the task inferred by lowest predictive entropy among all candidate tasks.

    Attributes:
        per_task: accuracy (%) on each task's test data, the label counting as right only when
            the inferred task's prediction is the true global label.
        task_inference: per task, the % of inputs whose own task was inferred.
    """

    per_task: list[float]
    task_inference: list[float]

    @property
    def average(self) -> float:
        """Mean of ``per_task``."""
        return sum(self.per_task) / len(self.per_task)

    @property
    def task_inference_average(self) -> float:
        """Mean of ``task_inference``."""
        return sum(self.task_inference) / len(self.task_inference)


@dataclass(frozen=True)
class ContinualResults:
    """What :meth:`ContinualLearning.evaluate` returns.

    Attributes:
        cl1: the metric on each task with its task id given.
        cl3: CL3 scores (``metric="accuracy"`` only), else None.
        matrix: ``matrix[t][k]``: the metric on task ``k`` after learning task ``t`` (rows
            from :meth:`ContinualLearning.end_task`).
        final_average: mean of the matrix's last row (None without rows).
        forgetting: average forgetting over the matrix (None without rows).
    """

    cl1: list[float]
    cl3: CL3Scores | None
    matrix: list[list[float]]
    final_average: float | None
    forgetting: float | None


class ContinualLearning:
    """Continual learning with a task-conditioned hypernetwork (von Oswald et al. 2020).

    Learning task ``t`` minimises

        L_task(t) + beta * (1 / |S|) * sum_{k in S} || H(e_k; phi + Delta phi) - H*(e_k) ||^2

    where ``H*(e_k)`` are the hypernetwork's outputs for the earlier tasks ``k < t``,
    stored when task ``t`` starts, ``S`` is all of them or ``reg_tasks`` drawn at random
    per step, and ``Delta phi`` is the step Adam would take on the task loss alone
    (``lookahead``). Only task ``t``'s embedding moves; the others stay as learned.

    Args:
        model: a ``HyperDNN`` with ``inputs=TaskEmbedding(num_tasks, dim)``.
        optimizer: the optimizer over ``model.parameters()`` that the user built; with
            ``lookahead`` a ``torch.optim.Adam`` without weight decay, amsgrad or maximize.
        beta: regularizer strength (>= 0; 0 turns it off).
        reg_tasks: earlier tasks regularized per step, drawn without replacement
            (None: all of them).
        lookahead: evaluate the regularizer at ``phi + Delta phi`` (the paper's eq. 2).
        reset_optimizer: clear the optimizer's state at every :meth:`start_task`, as the
            paper does (a fresh Adam per task); without it Adam's momentum can move the
            earlier task embeddings.
        heads: with a multi-head target, the slice of the outputs' last dimension that
            each task reads (one per task); None: every task reads all outputs.
        metric: ``"accuracy"`` (in %, classification; CL3 is available) or ``"mse"``.
        generator: RNG for the ``reg_tasks`` draws (None: torch's global RNG).
        reg_mask: optional ``(num_tasks, P)`` bool: row ``k`` says which generated weights
            task ``k``'s regularizer term counts (None: all; see ``output_regularizer``).
        fix_earlier_embeddings: keep the earlier task embeddings as learned (their
            gradients zeroed, as in the paper's code); False lets the regularizer's
            gradient move them (posterior_replay_cl optimizes all hypernetwork parameters).
        factored_regularizer: with chunk-wise outputs (a linear head), compute the
            regularizer from Gram matrices of the head (``chunk_factors``): the same value
            up to fp32 rounding at a cost per step that does not grow with the number of
            earlier tasks. False: every earlier task's weights are made in full.

    Use (each task's data and loss are the user's)::

        cl = ContinualLearning(model, torch.optim.Adam(model.parameters(), lr=1e-3), beta=0.01)
        for t in range(num_tasks):
            cl.start_task(t)
            for x, y in train_batches[t]:
                cl.step(F.cross_entropy(cl.predict(x, t), y))
            cl.end_task(test_sets)         # CL1 on tasks 0..t: one row of the accuracy matrix
        results = cl.evaluate(test_sets)   # CL1, CL3, matrix, final average, forgetting

    Paper: von Oswald, Henning, Grewe, Sacramento, "Continual learning with
    hypernetworks", ICLR 2020 (arXiv 1906.00695).
    """

    def __init__(
        self,
        model: HyperDNN,
        optimizer: torch.optim.Optimizer,
        *,
        beta: float = 0.01,
        reg_tasks: int | None = None,
        lookahead: bool = True,
        reset_optimizer: bool = True,
        heads: Sequence[slice] | None = None,
        metric: str = "accuracy",
        generator: torch.Generator | None = None,
        reg_mask: Tensor | None = None,
        fix_earlier_embeddings: bool = True,
        factored_regularizer: bool = True,
    ) -> None:
        part = "ContinualLearning"
        inputs = task_input(model, part)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise HDTypeError(f"{part}: optimizer must be a torch.optim.Optimizer over the model's parameters (got {type(optimizer).__name__})")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
            raise ConfigError(f"{part}: beta must be a finite number >= 0 (got {beta!r})")
        if reg_tasks is not None and (isinstance(reg_tasks, bool) or not isinstance(reg_tasks, int) or reg_tasks < 1):
            raise ConfigError(f"{part}: reg_tasks must be an int >= 1 or None for all earlier tasks (got {reg_tasks!r})")
        for name, flag in (("lookahead", lookahead), ("reset_optimizer", reset_optimizer), ("fix_earlier_embeddings", fix_earlier_embeddings), ("factored_regularizer", factored_regularizer)):
            if not isinstance(flag, bool):
                raise HDTypeError(f"{part}: {name} must be True or False (got {flag!r})")
        if lookahead:
            check_lookahead_optimizer(optimizer, part)
        if metric not in METRICS:
            raise ConfigError(f"{part}: metric must be one of {METRICS} (got {metric!r})")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise HDTypeError(f"{part}: generator must be a torch.Generator or None (got {type(generator).__name__})")
        if heads is not None:
            heads = list(heads)
            if len(heads) != inputs.num_tasks or not all(isinstance(h, slice) for h in heads):
                raise ConfigError(f"{part}: heads must hold one slice per task ({inputs.num_tasks}) (got {heads!r})")
        if reg_mask is not None and (not isinstance(reg_mask, Tensor) or reg_mask.dtype != torch.bool or tuple(reg_mask.shape) != (inputs.num_tasks, model.spec.numel)):
            got = f"{reg_mask.dtype} {tuple(reg_mask.shape)}" if isinstance(reg_mask, Tensor) else type(reg_mask).__name__
            raise ConfigError(f"{part}: reg_mask must be a bool ({inputs.num_tasks}, {model.spec.numel}) tensor, a row per task (got {got})")
        self.model = model
        self.reg_mask = reg_mask
        self.fix_earlier_embeddings = fix_earlier_embeddings
        self.factored_regularizer = factored_regularizer
        self.factors: ChunkFactors | None = None  # the targets' factors (chunk-wise outputs), stored with them
        self.optimizer = optimizer
        self.beta = float(beta)
        self.reg_tasks = reg_tasks
        self.lookahead = lookahead
        self.reset_optimizer = reset_optimizer
        self.heads = heads
        self.metric = metric
        self.generator = generator
        self.num_tasks = inputs.num_tasks
        self.task: int | None = None  # the task being learned (between start_task and end_task)
        self.learned = 0  # tasks learned so far (0 .. learned-1)
        self.targets = store_targets(model, 0)  # (learned, P): H*(e_k) stored at the current task's start
        self.matrix: list[list[float]] = []

    # ------------------------------------------------------------ training

    def start_task(self, task: int) -> None:
        """Start learning ``task`` (tasks come in order 0, 1, 2, ...): store ``H*(e_k)`` for
        ``k < task`` and, with ``reset_optimizer``, clear the optimizer's state."""
        if isinstance(task, bool) or not isinstance(task, int):
            raise HDTypeError(f"ContinualLearning.start_task: task must be an int (got {type(task).__name__})")
        if task != self.learned or task >= self.num_tasks:
            hint = f"the next task is {self.learned}" if self.learned < self.num_tasks else f"all {self.num_tasks} tasks are learned"
            raise ConfigError(f"ContinualLearning.start_task: tasks are learned in order 0, 1, ... and {self.learned} are learned, so {hint} (got task {task})")
        if self.reset_optimizer:
            self.optimizer.state.clear()  # a fresh Adam per task, as in the released code
        self.targets = store_targets(self.model, task)
        self.factors = store_factors(self.model, task) if self.factored_regularizer and self.reg_mask is None else None
        self.task = task

    def predict(self, x: Tensor, task: int) -> Tensor:
        """The target's outputs for ``task``: ``model(x, task=task)``, restricted to the task's head."""
        out = self.model(x, task=task)
        return out if self.heads is None else out[..., self.heads[task]]

    def step(self, loss: Tensor) -> ContinualStep:
        """One optimizer step on the current task: the task loss plus ``beta`` times the regularizer.

        In order: zero the gradients, backward of ``loss``, the look-ahead ``Delta phi``
        from those gradients, backward of ``beta * regularizer`` (the gradients add up),
        zero the gradients of every task embedding but the current one, optimizer step.

        Args:
            loss: the task loss on a batch of the current task, a scalar computed with
                ``model(x, task=t)`` (or :meth:`predict`) since the last step.

        Returns:
            The detached task loss and the regularizer's value.
        """
        t = self._current("step")
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ShapeError(f"ContinualLearning.step: loss must be a scalar Tensor (got {type(loss).__name__}{'' if not isinstance(loss, Tensor) else ' of shape ' + str(tuple(loss.shape))})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        reg = loss.new_zeros(())
        if t > 0 and self.beta > 0:
            ids = choose_regularized_tasks(t, self.reg_tasks, self.generator)
            delta = adam_lookahead(self.model, self.optimizer) if self.lookahead else None
            reg_t = output_regularizer(self.model, self.targets, ids, delta, self.reg_mask, self.factors)
            (self.beta * reg_t).backward()  # gradients add up with the task loss's
            reg = reg_t.detach()
        if self.fix_earlier_embeddings:
            self._keep_other_task_embeddings(t)
        self.optimizer.step()
        return ContinualStep(loss.detach(), reg)

    def end_task(self, tests: Sequence[TestData] | None = None) -> list[float] | None:
        """Finish the current task; with ``tests``, evaluate CL1 on tasks ``0..t`` (one matrix row).

        Args:
            tests: each task's test data (``(x, y)`` or an iterable of batches), at least
                ``t + 1`` of them; only the first ``t + 1`` are used.

        Returns:
            The new row of the accuracy matrix, or None without ``tests``.
        """
        t = self._current("end_task")
        row = None
        if tests is not None:
            if len(tests) < t + 1:
                raise ConfigError(f"ContinualLearning.end_task: tests must hold the test data of tasks 0..{t} (got {len(tests)})")
            if len(self.matrix) != t:
                raise ConfigError(f"ContinualLearning.end_task: the accuracy matrix has {len(self.matrix)} rows for {t} earlier tasks; pass tests to every end_task or to none")
            row = self.evaluate_cl1(tests[: t + 1])
            self.matrix.append(row)
        self.learned, self.task = t + 1, None
        return row

    def _current(self, part: str) -> int:
        if self.task is None:
            raise ConfigError(f"ContinualLearning.{part}: no task is being learned; call start_task({self.learned}) first")
        return self.task

    def _keep_other_task_embeddings(self, task: int) -> None:
        """Zero the gradient of every task embedding but ``task`` (the earlier ones stay as learned)."""
        grad = task_embeddings(self.model, "ContinualLearning").grad
        if grad is not None:
            keep = grad[task].clone()
            grad.zero_()
            grad[task] = keep

    # ------------------------------------------------------------ evaluation

    def evaluate_cl1(self, tests: Sequence[TestData]) -> list[float]:
        """The metric on each task ``k`` with its task id given (``tests[k]``: task k's test data)."""
        self._check_tests(tests, "evaluate_cl1")
        with _eval_mode(self.model):
            return [score(partial(self.predict, task=k), data, self.metric) for k, data in enumerate(tests)]

    @torch.no_grad()
    def evaluate_cl3(self, tests: Sequence[TestData], label_offsets: Sequence[int] | None = None) -> CL3Scores:
        """CL3: for each input, the task whose weights give the lowest predictive entropy
        (candidates: the ``len(tests)`` tasks) makes the prediction.

        Args:
            tests: each task's test data; ``y`` holds the task-local class.
            label_offsets: per task, what turns its local class into a global label; a
                prediction is right when ``inferred task's class + label_offsets[inferred]
                == y + label_offsets[k]``. Default: ``k * C`` (C outputs per head), i.e.
                right when both the task and the class are.
        """
        self._check_tests(tests, "evaluate_cl3")
        if self.metric != "accuracy":
            raise ConfigError(f"ContinualLearning.evaluate_cl3: CL3 needs classification (metric='accuracy'; got {self.metric!r})")
        J = len(tests)
        if label_offsets is not None and len(label_offsets) != J:
            raise ConfigError(f"ContinualLearning.evaluate_cl3: label_offsets must hold one offset per task ({J}) (got {len(label_offsets)})")
        accs, infs = [], []
        with _eval_mode(self.model):
            thetas = [self.model.weights(task=j) for j in range(J)]
            for k, data in enumerate(tests):
                correct = inferred = n = 0
                for x, y in batches(data, "ContinualLearning.evaluate_cl3"):
                    logits = torch.stack([self._head(self.model.run_target(x, th), j) for j, th in enumerate(thetas)])  # (J, N, C)
                    offsets = label_offsets if label_offsets is not None else [j * logits.shape[-1] for j in range(J)]
                    pred, which = cl3_predict(logits, offsets)
                    correct += int((pred == y + offsets[k]).sum())
                    inferred += int((which == k).sum())
                    n += y.numel()
                accs.append(100.0 * correct / n)
                infs.append(100.0 * inferred / n)
        return CL3Scores(accs, infs)

    def evaluate(self, tests: Sequence[TestData], cl3: bool = True) -> ContinualResults:
        """CL1 on every task, CL3 (with ``cl3`` and ``metric="accuracy"``), the accuracy matrix
        so far, its final average and the forgetting."""
        has_rows = bool(self.matrix)
        return ContinualResults(
            cl1=self.evaluate_cl1(tests),
            cl3=self.evaluate_cl3(tests) if cl3 and self.metric == "accuracy" else None,
            matrix=[list(r) for r in self.matrix],
            final_average=average_final(self.matrix) if has_rows else None,
            forgetting=self.forgetting() if has_rows else None,
        )

    def forgetting(self) -> float:
        """Average forgetting over the accuracy matrix (for ``"mse"``: how much the error grew)."""
        if not self.matrix:
            raise ConfigError("ContinualLearning.forgetting: the accuracy matrix is empty; pass tests to end_task")
        return forgetting(self.matrix, higher_is_better=self.metric == "accuracy")

    def _head(self, out: Tensor, task: int) -> Tensor:
        return out if self.heads is None else out[..., self.heads[task]]

    def _check_tests(self, tests: Sequence[TestData], part: str) -> None:
        if isinstance(tests, (Tensor, tuple)) and len(tests) == 2 and all(isinstance(t, Tensor) for t in tests):
            raise HDTypeError(f"ContinualLearning.{part}: tests must be a sequence with one test set per task, e.g. [(x0, y0), (x1, y1)] (got one pair (x, y))")
        if not 1 <= len(tests) <= self.num_tasks:
            raise ConfigError(f"ContinualLearning.{part}: tests must hold the test data of 1..{self.num_tasks} tasks (got {len(tests)})")

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The method's state (stored targets and their factors, task, tasks learned, accuracy
        matrix); model and optimizer are saved by their own ``state_dict``."""
        factors = None if self.factors is None else self.factors.state()
        return {"targets": self.targets, "factors": factors, "task": -1 if self.task is None else self.task, "learned": self.learned, "matrix": [list(r) for r in self.matrix]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the targets move to the model's device."""
        part = "ContinualLearning.load_state_dict"
        keys = {"targets", "task", "learned", "matrix"}
        if not isinstance(state, dict) or not keys <= set(state) <= keys | {"factors"}:
            raise ConfigError(f"{part}: expected the keys targets, task, learned, matrix and optionally factors (got {sorted(state) if isinstance(state, dict) else type(state).__name__})")
        targets, task, learned, matrix = state["targets"], state["task"], state["learned"], state["matrix"]
        ints_ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (task, learned))
        if not ints_ok or not 0 <= learned <= self.num_tasks or task not in (-1, learned):
            raise ConfigError(f"{part}: task {task!r} and learned {learned!r} do not fit a model of {self.num_tasks} tasks")
        stored = task if task >= 0 else max(learned - 1, 0)
        P = self.model.spec.numel
        if not isinstance(targets, Tensor) or tuple(targets.shape) != (stored, P):
            raise ConfigError(f"{part}: targets must be a ({stored}, {P}) Tensor (got {tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__})")
        if not isinstance(matrix, list) or not all(isinstance(r, list) for r in matrix) or len(matrix) > learned:
            raise ConfigError(f"{part}: matrix must be a list of at most {learned} rows (got {matrix!r})")
        factors = state.get("factors")
        if factors is not None and (not isinstance(factors, dict) or not {"weight", "hidden"} <= set(factors) <= {"weight", "bias", "hidden"} or not all(isinstance(v, Tensor) for v in factors.values()) or factors["hidden"].dim() != 3 or factors["hidden"].shape[0] != stored):
            raise ConfigError(f"{part}: factors must be None or {{'weight': Tensor, 'bias': Tensor (optional), 'hidden': ({stored}, chunks, d) Tensor}} (got {str(factors)[:200]})")
        device = task_embeddings(self.model, part).device
        self.factors = None if factors is None else make_factors(factors["weight"].to(device), factors["bias"].to(device) if "bias" in factors else None, factors["hidden"].to(device), P)
        self.targets = targets.to(device)
        self.task = None if task < 0 else task
        self.learned = learned
        self.matrix = [list(r) for r in matrix]


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model.eval()`` and ``torch.no_grad()`` for a block; every submodule's mode is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training
