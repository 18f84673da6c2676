"""Runs a target with one weight set per group of samples, without a Python loop.

Generated tensors carry a leading group dimension ``G``: ``G = B`` when each
sample has its own weights (dynamic inputs), ``G = k`` for a noise ensemble
whose members all see the same batch. The input batch is kept flat as
``G * n`` rows (group-major), so modules without generated parameters run
unchanged; each module that holds generated parameters runs a batched rule
(batched matmul, grouped convolution, a batched recurrence) for the duration
of the call. Modules without a rule fall back to ``torch.func.vmap`` over
the groups.

Modules with a batched rule: Linear, Conv1d/2d/3d, BatchNorm1d/2d/3d,
LayerNorm, Embedding, LSTM, GRU, MultiheadAttention. See :mod:`.rules`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ShapeError
from .fallback import vmap_rule
from .linear_conv import linear
from .rules import RULES, SUBTREE_RULES


def materialize(w: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """Low-rank factors ``(A, B)`` -> ``A @ B^T``; tensors pass through."""
    if isinstance(w, tuple):
        a, b = w
        return torch.matmul(a, b.transpose(-1, -2))
    return w


def _plan(target: nn.Module, names: list[str]) -> list[tuple[nn.Module, Any, dict[str, str]]]:
    """Finds, top-down, which module runs which generated names and with which rule."""
    remaining = set(names)
    plan = []
    for mod_name, mod in target.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        mine = {n: n[len(prefix):] for n in remaining if n.startswith(prefix)}
        if not mine:
            continue
        direct = {full: local for full, local in mine.items() if "." not in local}
        rule = SUBTREE_RULES.get(type(mod))
        if rule is not None:
            plan.append((mod, rule, mine))
            remaining -= set(mine)
            continue
        if not direct:
            continue
        rule = RULES.get(type(mod))
        if rule is None:
            # An unknown module that owns generated tensors: vmap its whole subtree.
            plan.append((mod, vmap_rule, mine))
            remaining -= set(mine)
        else:
            plan.append((mod, rule, direct))
            remaining -= set(direct)
    return plan


def call_batched(
    target: nn.Module,
    theta: dict[str, Tensor],
    groups: int,
    args: tuple,
    kwargs: dict,
    batch_dim: int = 0,
) -> Any:
    """Runs ``target(*args, **kwargs)`` with per-group weights.

    Args:
        target: the prepared target copy (generated names are empty buffers).
        theta: name -> tensor of shape ``(G, *param_shape)``, or for a Linear weight
            low-rank factors ``(A (G, out, r), B (G, in, r))``.
        groups: ``G``.
        args, kwargs: the target's inputs, with ``G * n`` rows (group-major) along
            ``batch_dim``.
        batch_dim: where the batch lives in the inputs of generic modules
            (recurrent and attention modules use their own ``batch_first``).
    """
    plan = _plan(target, list(theta))
    patched = []
    try:
        for mod, rule, local in plan:
            weights = {loc: theta[full] for full, loc in local.items()}
            if rule is not linear:
                weights = {k: materialize(v) for k, v in weights.items()}
            mod.forward = _bind(rule, mod, weights, groups, batch_dim)
            patched.append(mod)
        return target(*args, **kwargs)
    finally:
        for mod in patched:
            mod.__dict__.pop("forward", None)


def _bind(rule, mod, weights, groups, batch_dim):
    def forward(*args, **kwargs):
        return rule(mod, weights, groups, batch_dim, *args, **kwargs)

    return forward


def repeat_groups(x: Tensor, groups: int, batch_dim: int) -> Tensor:
    """Repeats a batch ``(..., B, ...)`` as ``(..., groups * B, ...)``, group-major."""
    shape = list(x.shape)
    xe = x.unsqueeze(batch_dim).expand(*shape[:batch_dim], groups, *shape[batch_dim:])
    return xe.flatten(batch_dim, batch_dim + 1)


def check_rows(x: Tensor, groups: int, batch_dim: int, part: str) -> int:
    """Returns ``n`` such that ``x`` has ``groups * n`` rows along ``batch_dim``."""
    if x.dim() <= batch_dim:
        raise ShapeError(f"{part}: input of shape {tuple(x.shape)} has no batch dimension {batch_dim}")
    rows = x.shape[batch_dim]
    if rows % groups:
        raise ShapeError(
            f"{part}: input has {rows} rows along dim {batch_dim}, not a multiple of the {groups} weight sets"
        )
    return rows // groups


__all__ = ["call_batched", "check_rows", "repeat_groups"]
