"""Batched rules for Linear, Conv1d/2d/3d and Embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ._util import get, groups_back, groups_first


def linear(mod: nn.Linear, w, groups: int, batch_dim: int, x: Tensor) -> Tensor:
    """``y = x W^T + b`` with ``W: (G, out, in)``, rows of ``x`` grouped by weight set.

    ``W`` may also be low-rank factors ``(A, B)`` with ``W = A B^T``; then
    ``y = (x B) A^T`` costs ``r (in + out)`` per row instead of ``in * out``.
    """
    weight, _ = get(mod, w, "weight")
    bias, bias_b = get(mod, w, "bias")
    xg, moved = groups_first(x, groups, batch_dim)  # (G, n*, in)
    if isinstance(weight, tuple):
        a, b = weight  # (G, out, r), (G, in, r)
        y = torch.matmul(torch.matmul(xg, b), a.transpose(-1, -2))  # (G, n*, out)
        if bias is not None:
            y = y + (bias.unsqueeze(1) if bias_b else bias)
        return groups_back(y, moved, y.shape[-1], batch_dim)
    if weight.dim() == 3:
        # (W x^T)^T rather than x W^T: the weight's gradient then comes out in W's own
        # layout, so gathering it into the flat theta gradient needs no transposing copy.
        y = torch.matmul(weight, xg.transpose(-1, -2)).transpose(-1, -2)  # (G, n*, out)
    else:
        y = torch.matmul(xg, weight.t())
    if bias is not None:
        y = y + (bias.unsqueeze(1) if bias_b else bias)
    return groups_back(y, moved, y.shape[-1], batch_dim)


def conv(mod: nn.modules.conv._ConvNd, w, groups: int, batch_dim: int, x: Tensor) -> Tensor:
    """Convolution with one kernel per group, as a single grouped convolution."""
    if batch_dim != 0:
        raise ShapeError(f"{type(mod).__name__}: batched weights need the batch in dim 0 (batch_dim={batch_dim})")
    nd = x.dim() - 2
    if nd != len(mod.kernel_size):
        raise ShapeError(
            f"{type(mod).__name__}: batched weights need a batched input of {len(mod.kernel_size) + 2} dims "
            f"(got shape {tuple(x.shape)})"
        )
    weight, w_b = get(mod, w, "weight")
    bias, b_b = get(mod, w, "bias")
    rows, c_in = x.shape[0], x.shape[1]
    n = rows // groups
    spatial = x.shape[2:]
    if not w_b:
        weight = weight.unsqueeze(0).expand(groups, *weight.shape)
    out_c = weight.shape[1]
    # (G*n, C, *S) -> (n, G*C, *S): each group's kernels see only its own rows.
    xg = x.reshape(groups, n, c_in, *spatial).transpose(0, 1).reshape(n, groups * c_in, *spatial)
    kernel = weight.reshape(groups * out_c, *weight.shape[2:])
    if bias is not None:
        bias = bias.reshape(-1) if b_b else bias.repeat(groups)
    if mod.padding_mode != "zeros":
        xg = F.pad(xg, mod._reversed_padding_repeated_twice, mode=mod.padding_mode)
        padding = 0
    else:
        padding = mod.padding
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    y = fn(xg, kernel, bias, mod.stride, padding, mod.dilation, groups * mod.groups)  # (n, G*out, *S')
    return y.reshape(n, groups, out_c, *y.shape[2:]).transpose(0, 1).reshape(rows, out_c, *y.shape[2:])


def embedding(mod: nn.Embedding, w, groups: int, batch_dim: int, idx: Tensor) -> Tensor:
    """Lookup in one table per group: ``out[g, ...] = W[g, idx[g, ...]]``."""
    if mod.max_norm is not None or mod.sparse or mod.scale_grad_by_freq:
        raise ConfigError(
            "Embedding: batched weights do not support max_norm, sparse or scale_grad_by_freq "
            f"(got max_norm={mod.max_norm}, sparse={mod.sparse}, scale_grad_by_freq={mod.scale_grad_by_freq})"
        )
    table = w["weight"]  # (G, V, D)
    vocab, dim = table.shape[1], table.shape[2]
    im = idx.movedim(batch_dim, 0) if batch_dim else idx
    moved = im.shape
    offsets = torch.arange(groups, device=idx.device).view(groups, 1) * vocab
    flat = im.reshape(groups, -1) + offsets  # (G, n*)
    out = F.embedding(flat, table.reshape(groups * vocab, dim))  # (G, n*, D)
    if mod.padding_idx is not None:
        pad = (im.reshape(groups, -1) == mod.padding_idx).unsqueeze(-1)
        out = torch.where(pad, out.detach(), out)  # no gradient into the padding row, as in nn.Embedding
    out = out.reshape(*moved, dim)
    return out.movedim(0, batch_dim) if batch_dim else out
