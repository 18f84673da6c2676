"""Evaluation of continual learning: test metrics, task inference by predictive entropy, forgetting.

- CL1: the task id is given at test time, ``y = F(x; H(e_k))``;
- CL3: the task id is inferred as the one whose weights give the lowest
  predictive entropy on the input, then the prediction of that task's weights
  is used (the paper's HNET+ENT);
- the accuracy matrix ``a[t][k]`` (metric on task k after training task t), its
  final average and the average forgetting (Chaudhry et al. 2018).

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence, Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.errors import ConfigError, HDTypeError, ShapeError

__all__ = [
    "average_final",
    "cl3_predict",
    "forgetting",
    "infer_task",
    "predictive_entropy",
    "score",
]

# what score() measures: test accuracy in % (higher is better) or mean squared error (lower is better)
METRICS = ("accuracy", "mse")

# a task's test data: one batch (x, y), or an iterable of (x, y) batches that can be iterated again
# (a list, a DataLoader)
TestData = Union[tuple[Tensor, Tensor], Iterable[Sequence[Tensor]]]


def batches(data: TestData, part: str = "continual") -> Iterable[Sequence[Tensor]]:
    """The ``(x, y)`` batches of a task's test data (see ``TestData``)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return [cast(Sequence[Tensor], data)]
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise HDTypeError(f"{part}: a task's test data must be a pair (x, y) of Tensors or an iterable of (x, y) batches (got {type(data).__name__})")
    return cast(Iterable[Sequence[Tensor]], data)


@torch.no_grad()
def score(forward: Callable[[Tensor], Tensor], data: TestData, metric: str = "accuracy") -> float:
    """One task's test metric of a model.

    Args:
        forward: ``x -> outputs``: ``(N, C)`` logits for ``"accuracy"``, predictions shaped
            like ``y`` for ``"mse"``.
        data: the task's test data: ``(x, y)`` or an iterable of ``(x, y)`` batches.
        metric: ``"accuracy"`` (in %, ``y`` holds class indices ``(N,)``) or ``"mse"``
            (squared error summed over the batches, divided by the number of elements of ``y``).

    Returns:
        The metric over all batches.
    """
    if metric not in METRICS:
        raise ConfigError(f"score: metric must be one of {METRICS} (got {metric!r})")
    total, n = 0.0, 0
    for x, y in batches(data, "score"):
        out = forward(x)
        if metric == "mse":
            total += F.mse_loss(out, y, reduction="sum").item()
        else:
            total += (out.argmax(-1) == y).sum().item()
        n += y.numel()
    if n == 0:
        raise ShapeError("score: the test data hold no samples")
    return total / n if metric == "mse" else 100.0 * total / n


def predictive_entropy(logits: Tensor) -> Tensor:
    """Entropy of ``softmax(logits)`` over the last dimension, in nats: ``(..., C) -> (...)``."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def infer_task(logits: Tensor) -> Tensor:
    """Task inference by lowest predictive entropy.

    Args:
        logits: ``(J, N, C)``: the outputs of each of ``J`` candidate tasks' weights on ``N`` inputs.

    Returns:
        ``(N,)`` the task index with the lowest entropy for each input (ties: the lowest index).
    """
    if logits.dim() != 3:
        raise ShapeError(f"infer_task: logits must be (tasks, N, classes) (got {tuple(logits.shape)})")
    return predictive_entropy(logits).argmin(dim=0)


def cl3_predict(logits: Tensor, label_offsets: Sequence[int]) -> tuple[Tensor, Tensor]:
    """CL3 prediction: infer the task, then take that task's class.

    Args:
        logits: ``(J, N, C)`` as in :func:`infer_task`.
        label_offsets: per task, added to the task-local class to give a global label.

    Returns:
        ``(global_labels (N,), inferred_tasks (N,))``.
    """
    tasks = infer_task(logits)
    chosen = logits[tasks, torch.arange(logits.shape[1], device=logits.device)]  # (N, C)
    offsets = torch.as_tensor(list(label_offsets), device=logits.device)[tasks]
    return chosen.argmax(dim=-1) + offsets, tasks


def average_final(matrix: Sequence[Sequence[float]]) -> float:
    """Mean of the last row of an accuracy matrix (``matrix[t][k]``: on task k after training task t)."""
    last = list(matrix[-1])
    return float(sum(last) / len(last))


def forgetting(matrix: Sequence[Sequence[float]], higher_is_better: bool = True) -> float:
    """Average forgetting (Chaudhry et al. 2018): over tasks ``k < T-1``,
    ``max_{t<T-1} a[t][k] - a[T-1][k]`` (for errors: ``a[T-1][k] - min_{t<T-1} a[t][k]``).

    Returns 0.0 for a single task.
    """
    T = len(matrix)
    if T < 2:
        return 0.0
    vals = []
    for k in range(T - 1):
        history = [matrix[t][k] for t in range(k, T - 1)]
        final = matrix[T - 1][k]
        vals.append(max(history) - final if higher_is_better else final - min(history))
    return float(sum(vals) / len(vals))
