"""Batched rules for Linear, Conv1d/2d/3d and Embedding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..factored import Factored, dense_for
from ._util import get, groups_back, groups_first


def linear(mod: nn.Linear, w, groups: int, batch_dim: int, x: Tensor) -> Tensor:
    """``y = x W^T + b`` with ``W: (G, out, in)``, rows of ``x`` grouped by weight set.

    ``W`` may also be ``Factored`` (``W = W0 + s A B^T``); then
    ``y = x W0^T + s (x B) A^T`` costs ``r (in + out)`` per row for the low-rank
    part and never forms a per-group ``(out, in)`` matrix.
    """
    weight, _ = get(mod, w, "weight")
    bias, bias_b = get(mod, w, "bias")
    xg, moved = groups_first(x, groups, batch_dim)  # (G, n*, in)
    if isinstance(weight, Factored):
        y, bias_done = _factored_linear(weight, xg, None if bias_b else bias, mod.training)
        if bias_done:
            bias = None
    else:
        y = _dense_linear(weight, xg)
    if bias is not None:
        y = y + (bias.unsqueeze(1) if bias_b else bias)
    return groups_back(y, moved, y.shape[-1], batch_dim)


def _factored_linear(weight: Factored, xg: Tensor, shared_bias: Tensor | None,
                     training: bool = False) -> tuple[Tensor, bool]:
    """``xg W0^T (+ b) + s (xg B) A^T`` for ``xg (G, n*, in)``; returns ``(y (G, n*, out), bias_added)``.

    With a shared base and per-group factors (a LoRA per sample) the whole layer is
    three kernels: one ``addmm`` for ``x W0^T + b`` over all rows, one ``bmm`` for
    ``x B`` and one in-place ``baddbmm_`` adding ``s (x B) A^T`` into it, so no separate
    scaling or addition passes over the ``(G, n*, out)`` output.
    """
    low = torch.matmul(_branch_input(weight, xg, training), weight.b)  # (G, n*, r)
    a_t = weight.a.transpose(-1, -2)  # (G, r, out) or (r, out)
    if weight.base is not None and not weight.base_batched and a_t.dim() == 3 and low.dim() == 3:
        base_out = F.linear(xg, weight.base, shared_bias)  # (G, n*, out), bias fused
        # In place: addmm's backward does not read its output, and a fresh copy would be one more pass.
        return base_out.baddbmm_(low, a_t, alpha=weight.scale), shared_bias is not None
    y = torch.matmul(low, a_t)  # (G, n*, out)
    if weight.scale != 1.0:
        y = weight.scale * y
    if weight.base is not None:
        y = _dense_linear(weight.base, xg) + y
    return y, False


def _branch_input(weight: Factored, x: Tensor, training: bool) -> Tensor:
    """The low-rank branch's input: ``x`` with the factored weight's dropout in training (PEFT's
    ``lora_dropout``: the base ``W0 x`` always sees the whole input)."""
    return F.dropout(x, weight.dropout, training=True) if training and weight.dropout > 0 else x


def _dense_linear(weight: Tensor, xg: Tensor) -> Tensor:
    """``xg (G, n*, in)`` times a weight ``(G, out, in)`` per group or ``(out, in)`` shared."""
    if weight.dim() == 3:
        # (W x^T)^T rather than x W^T: the weight's gradient then comes out in W's own
        # layout, so gathering it into the flat theta gradient needs no transposing copy.
        return torch.matmul(weight, xg.transpose(-1, -2)).transpose(-1, -2)  # (G, n*, out)
    return torch.matmul(xg, weight.t())


def conv(mod: nn.modules.conv._ConvNd, w, groups: int, batch_dim: int, x: Tensor) -> Tensor:
    """Convolution with one kernel per group, as a single grouped convolution.

    A ``Factored`` kernel (``W = W0 + s A B^T`` over ``(out, in * k)``) runs as a
    convolution to ``r`` channels with ``B`` then a per-group ``1 x 1`` mix with
    ``A``, plus the shared ``W0`` as one ordinary convolution: no per-group kernel
    is formed. (With ``mod.groups > 1`` the kernel is formed first.)
    """
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
    if mod.padding_mode != "zeros":
        x = F.pad(x, mod._reversed_padding_repeated_twice, mode=mod.padding_mode)
        padding: Any = 0
    else:
        padding = mod.padding
    if isinstance(weight, Factored) and mod.groups != 1:
        weight = dense_for(mod, weight)
    if not isinstance(weight, Factored):
        if not w_b:
            weight = weight.unsqueeze(0).expand(groups, *weight.shape)
        if bias is not None:
            bias = bias.reshape(-1) if b_b else bias.repeat(groups)
        return _grouped_conv(mod, x, weight, groups, padding, bias)
    r = weight.a.shape[-1]
    b_kernel = weight.b.transpose(-1, -2).reshape(*weight.b.shape[:-2], r, *weight.shape[1:])  # (G, r, in, *k)
    if b_kernel.dim() == nd + 2:
        b_kernel = b_kernel.expand(groups, *b_kernel.shape)
    low = _grouped_conv(mod, _branch_input(weight, x, mod.training), b_kernel, groups, padding)  # (G*n, r, *S')
    lg = low.reshape(groups, -1, r, *low.shape[2:])  # (G, n, r, *S')
    a = weight.a if weight.a.dim() == 3 else weight.a.expand(groups, *weight.a.shape)
    y = torch.einsum("gor,gnr...->gno...", a, lg)  # (G, n, out, *S')
    if weight.scale != 1.0:
        y = weight.scale * y
    if bias is not None:
        y = y + (bias.reshape(groups, 1, -1, *[1] * nd) if b_b else bias.reshape(-1, *[1] * nd))
    y = y.reshape(low.shape[0], -1, *low.shape[2:])  # (G*n, out, *S')
    if weight.base is None:
        return y
    if weight.base_batched:
        return _grouped_conv(mod, x, weight.base, groups, padding) + y
    return _conv_fn(nd)(x, weight.base, None, mod.stride, padding, mod.dilation, mod.groups) + y


def _conv_fn(nd: int):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]


# Rows per weight set from which a CPU runs one dense convolution per weight set rather
# than one grouped convolution over all of them (see ``loop_over_groups``).
LOOP_MIN_ROWS = 16


def loop_over_groups(x: Tensor, groups: int) -> bool:
    """Whether :func:`_grouped_conv` runs one dense convolution per weight set (a Python loop
    over the ``G`` sets) instead of one grouped convolution.

    The rule: on a CPU, loop when every weight set has at least ``LOOP_MIN_ROWS`` (16) rows
    of input, i.e. an ensemble whose members each see a batch; otherwise (per-sample
    weights, ``n = 1``; or any CUDA tensor) one grouped convolution. Measured on one CPU
    thread (``benchmarks/ensemble_speed.py``): PyTorch's CPU kernels for grouped
    convolutions are 1.2x to 2.6x slower than ``G`` dense convolutions at 16 to 512 rows
    per set, and 2x to 6x faster at 1 to 4 rows, where ``G`` calls cost more than the work;
    the crossover is between 8 and 16 rows. On CUDA one grouped launch is kept: on an
    H100 (PyTorch 2.11, both convolutions of the benchmark's CNN, 4 to 512 sets of 1 to
    512 rows) the grouped convolution was never more than 1.14x slower than the loop and
    up to 100x faster (many sets of few rows).
    """
    return x.device.type == "cpu" and groups > 1 and x.shape[0] // groups >= LOOP_MIN_ROWS


def _grouped_conv(mod, x: Tensor, kernel: Tensor, groups: int, padding: Any, bias: Tensor | None = None) -> Tensor:
    """``x (G*n, C, *S)`` convolved group by group with ``kernel (G, out, C / mod.groups, *k)``
    (``bias (G * out,)``): one convolution with ``G * mod.groups`` groups, or one dense
    convolution per group where :func:`loop_over_groups` says that is faster."""
    nd = x.dim() - 2
    rows, c_in, spatial = x.shape[0], x.shape[1], x.shape[2:]
    n = rows // groups
    out_c = kernel.shape[1]
    if loop_over_groups(x, groups):
        conv_fn = _conv_fn(nd)
        biases = bias.view(groups, out_c) if bias is not None else [None] * groups
        return torch.cat([conv_fn(xg, kg, bg, mod.stride, padding, mod.dilation, mod.groups)
                          for xg, kg, bg in zip(x.split(n), kernel.unbind(0), biases)])
    # (G*n, C, *S) -> (n, G*C, *S): each group's kernels see only its own rows.
    xg = x.reshape(groups, n, c_in, *spatial).transpose(0, 1).reshape(n, groups * c_in, *spatial)
    y = _conv_fn(nd)(xg, kernel.reshape(groups * out_c, *kernel.shape[2:]), bias, mod.stride, padding,
                     mod.dilation, groups * mod.groups)  # (n, G*out, *S')
    return y.reshape(n, groups, out_c, *y.shape[2:]).transpose(0, 1).reshape(rows, out_c, *y.shape[2:])


def embedding(mod: nn.Embedding, w, groups: int, batch_dim: int, idx: Tensor) -> Tensor:
    """Lookup in one table per group: ``out[g, ...] = W[g, idx[g, ...]]``."""
    if mod.max_norm is not None or mod.sparse or mod.scale_grad_by_freq:
        raise ConfigError(
            "Embedding: batched weights do not support max_norm, sparse or scale_grad_by_freq "
            f"(got max_norm={mod.max_norm}, sparse={mod.sparse}, scale_grad_by_freq={mod.scale_grad_by_freq})"
        )
    table = w["weight"]  # (G, V, D), or Factored
    if isinstance(table, Factored) and table.dropout > 0 and mod.training:
        dense_for(mod, table)  # refuses: a lookup has no input to drop
    im = idx.movedim(batch_dim, 0) if batch_dim else idx
    moved = im.shape
    flat_idx = im.reshape(groups, -1)  # (G, n*)
    if isinstance(table, Factored):
        vocab, dim = table.shape
        out = torch.matmul(_lookup(table.a, flat_idx, groups, vocab), table.b.transpose(-1, -2))  # (G, n*, D)
        if table.scale != 1.0:
            out = table.scale * out
        if table.base is not None:
            base = _lookup(table.base, flat_idx, groups, vocab) if table.base_batched else F.embedding(flat_idx, table.base)
            out = base + out
    else:
        vocab, dim = table.shape[1], table.shape[2]
        out = _lookup(table, flat_idx, groups, vocab)  # (G, n*, D)
    if mod.padding_idx is not None:
        pad = (flat_idx == mod.padding_idx).unsqueeze(-1)
        out = torch.where(pad, out.detach(), out)  # no gradient into the padding row, as in nn.Embedding
    out = out.reshape(*moved, dim)
    return out.movedim(0, batch_dim) if batch_dim else out


def _lookup(table: Tensor, flat_idx: Tensor, groups: int, vocab: int) -> Tensor:
    """Rows ``table[g, flat_idx[g]]`` of one table per group ``(G, V, D)`` (or ``(V, D)`` shared)."""
    if table.dim() == 2:
        return F.embedding(flat_idx, table)
    offsets = torch.arange(groups, device=flat_idx.device).view(groups, 1) * vocab
    return F.embedding(flat_idx + offsets, table.reshape(groups * vocab, table.shape[-1]))
