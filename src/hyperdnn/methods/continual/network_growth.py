"""Network growth for dependency-preserving hypernetworks, as the authors' code does it.

Chandra, Varshney, Srijith, Gupta, "Continual Learning with Dependency Preserving
Hypernetworks" (WACV 2023) name a "network growth technique" for the RNN hypernetwork
whose definition is in the paper's method section, which could not be read here. What
is built is what the authors' code shows (their ``LSTMs/LSTM_cell.py`` and
``LSTMs/lstm_hypermodel.py``): at test time the LSTM cell and the output head run on
parameters ``theta`` "stored during training for network growth technique", one set
per task, "in each theta hidden parameters are frozen". So the hypernetwork grows by
one copy of its parameters per task (chunk embeddings, the LSTM's input weights and
the head), sharing the hidden-to-hidden weights, which stay frozen after the first
task (:func:`~hyperdnn.methods.continual.freeze_recurrent_`); task ``k`` is
generated from copy ``k``. As the task embeddings stay fixed once a task is learned,
task ``k``'s weights are then the ones it had at the end of its own training: no
forgetting, paid for with the stored copies.

:class:`NetworkGrowth` keeps the copies and evaluates with them (CL1, CL3); training
is :class:`~hyperdnn.methods.continual.ContinualLearning`'s, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.continual.evaluation import TestData, batches, cl3_predict, score
from hyperdnn.methods.continual.method import CL3Scores, ContinualLearning, _eval_mode
from hyperdnn.methods.continual.regularizer import task_embeddings

__all__ = ["NetworkGrowth"]


class NetworkGrowth:
    """Per-task copies of a task-conditioned hypernetwork's parameters, used to generate each
    task's weights at test time (the authors' network growth, see the module docstring).

    Call :meth:`store` after training each task (before the next ``start_task``); then
    :meth:`weights`, :meth:`evaluate_cl1` and :meth:`evaluate_cl3` generate task ``k``
    from copy ``k`` and the model's task embedding ``k``. A parameter equal in two
    consecutive copies (the frozen recurrent weights) is held once.

    Args:
        model: a ``HyperDNN`` with ``inputs=TaskEmbedding(...)`` (any body; the paper's is
            :func:`~hyperdnn.methods.continual.dependency_preserving_hnet`).

    Use::

        grow = NetworkGrowth(model)
        for t in range(T):
            if t == 1:
                freeze_recurrent_(model)
            cl.start_task(t)
            ...                                   # cl.step(loss) as usual
            cl.end_task()
            grow.store(t)
            row = grow.evaluate_cl1(cl, tests[: t + 1])
        cl3 = grow.evaluate_cl3(cl, tests)
    """

    def __init__(self, model: HyperDNN) -> None:
        part = "NetworkGrowth"
        if not isinstance(model, HyperDNN):
            raise HDTypeError(f"{part}: the model must be a hyperdnn.HyperDNN (got {type(model).__name__})")
        table = task_embeddings(model, part)  # raises for a model without TaskEmbedding inputs
        self.model = model
        # every hypernetwork parameter but the task embedding table, which stays the model's own
        self.names = [n for n, p in model.hypernetwork.named_parameters() if p is not table]
        self.snapshots: dict[int, dict[str, Tensor]] = {}

    # ------------------------------------------------------------ storing

    def store(self, task: int) -> None:
        """Keep a copy of the hypernetwork's parameters (but the task embeddings) for ``task``.

        Tasks are stored in order 0, 1, ...; storing the last stored task again replaces it.
        """
        if isinstance(task, bool) or not isinstance(task, int):
            raise HDTypeError(f"NetworkGrowth.store: task must be an int (got {type(task).__name__})")
        n = len(self.snapshots)
        if task not in (n, n - 1) or task < 0:
            raise ConfigError(f"NetworkGrowth.store: tasks are stored in order 0, 1, ...; {n} are stored, so the next is {n} (got {task})")
        params = dict(self.model.hypernetwork.named_parameters())
        before = self.snapshots.get(task - 1, {})
        snap = {}
        for name in self.names:
            value = params[name].detach()
            old = before.get(name)
            # held once when unchanged since the previous task (the frozen hidden-to-hidden weights)
            snap[name] = old if old is not None and torch.equal(old, value) else value.clone()
        self.snapshots[task] = snap

    def stored_parameters(self) -> int:
        """Numbers held in all copies together, a tensor shared by several copies counted once."""
        seen: dict[int, int] = {}
        for snap in self.snapshots.values():
            for t in snap.values():
                seen[id(t)] = t.numel()
        return sum(seen.values())

    def inference_parameters(self) -> int:
        """What inference on every stored task needs: the copies plus the task embeddings."""
        return self.stored_parameters() + task_embeddings(self.model, "NetworkGrowth").numel()

    # ------------------------------------------------------------ generating

    @contextmanager
    def use(self, task: int) -> Iterator[None]:
        """Within the block, the model's hypernetwork holds copy ``task`` (restored after)."""
        snap = self._snapshot(task, "use")
        params = dict(self.model.hypernetwork.named_parameters())
        live = {n: params[n].detach().clone() for n in snap}
        with torch.no_grad():
            for n, v in snap.items():
                params[n].copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, v in live.items():
                    params[n].copy_(v)

    @torch.no_grad()
    def weights(self, task: int) -> dict[str, Any]:
        """Task ``task``'s target weights, generated by its copy (``model.weights(task=task)`` then)."""
        with self.use(task), _eval_mode(self.model):
            theta = self.model.weights(task=task)
            # cloned: nothing returned may alias the parameters, which are restored in place after
            return {k: v.clone() if isinstance(v, Tensor) else v for k, v in theta.items()}

    def evaluate_cl1(self, cl: ContinualLearning, tests: Sequence[TestData]) -> list[float]:
        """``cl.metric`` on each task ``k`` (``tests[k]``) with its id given, from copy ``k``.

        Args:
            cl: the ``ContinualLearning`` that trained the model (its heads and metric are used).
            tests: the test data of tasks ``0 .. len(tests) - 1``, all stored.
        """
        self._check(cl, tests, "evaluate_cl1")
        out = []
        for k, data in enumerate(tests):
            theta = self.weights(k)
            with _eval_mode(self.model):
                out.append(score(lambda x, th=theta, j=k: cl._head(self.model.run_target(x, th), j), data, cl.metric))
        return out

    @torch.no_grad()
    def evaluate_cl3(self, cl: ContinualLearning, tests: Sequence[TestData], label_offsets: Sequence[int] | None = None) -> CL3Scores:
        """CL3 as :meth:`ContinualLearning.evaluate_cl3` (the candidate with the lowest predictive
        entropy predicts), each candidate task ``j`` generated from copy ``j``."""
        self._check(cl, tests, "evaluate_cl3")
        if cl.metric != "accuracy":
            raise ConfigError(f"NetworkGrowth.evaluate_cl3: CL3 needs classification (metric='accuracy'; got {cl.metric!r})")
        J = len(tests)
        if label_offsets is not None and len(label_offsets) != J:
            raise ConfigError(f"NetworkGrowth.evaluate_cl3: label_offsets must hold one offset per task ({J}) (got {len(label_offsets)})")
        thetas = [self.weights(j) for j in range(J)]
        accs, infs = [], []
        with _eval_mode(self.model):
            for k, data in enumerate(tests):
                correct = inferred = n = 0
                for x, y in batches(data, "NetworkGrowth.evaluate_cl3"):
                    logits = torch.stack([cl._head(self.model.run_target(x, th), j) for j, th in enumerate(thetas)])  # (J, N, C)
                    offsets = label_offsets if label_offsets is not None else [j * logits.shape[-1] for j in range(J)]
                    pred, which = cl3_predict(logits, offsets)
                    correct += int((pred == y + offsets[k]).sum())
                    inferred += int((which == k).sum())
                    n += y.numel()
                accs.append(100.0 * correct / n)
                infs.append(100.0 * inferred / n)
        return CL3Scores(accs, infs)

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The copies, ``{"snapshots": {"0": {name: tensor}, ...}}`` (shared tensors are stored in
        each copy; :meth:`load_state_dict` shares them again)."""
        return {"snapshots": {str(k): dict(v) for k, v in self.snapshots.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (onto the model's device)."""
        part = "NetworkGrowth.load_state_dict"
        snaps = state.get("snapshots") if isinstance(state, dict) else None
        if not isinstance(snaps, dict) or sorted(snaps) != sorted(str(k) for k in range(len(snaps))):
            raise ConfigError(f"{part}: expected {{'snapshots': {{'0': {{...}}, '1': ...}}}} with tasks 0..n-1 (got {str(state)[:200]})")
        params = dict(self.model.hypernetwork.named_parameters())
        self.snapshots = {}
        for k in range(len(snaps)):
            snap = snaps[str(k)]
            if not isinstance(snap, dict) or sorted(snap) != sorted(self.names):
                raise ConfigError(f"{part}: copy {k} must hold the parameters {self.names} (got {sorted(snap) if isinstance(snap, dict) else type(snap).__name__})")
            for n, v in snap.items():
                if not isinstance(v, Tensor) or v.shape != params[n].shape:
                    raise ConfigError(f"{part}: copy {k}'s {n} must be a tensor of shape {tuple(params[n].shape)} (got {tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__})")
            self.snapshots[k] = {}
            for n in self.names:  # re-share what is unchanged from the previous copy, as store() does
                v = snap[n].to(params[n].device, params[n].dtype)
                old = self.snapshots.get(k - 1, {}).get(n)
                self.snapshots[k][n] = old if old is not None and torch.equal(old, v) else v

    # ------------------------------------------------------------ helpers

    def _snapshot(self, task: int, part: str) -> dict[str, Tensor]:
        if task not in self.snapshots:
            raise ConfigError(f"NetworkGrowth.{part}: no copy is stored for task {task!r} (stored: {sorted(self.snapshots)}); call store({task}) after training it")
        return self.snapshots[task]

    def _check(self, cl: ContinualLearning, tests: Sequence[TestData], part: str) -> None:
        if not isinstance(cl, ContinualLearning) or cl.model is not self.model:
            raise HDTypeError(f"NetworkGrowth.{part}: cl must be the ContinualLearning training this NetworkGrowth's model (got {type(cl).__name__})")
        if isinstance(tests, tuple) and len(tests) == 2 and all(isinstance(t, Tensor) for t in tests):
            raise HDTypeError(f"NetworkGrowth.{part}: tests must be a sequence with one test set per task, e.g. [(x0, y0), (x1, y1)] (got one pair (x, y))")
        if not 1 <= len(tests) <= len(self.snapshots):
            raise ConfigError(f"NetworkGrowth.{part}: tests must hold the test data of 1..{len(self.snapshots)} stored tasks (got {len(tests)}); store each task after training it")
