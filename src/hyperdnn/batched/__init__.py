"""Runs a target with one weight set per group of samples, without a Python loop.

Generated tensors carry a leading group dimension ``G``: ``G = B`` when each
sample has its own weights (dynamic inputs), ``G = k`` for a noise ensemble
whose members all see the same batch. The input batch is kept flat as
``G * n`` rows (group-major), so modules without generated parameters run
unchanged; each module that holds generated tensors runs a batched rule
(batched matmul, grouped convolution, a batched recurrence) for the duration
of the call. Modules without a rule fall back to ``torch.func.vmap`` over
the groups.

Modules with a batched rule: Linear, Conv1d/2d/3d, BatchNorm1d/2d/3d,
LayerNorm, Embedding, RNN, LSTM, GRU, MultiheadAttention. See :mod:`.rules`.

Every module that holds generated tensors must see the batch where the
HyperDNN's ``batch_dim`` says (recurrent and attention modules: where their
``batch_first`` says), sample-major: a tensor whose size there is not a
multiple of the batch is refused with a ``ShapeError``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ShapeError
from ..factored import Factored, dense, dense_for
from ..weight_slots import WeightSlots
from .fallback import vmap_rule
from .norm import batch_norm
from .rules import BATCH_POSITION, FACTORED_RULES, RULES, SUBTREE_RULES


def _plan(target: nn.Module, names: list[str], per_group_stats: bool) -> list[tuple[nn.Module, Any, dict[str, str]]]:
    """Finds, top-down, which module runs which generated names and with which rule."""
    remaining = set(names)
    plan = []
    for mod_name, mod in target.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        mine = {n: n[len(prefix):] for n in remaining if n.startswith(prefix)}
        if not mine:
            if per_group_stats and isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.training:
                # An ensemble's members are independent models: statistics per member.
                plan.append((mod, functools.partial(batch_norm, per_group=True), {}))
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
            if rule is batch_norm and per_group_stats:
                rule = functools.partial(batch_norm, per_group=True)
            plan.append((mod, rule, direct))
            remaining -= set(direct)
    return plan


def _mha_fastpath_off():
    """nn.MultiheadAttention's fused eval path reads the (empty) weight slots directly."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def off():
        before = mha.get_fastpath_enabled()
        mha.set_fastpath_enabled(False)
        try:
            yield
        finally:
            mha.set_fastpath_enabled(before)

    return off()


def call_batched(
    slots: WeightSlots,
    theta: dict[str, Tensor | Factored],
    groups: int,
    args: tuple,
    kwargs: dict,
    batch_dim: int = 0,
    rows: int | None = None,
    per_group_stats: bool = False,
) -> Any:
    """Runs the target ``slots.target(*args, **kwargs)`` with per-group weights.

    Args:
        slots: the prepared target's weight slots (the one way weights enter it).
        theta: name -> tensor of shape ``(G, *param_shape)``, or a ``Factored`` value
            with ``G`` groups (Linear, Conv and Embedding use its parts; other modules
            get it formed).
        groups: ``G``.
        args, kwargs: the target's inputs, with ``G * n`` rows (group-major) along
            ``batch_dim``.
        batch_dim: where the batch lives in the inputs of generic modules
            (recurrent and attention modules use their own ``batch_first``).
        rows: ``G * n``, the batch of the call; modules must see a multiple of it.
        per_group_stats: BatchNorm in training mode normalises each group with its
            own statistics (ensembles: members are independent models).
    """
    full = dict(theta)
    for name, others in slots.aliases.items():
        if name in full:
            for other in others:
                full[other] = full[name]
    in_slots: dict[str, Any] = {}
    forwards = []
    for mod, rule, local in _plan(slots.target, list(full), per_group_stats):
        weights = {loc: full[name] for name, loc in local.items()}
        if rule not in FACTORED_RULES:
            weights = {k: dense_for(mod, v) for k, v in weights.items()}
        for name, loc in local.items():
            in_slots[name] = weights[loc]
        forwards.append((mod, _bind(rule, mod, weights, groups, batch_dim, rows)))
    # The slots hold what the modules compute with, so hooks see the same tensors.
    filled = {n: in_slots.get(n, full[n]) for n in slots.slots}
    with slots.filled(filled, forwards), _mha_fastpath_off():
        return slots.target(*args, **kwargs)


def _bind(rule, mod, weights, groups, batch_dim, rows):
    position = BATCH_POSITION.get(type(mod), lambda m, bd: bd)(mod, batch_dim)

    def forward(*args, **kwargs):
        x = args[0] if args else next((v for v in kwargs.values() if isinstance(v, Tensor)), None)
        if rows is not None and isinstance(x, Tensor):
            size = x.shape[position] if x.dim() > position else None
            if size is None or size % rows:
                raise ShapeError(
                    f"{type(mod).__name__} (with generated weights) got an input of shape {tuple(x.shape)}: "
                    f"expected the batch of {rows} (or a multiple of it, sample-major) at dim {position}; "
                    "every generated module must see the batch at HyperDNN(batch_dim=...)"
                )
        return rule(mod, weights, groups, batch_dim, *args, **kwargs)

    return forward


def repeat_groups(x: Tensor, groups: int, batch_dim: int) -> Tensor:
    """Repeats a batch ``(..., B, ...)`` as ``(..., groups * B, ...)``, group-major."""
    shape = list(x.shape)
    xe = x.unsqueeze(batch_dim).expand(*shape[:batch_dim], groups, *shape[batch_dim:])
    return xe.flatten(batch_dim, batch_dim + 1)


__all__ = ["call_batched", "repeat_groups"]
