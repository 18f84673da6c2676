"""Diagnostics of CL3 task inference by predictive entropy (von Oswald et al. 2020).

Two questions about the released code's CL3 evaluation (chrhenning/hypercl,
``mnist/train_splitMNIST.py``, ``test``) that the library's CL3 does not ask:

- it computes each candidate's entropy as ``-sum(p * log(p))`` on an fp32 softmax,
  which is NaN when a probability is exactly 0 (``0 * log 0``), and ``argmin`` over
  the candidates then picks a NaN one; :func:`cl3_diagnostics` counts the test
  inputs where some candidate has such a probability and scores CL3 with the
  released formula;
- its test during training (``task_id`` given) offers only the tasks seen so
  far as candidates; :func:`cl3_diagnostics` scores task ``k`` with candidates
  ``0..k`` (the final model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.errors import ConfigError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.continual.evaluation import TestData, batches, infer_task


@dataclass(frozen=True)
class CL3Diagnostics:
    """What :func:`cl3_diagnostics` measured, per task (all accuracies in %).

    Attributes:
        zero_probability: test inputs of the task for which at least one candidate's fp32
            softmax holds a probability of exactly 0 (a count, not a %).
        inputs: test inputs of the task.
        released_entropy: CL3 with the released entropy formula ``-sum(p * log p)``
            (NaN where a probability is 0) and ``torch.argmin`` over the candidates.
        seen_candidates: CL3 of task ``k`` with candidates ``0..k`` only.
    """

    zero_probability: list[int]
    inputs: list[int]
    released_entropy: list[float]
    seen_candidates: list[float]


@torch.no_grad()
def cl3_diagnostics(model: HyperDNN, tests: Sequence[TestData], heads: Sequence[slice], label_offsets: Sequence[int]) -> CL3Diagnostics:
    """The two CL3 diagnostics above on each task's test data.

    Args:
        model: a task-conditioned HyperDNN (``model.weights(task=j)``); put it in eval mode.
        tests: each task's test data, ``y`` the task-local class.
        heads: per task, the slice of the target's outputs that it reads.
        label_offsets: per task, what turns its local class into a global label.

    Returns:
        A :class:`CL3Diagnostics`.
    """
    J = len(tests)
    if len(heads) != J or len(label_offsets) != J:
        raise ConfigError(f"cl3_diagnostics: heads and label_offsets need one entry per task ({J}) (got {len(heads)} and {len(label_offsets)})")
    thetas = [model.weights(task=j) for j in range(J)]
    offsets = torch.as_tensor(list(label_offsets))
    zeros, counts, released, seen = [], [], [], []
    for k, data in enumerate(tests):
        n_zero = n = right_released = right_seen = 0
        for x, y in batches(data, "cl3_diagnostics"):
            logits = torch.stack([model.run_target(x, th)[..., heads[j]] for j, th in enumerate(thetas)])  # (J, N, C)
            p = F.softmax(logits, dim=-1)
            n_zero += int((p == 0).any(-1).any(0).sum())
            entropy = -(p * torch.log(p)).sum(-1)  # (J, N), NaN where a p is 0, as released
            truth = y.cpu() + offsets[k]
            right_released += int((_predict(logits, entropy.argmin(0), offsets) == truth).sum())
            right_seen += int((_predict(logits[: k + 1], infer_task(logits[: k + 1]), offsets) == truth).sum())
            n += y.numel()
        zeros.append(n_zero)
        counts.append(n)
        released.append(100.0 * right_released / n)
        seen.append(100.0 * right_seen / n)
    return CL3Diagnostics(zeros, counts, released, seen)


def _predict(logits: Tensor, tasks: Tensor, offsets: Tensor) -> Tensor:
    """Global labels ``(N,)`` from the inferred ``tasks`` and their heads' argmax (on the CPU)."""
    chosen = logits[tasks, torch.arange(logits.shape[1], device=logits.device)]
    return chosen.argmax(-1).cpu() + offsets[tasks.cpu()]
