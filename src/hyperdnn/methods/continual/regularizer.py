"""Continual learning with hypernetworks (von Oswald et al. 2020): regularizer, task inference, metrics.

A task-conditioned hypernetwork makes the target's weights ``theta_k = H(e_k)``
for each task. While learning task ``t`` the output regularizer keeps the
hypernetwork's outputs for the earlier tasks where they were before task ``t``
started:

    L = L_task(t) + beta * (1 / |S|) * sum_{k in S} || H(e_k) - H*(e_k) ||^2

with ``H*(e_k)`` stored (detached) at the start of task ``t`` and ``S`` all
earlier tasks or a random subset of them (for scale). This is the "fixed
targets" regularizer of the paper (eq. 2), as in the released code's
``calc_fix_target_reg``. With the look-ahead (eq. 2 as written, the released
configurations' default) ``H(e_k)`` is evaluated at ``phi + Delta phi``, where
``Delta phi`` (detached) is the step the optimizer would take on the task loss
alone: :func:`adam_lookahead`.

Evaluation:

- CL1: the task id is given at test time, ``y = F(x; H(e_k))``;
- CL3: the task id is inferred as the one whose weights give the lowest
  predictive entropy on the input, then the prediction of that task's weights
  is used (the paper's HNET+ENT).

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, ShapeError

__all__ = [
    "adam_lookahead",
    "average_final",
    "choose_regularized_tasks",
    "cl3_predict",
    "flat_weights",
    "forgetting",
    "freeze_other_task_embeddings",
    "infer_task",
    "output_regularizer",
    "predictive_entropy",
    "store_targets",
    "task_embedding_table",
    "xavier_init_",
]


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


def _names(model: nn.Module) -> list[str]:
    return [p.name for p in model.spec.params]  # type: ignore[attr-defined]


def task_embedding_table(model: nn.Module) -> nn.Embedding:
    """The ``nn.Embedding`` of a HyperDNN conditioned on ``TaskEmbedding`` (ConfigError otherwise)."""
    inputs = getattr(getattr(model, "hypernetwork", None), "inputs", None)
    table = getattr(inputs, "table", None)
    if not isinstance(table, nn.Embedding):
        raise ConfigError(f"continual: the model must be a HyperDNN with inputs=TaskEmbedding(...) (got inputs {type(inputs).__name__})")
    return table


def _task_weights(model: nn.Module, ids: Tensor) -> Tensor:
    """``(len(ids), P)``: the flattened weights for each task id (one batched hypernetwork call)."""
    return flat_weights(model.weights(task=ids), _names(model), groups=ids.shape[0])  # type: ignore[operator]


@torch.no_grad()
def store_targets(model: nn.Module, num_tasks: int) -> Tensor:
    """``H*(e_k)`` for ``k = 0 .. num_tasks-1``: detached flattened weights ``(num_tasks, P)``.

    Called at the start of each new task; an empty ``(0, P)`` tensor when ``num_tasks == 0``.
    """
    device = task_embedding_table(model).weight.device
    if num_tasks == 0:
        return torch.zeros(0, model.spec.numel, device=device)  # type: ignore[attr-defined]
    return _task_weights(model, torch.arange(num_tasks, device=device)).detach().clone()


def output_regularizer(model: nn.Module, targets: Tensor, tasks: Tensor | Sequence[int] | None = None, delta: dict[str, Tensor] | None = None) -> Tensor:
    """Mean over tasks ``k`` of ``|| H(e_k) - targets[k] ||^2`` (squared L2 over all of theta).

    Args:
        model: a HyperDNN with ``TaskEmbedding`` inputs.
        targets: ``(K, P)`` from :func:`store_targets`.
        tasks: which earlier tasks to regularize (default all ``0..K-1``).
        delta: optional look-ahead ``{name: Delta phi}`` for parameters of
            ``model.hypernetwork.outputs`` (from :func:`adam_lookahead`): ``H`` is then
            evaluated at ``phi + Delta phi`` (Delta phi is treated as a constant).

    Returns:
        A scalar (0 when there is nothing to regularize). Multiply by beta.
    """
    device = targets.device
    ids = torch.arange(targets.shape[0], device=device) if tasks is None else torch.as_tensor(tasks, device=device, dtype=torch.long)
    if ids.numel() == 0:
        return targets.new_zeros(())
    if targets.dim() != 2 or targets.shape[1] != model.spec.numel:  # type: ignore[attr-defined]
        raise ShapeError(f"output_regularizer: targets must be (K, {model.spec.numel}) (got {tuple(targets.shape)})")  # type: ignore[attr-defined]
    if delta is None:
        theta = model.weights(task=ids)  # type: ignore[operator]
    else:
        outputs = model.hypernetwork.outputs  # type: ignore[attr-defined]
        params = {n: (p + delta[n].detach() if n in delta else p) for n, p in outputs.named_parameters()}
        z = model.condition(task=ids).z  # type: ignore[operator]  # (n, d)
        theta = torch.func.functional_call(outputs, params, (z,))
    # all earlier tasks in order (the usual case): the stored rows as they are, no gathered copy
    every = tasks is None or (ids.numel() == targets.shape[0] and bool((ids == torch.arange(ids.numel(), device=device)).all()))
    wanted = targets if every else targets[ids]
    # tensor by tensor against column views of the targets: no (n, P) concatenation, and
    # mse_loss fuses difference, square and sum (and their backward) in one pass each
    total, start = targets.new_zeros(()), 0
    for name in _names(model):
        w = theta[name].reshape(ids.shape[0], -1)
        total = total + F.mse_loss(w, wanted[:, start : start + w.shape[1]], reduction="sum")
        start += w.shape[1]
    return total / ids.shape[0]


@torch.no_grad()
def adam_lookahead(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The change ``Delta phi`` that ``optimizer.step()`` would make now to the hypernetwork's
    output part (body, heads, chunk embeddings), from the current ``.grad``, without changing
    anything (the released code's ``calc_delta_theta``).

    Args:
        model: a HyperDNN; only ``model.hypernetwork.outputs`` parameters are looked at.
        optimizer: a ``torch.optim.Adam`` (no weight decay, amsgrad or maximize) holding them.

    Returns:
        ``{name in model.hypernetwork.outputs: Delta phi}`` for parameters that have a gradient.
    """
    if type(optimizer) is not torch.optim.Adam:
        raise ConfigError(f"adam_lookahead: the look-ahead is implemented for torch.optim.Adam (got {type(optimizer).__name__})")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out: dict[str, Tensor] = {}
    for name, p in model.hypernetwork.outputs.named_parameters():  # type: ignore[attr-defined]
        if p.grad is None or id(p) not in group_of:
            continue
        g = group_of[id(p)]
        if g.get("weight_decay", 0) or g.get("amsgrad") or g.get("maximize"):
            raise ConfigError("adam_lookahead: weight_decay, amsgrad and maximize are not supported")
        (b1, b2), lr, eps = g["betas"], g["lr"], g["eps"]
        st = optimizer.state.get(p, {})
        step = float(st["step"]) + 1 if "step" in st else 1.0
        m = st["exp_avg"] * b1 + p.grad * (1 - b1) if "exp_avg" in st else p.grad * (1 - b1)
        v = st["exp_avg_sq"] * b2 + p.grad * p.grad * (1 - b2) if "exp_avg_sq" in st else p.grad * p.grad * (1 - b2)
        denom = v.sqrt() / math.sqrt(1 - b2**step) + eps
        out[name] = -(lr / (1 - b1**step)) * m / denom
    return out


