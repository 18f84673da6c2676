"""The output regularizer of continual learning with hypernetworks and its Adam look-ahead.

While learning task ``t`` the regularizer keeps the hypernetwork's outputs for the
earlier tasks where they were before task ``t`` started:

    L = L_task(t) + beta * (1 / |S|) * sum_{k in S} || H(e_k) - H*(e_k) ||^2

with ``H*(e_k)`` stored (detached) at the start of task ``t`` (:func:`store_targets`)
and ``S`` all earlier tasks or a random subset of them (:func:`choose_regularized_tasks`).
This is the "fixed targets" regularizer of the paper (eq. 2), as in the released
code's ``calc_fix_target_reg``. With the look-ahead (eq. 2 as written, the released
configurations' default) ``H(e_k)`` is evaluated at ``phi + Delta phi``, where
``Delta phi`` (detached) is the step the optimizer would take on the task loss
alone (:func:`adam_lookahead`).

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.conditioning import TaskInput
from hyperdnn.errors import ConfigError, HDTypeError, ShapeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.continual.chunk_factors import ChunkFactors, factored_regularizer

__all__ = [
    "adam_lookahead",
    "choose_regularized_tasks",
    "flat_weights",
    "output_regularizer",
    "store_targets",
]


def task_input(model: HyperDNN, part: str) -> TaskInput:
    """The ``TaskEmbedding`` input module of ``model`` (``num_tasks``, ``table``).

    Raises:
        HDTypeError: ``model`` is not a HyperDNN.
        ConfigError: its inputs are not a ``TaskEmbedding``.
    """
    if not isinstance(model, HyperDNN):
        raise HDTypeError(f"{part}: the model must be a hyperdnn.HyperDNN (got {type(model).__name__})")
    inputs = model.hypernetwork.inputs
    if not isinstance(inputs, TaskInput):
        raise ConfigError(f"{part}: the model must be a HyperDNN with inputs=TaskEmbedding(...) (got inputs {type(inputs).__name__})")
    return inputs


def task_embeddings(model: HyperDNN, part: str) -> Tensor:
    """The learned task embeddings of ``model``, ``(num_tasks, dim)``: row ``k`` is ``e_k``
    (the parameter itself, so its ``.grad`` and device are the training's)."""
    return task_input(model, part).table.weight


def flat_weights(theta: dict[str, Tensor], names: Sequence[str], groups: int | None = None) -> Tensor:
    """Concatenate generated weights into one vector per weight set.

    Args:
        theta: ``{name: shape}`` or ``{name: (G, *shape)}`` from ``HyperDNN.weights``.
        names: the order (the generated parameters' names).
        groups: ``G`` for batched weights, None for one weight set.

    Returns:
        ``(P,)`` or ``(G, P)``.
    """
    if groups is None:
        return torch.cat([theta[n].reshape(-1) for n in names])
    return torch.cat([theta[n].reshape(groups, -1) for n in names], dim=1)


def _names(model: HyperDNN) -> list[str]:
    return [p.name for p in model.spec.params]


@torch.no_grad()
def store_targets(model: HyperDNN, num_tasks: int) -> Tensor:
    """``H*(e_k)`` for ``k = 0 .. num_tasks-1``: detached flattened weights ``(num_tasks, P)``.

    Called at the start of each new task; an empty ``(0, P)`` tensor when ``num_tasks == 0``.

    Args:
        model: a HyperDNN with ``TaskEmbedding`` inputs.
        num_tasks: the tasks learned so far.
    """
    device = task_embeddings(model, "store_targets").device
    if num_tasks == 0:
        return torch.zeros(0, model.spec.numel, device=device)
    ids = torch.arange(num_tasks, device=device)
    return flat_weights(model.weights(task=ids), _names(model), groups=num_tasks).detach().clone()


def output_regularizer(model: HyperDNN, targets: Tensor, tasks: Tensor | Sequence[int] | None = None, delta: dict[str, Tensor] | None = None, mask: Tensor | None = None, factors: ChunkFactors | None = None) -> Tensor:
    """Mean over tasks ``k`` of ``|| H(e_k) - targets[k] ||^2`` (squared L2 over all of theta).

    Args:
        model: a HyperDNN with ``TaskEmbedding`` inputs.
        targets: ``(K, P)`` from :func:`store_targets`.
        tasks: which earlier tasks to regularize (default all ``0..K-1``).
        delta: optional look-ahead ``{name: Delta phi}`` for parameters of
            ``model.hypernetwork.outputs`` (from :func:`adam_lookahead`): ``H`` is then
            evaluated at ``phi + Delta phi`` (Delta phi is treated as a constant).
        mask: optional ``(num_tasks, P)`` bool: row ``k`` says which generated weights task
            ``k``'s term counts (e.g. all but the other tasks' output heads, as
            posterior_replay_cl's ``inds_of_out_heads``); None: all of them.
        factors: optional :class:`ChunkFactors` stored with ``targets``
            (:func:`store_factors`): the same value, up to fp32 rounding, from Gram
            matrices of the chunked hypernetwork's head, at a cost that does not grow
            with the number of tasks (see :mod:`.chunk_factors`); not used with ``mask``.

    Returns:
        A scalar (0 when there is nothing to regularize). Multiply by beta.
    """
    device = targets.device
    ids = torch.arange(targets.shape[0], device=device) if tasks is None else torch.as_tensor(tasks, device=device, dtype=torch.long)
    if ids.numel() == 0:
        return targets.new_zeros(())
    if targets.dim() != 2 or targets.shape[1] != model.spec.numel:
        raise ShapeError(f"output_regularizer: targets must be (K, {model.spec.numel}) (got {tuple(targets.shape)})")
    if mask is not None and (mask.dim() != 2 or mask.shape[1] != model.spec.numel or mask.shape[0] < int(ids.max()) + 1 or mask.dtype != torch.bool):
        raise ShapeError(f"output_regularizer: mask must be a bool (num_tasks, {model.spec.numel}) tensor with a row per task (got {mask.dtype} {tuple(mask.shape)})")
    if factors is not None and mask is None:
        if factors.hidden.shape[0] != targets.shape[0]:
            raise ShapeError(f"output_regularizer: the factors hold {factors.hidden.shape[0]} tasks, the targets {targets.shape[0]}; store both at the same time")
        return factored_regularizer(model, factors, ids, delta)
    if delta is None:
        theta = model.weights(task=ids)
    else:
        outputs = model.hypernetwork.outputs
        params = {n: (p + delta[n].detach() if n in delta else p) for n, p in outputs.named_parameters()}
        z = model.condition(task=ids).z  # (n, d)
        theta = torch.func.functional_call(outputs, params, (z,))
    # all earlier tasks in order (the usual case): the stored rows as they are, no gathered copy
    every = tasks is None or (ids.numel() == targets.shape[0] and bool((ids == torch.arange(ids.numel(), device=device)).all()))
    wanted = targets if every else targets[ids]
    keep = None if mask is None else mask[ids].to(targets.dtype)  # (n, P): 1 where the weight counts
    # tensor by tensor against column views of the targets: no (n, P) concatenation, and
    # mse_loss fuses difference, square and sum (and their backward) in one pass each
    total, start = targets.new_zeros(()), 0
    for name in _names(model):
        w = theta[name].reshape(ids.shape[0], -1)
        cols = slice(start, start + w.shape[1])
        if keep is None:
            total = total + F.mse_loss(w, wanted[:, cols], reduction="sum")
        else:
            total = total + ((w - wanted[:, cols]) * keep[:, cols]).pow(2).sum()
        start += w.shape[1]
    return total / ids.shape[0]


def check_lookahead_optimizer(optimizer: object, part: str) -> None:
    """Raises ``ConfigError`` unless :func:`adam_lookahead` can predict ``optimizer``'s step."""
    if type(optimizer) is not torch.optim.Adam:
        raise ConfigError(f"{part}: the look-ahead is implemented for torch.optim.Adam (got {type(optimizer).__name__}); pass lookahead=False for another optimizer")
    for g in optimizer.param_groups:
        if g.get("weight_decay", 0) or g.get("amsgrad") or g.get("maximize"):
            raise ConfigError(f"{part}: the look-ahead does not support Adam's weight_decay, amsgrad and maximize (got weight_decay={g.get('weight_decay', 0)}, amsgrad={g.get('amsgrad')}, maximize={g.get('maximize')})")


@torch.no_grad()
def adam_lookahead(model: HyperDNN, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The change ``Delta phi`` that ``optimizer.step()`` would make now to the hypernetwork's
    output part (body, heads, chunk embeddings), from the current ``.grad``, without changing
    anything (the released code's ``calc_delta_theta``).

    Args:
        model: a HyperDNN; only ``model.hypernetwork.outputs`` parameters are looked at.
        optimizer: a ``torch.optim.Adam`` (no weight decay, amsgrad or maximize) holding them.

    Returns:
        ``{name in model.hypernetwork.outputs: Delta phi}`` for parameters that have a gradient.
    """
    check_lookahead_optimizer(optimizer, "adam_lookahead")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out: dict[str, Tensor] = {}
    for name, p in model.hypernetwork.outputs.named_parameters():
        if p.grad is None or id(p) not in group_of:
            continue
        g = group_of[id(p)]
        (b1, b2), lr, eps = g["betas"], g["lr"], g["eps"]
        st = optimizer.state.get(p, {})
        step = float(st["step"]) + 1 if "step" in st else 1.0
        # Adam's formulas, m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g g, step = -lr/(1 - b1^t)
        # m / (sqrt(v) / sqrt(1 - b2^t) + eps), with the same operations in the same order but
        # in place: three full-size temporaries per parameter instead of about ten (the chunked
        # head is millions of numbers, and each fresh tensor costs time on a CPU)
        tmp = torch.mul(p.grad, 1 - b1)
        m = torch.mul(st["exp_avg"], b1).add_(tmp) if "exp_avg" in st else tmp.clone()
        v = torch.mul(p.grad, p.grad, out=tmp).mul_(1 - b2)
        if "exp_avg_sq" in st:
            v = torch.mul(st["exp_avg_sq"], b2).add_(v)
        denom = v.sqrt_().div_(math.sqrt(1 - b2**step)).add_(eps)
        out[name] = m.mul_(-(lr / (1 - b1**step))).div_(denom)
    return out


def choose_regularized_tasks(num_previous: int, subset: int | None, generator: torch.Generator | None = None) -> Tensor:
    """Which earlier tasks to regularize this step: all, or ``subset`` drawn without replacement.

    Args:
        num_previous: tasks learned before the current one.
        subset: None or ``>= num_previous``: all of them; else this many at random.
        generator: RNG for the draw.

    Returns:
        Sorted task ids ``(n,)``.
    """
    if subset is not None and subset < 1:
        raise ConfigError(f"continual: the regularizer's task subset must be >= 1 or None (got {subset})")
    if subset is None or subset >= num_previous:
        return torch.arange(num_previous)
    return torch.randperm(num_previous, generator=generator)[:subset].sort().values
