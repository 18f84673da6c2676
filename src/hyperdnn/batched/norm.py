"""Batched rules for BatchNorm and LayerNorm with generated affine parameters.

Normalisation itself is the module's own (batch statistics over the whole
batch in training mode, running statistics in eval mode, running stats
updated as in plain PyTorch); only the affine scale and shift differ per group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._util import get


def batch_norm(mod: nn.modules.batchnorm._BatchNorm, w, groups: int, batch_dim: int, x: Tensor,
               per_group: bool = False) -> Tensor:
    """BatchNorm whose weight/bias are ``(G, C)``; statistics as in ``nn.BatchNorm``.

    With ``per_group`` (noise ensembles) each group's rows are normalised with
    their own batch statistics in training mode, as ``G`` separate models would
    be, and the running statistics move by the mean of the groups' updates.
    """
    mod._check_input_dim(x)
    if per_group and (mod.training or mod.running_mean is None):
        return _per_group(mod, w, groups, x)
    # Same bookkeeping as _BatchNorm.forward, so running stats update identically.
    factor = 0.0 if mod.momentum is None else mod.momentum
    if mod.training and mod.track_running_stats and mod.num_batches_tracked is not None:
        mod.num_batches_tracked.add_(1)
        factor = 1.0 / float(mod.num_batches_tracked) if mod.momentum is None else mod.momentum
    use_batch = mod.training or (mod.running_mean is None and mod.running_var is None)
    keep = not mod.training or mod.track_running_stats
    y = F.batch_norm(
        x,
        mod.running_mean if keep else None,
        mod.running_var if keep else None,
        None,
        None,
        use_batch,
        factor,
        mod.eps,
    )
    return _affine(mod, w, groups, y.reshape(groups, x.shape[0] // groups, *x.shape[1:])).reshape(x.shape)


def _affine(mod, w, groups: int, yg: Tensor) -> Tensor:
    """Scale and shift of normalised ``(G, n, C, *S)`` rows, per group where generated."""
    c, trail = yg.shape[2], [1] * (yg.dim() - 3)
    weight, w_b = get(mod, w, "weight")
    bias, b_b = get(mod, w, "bias")
    if weight is not None:
        yg = yg * (weight.reshape(groups, 1, c, *trail) if w_b else weight.reshape(c, *trail))
    if bias is not None:
        yg = yg + (bias.reshape(groups, 1, c, *trail) if b_b else bias.reshape(c, *trail))
    return yg


def _per_group(mod, w, groups: int, x: Tensor) -> Tensor:
    rows, c = x.shape[0], x.shape[1]
    rest = x.shape[2:]
    n = rows // groups
    xg = x.reshape(groups, n, c, *rest).transpose(0, 1).reshape(n, groups * c, *rest)  # groups as channels
    factor = 0.0 if mod.momentum is None else mod.momentum
    track = mod.training and mod.track_running_stats and mod.running_mean is not None
    if track and mod.num_batches_tracked is not None:
        mod.num_batches_tracked.add_(1)
        factor = 1.0 / float(mod.num_batches_tracked) if mod.momentum is None else mod.momentum
    rm = mod.running_mean.repeat(groups) if track else None
    rv = mod.running_var.repeat(groups) if track else None
    y = F.batch_norm(xg, rm, rv, None, None, True, factor, mod.eps)
    if track:
        with torch.no_grad():
            mod.running_mean.copy_(rm.view(groups, c).mean(0))
            mod.running_var.copy_(rv.view(groups, c).mean(0))
    y = y.reshape(n, groups, c, *rest).transpose(0, 1)  # (G, n, C, *S)
    return _affine(mod, w, groups, y).reshape(x.shape)


def layer_norm(mod: nn.LayerNorm, w, groups: int, batch_dim: int, x: Tensor) -> Tensor:
    """LayerNorm whose elementwise affine parameters are ``(G, *normalized_shape)``."""
    shape = tuple(mod.normalized_shape)
    y = F.layer_norm(x, shape, None, None, mod.eps)
    ym = y.movedim(batch_dim, 0) if batch_dim else y
    moved = ym.shape
    yg = ym.reshape(groups, -1, *shape)
    weight, w_b = get(mod, w, "weight")
    bias, b_b = get(mod, w, "bias")
    if weight is not None:
        yg = yg * (weight.unsqueeze(1) if w_b else weight)
    if bias is not None:
        yg = yg + (bias.unsqueeze(1) if b_b else bias)
    yg = yg.reshape(moved)
    return yg.movedim(0, batch_dim) if batch_dim else yg