@torch.no_grad()
def xavier_init_(model: nn.Module) -> None:
    """Re-initialise the hypernetwork's body and heads as the released code does:
    Xavier-uniform weight matrices, zero biases (``mnist/train_utils.py``,
    ``generate_classifier``, of chrhenning/hypercl).

    Task and chunk embeddings keep their N(0, 1) draws (``std_normal_temb`` and
    ``std_normal_emb`` default to 1 there). This replaces the core's default, which
    scales the head so that the generated weights start at the target's own init
    statistics and keeps PyTorch's default init (random biases) in the body.

    Args:
        model: a HyperDNN; every ``nn.Linear`` in ``model.hypernetwork.outputs`` is reset.
    """
    outputs = getattr(getattr(model, "hypernetwork", None), "outputs", None)
    if outputs is None:
        raise ConfigError(f"xavier_init_: the model must be a HyperDNN (got {type(model).__name__})")
    for m in outputs.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


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


def freeze_other_task_embeddings(model: nn.Module, task: int) -> None:
    """Zero the gradient of every task embedding but ``task`` (earlier embeddings stay as learned).

    Call between ``backward()`` and ``optimizer.step()``; with an optimizer whose
    state is reset at each task start (as in the paper), the other rows then do not move.
    """
    grad = task_embedding_table(model).weight.grad
    if grad is not None:
        keep = grad[task].clone()
        grad.zero_()
        grad[task] = keep


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
