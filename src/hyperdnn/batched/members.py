"""How many ensemble members one batched call of the target runs (noise inputs, ``samples=k``).

An ensemble call ``model(x, samples=k)`` repeats the batch ``k`` times and runs the
target once with ``k`` weight sets. On a CPU that is not always the fastest way:
the activations of all members at once leave the cache, and elementwise layers
(ReLU, pooling) and the copies between them then run 2x to 6x slower per element
than on one member's activations. :func:`members_per_call` is the rule the
HyperDNN follows in inference; :func:`take_groups` cuts generated weights into
chunks of members.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..factored import Factored

__all__ = ["CPU_ROWS_PER_CALL", "has_training_batchnorm", "members_per_call", "one_group", "one_set_as_group", "take_groups"]

#: On a CPU, about this many rows (members x batch) per batched call of the target.
CPU_ROWS_PER_CALL = 512


def members_per_call(k: int, batch: int, device: torch.device) -> int:
    """How many of ``k`` members run in one batched call of the target.

    Args:
        k: ensemble members (weight sets).
        batch: rows each member sees.
        device: where the inputs live.

    Returns:
        All ``k`` on an accelerator; on a CPU ``CPU_ROWS_PER_CALL // batch`` (at least 1,
        at most ``k``): 16 members per call at batch 32, one at a time from batch 512.
        Measured with ``benchmarks/ensemble_speed.py`` on one thread: below ~512 rows
        the saving of fewer calls wins, above it the cache misses of the larger
        activations cost more than the calls saved.
    """
    if device.type != "cpu":
        return k
    return max(1, min(k, CPU_ROWS_PER_CALL // max(batch, 1)))


def has_training_batchnorm(target: nn.Module) -> bool:
    """Whether a BatchNorm in training mode updates running statistics: members run in
    chunks would then apply several momentum updates where one call applies one."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
               for m in target.modules())


def take_groups(theta: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """Weight sets ``start:stop`` of grouped weights (``name -> (G, *shape)`` tensors or
    ``Factored`` values with ``G`` groups, the contract of :func:`call_batched`; a
    ``Factored`` base shared by all groups stays shared)."""
    return {n: _cut(v, slice(start, stop)) for n, v in theta.items()}


def one_group(theta: dict[str, Any], index: int) -> dict[str, Any]:
    """Weight set ``index`` of grouped weights, without the group dimension."""
    return {n: _cut(v, index) for n, v in theta.items()}


def one_set_as_group(v: Any) -> Any:
    """One weight set as ``G = 1`` grouped weights (the inverse of :func:`one_group`; a
    ``Factored`` base stays shared)."""
    if isinstance(v, Factored):
        return Factored(v.a.unsqueeze(0), v.b.unsqueeze(0), v.shape, v.base, v.scale, v.dropout)
    return v.unsqueeze(0)


def _cut(v: Any, where: slice | int) -> Any:
    if isinstance(v, Factored):
        base = v.base[where] if v.base_batched else v.base
        return Factored(v.a[where], v.b[where], v.shape, base, v.scale, v.dropout)
    return v[where]
