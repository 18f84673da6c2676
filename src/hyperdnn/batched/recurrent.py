"""Batched LSTM and GRU: one weight set per group, a loop over time only.

``torch.func.vmap`` has no batching rule for ``aten::lstm``/``aten::gru``, so
these modules get their own functional recurrence. Input projections for all
steps are one batched matmul; each step is one more batched matmul plus the
gate arithmetic, in PyTorch's gate order (LSTM: i, f, g, o; GRU: r, z, n).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import ConfigError, ShapeError


def _weights(mod: nn.RNNBase, w: dict, layer: int, suffix: str):
    out = []
    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        name = f"{kind}_l{layer}{suffix}"
        if kind.startswith("bias") and not mod.bias:
            out.append(None)
        else:
            out.append(w[name] if name in w else getattr(mod, name))
    return out


def _bias(b: Tensor | None, groups: int) -> Tensor | int:
    if b is None:
        return 0
    return b.unsqueeze(1) if b.dim() == 2 else b  # (G, 1, H*) or (H*,)


def _run_direction(mode: str, x: Tensor, h: Tensor, c: Tensor | None, ws, reverse: bool, groups: int):
    """x: (T, G, n, I); h, c: (G, n, H). Returns outputs (T, G, n, H) and final h, c."""
    w_ih, w_hh, b_ih, b_hh = ws
    steps, _, n, inp = x.shape
    xproj = torch.matmul(x.permute(1, 0, 2, 3).reshape(groups, steps * n, inp), w_ih.transpose(-1, -2))
    xproj = (xproj + _bias(b_ih, groups)).reshape(groups, steps, n, -1)  # (G, T, n, gates*H)
    w_hh_t = w_hh.transpose(-1, -2)
    b_hh = _bias(b_hh, groups)
    outs = [None] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        hproj = torch.matmul(h, w_hh_t) + b_hh  # (G, n, gates*H)
        if mode in ("RNN_TANH", "RNN_RELU"):
            pre = xproj[:, t] + hproj
            h = torch.tanh(pre) if mode == "RNN_TANH" else torch.relu(pre)
        elif mode == "LSTM":
            i, f, g, o = (xproj[:, t] + hproj).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            xr, xz, xn = xproj[:, t].chunk(3, dim=-1)
            hr, hz, hn = hproj.chunk(3, dim=-1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            cand = torch.tanh(xn + r * hn)
            h = (1 - z) * cand + z * h
        outs[t] = h
    return torch.stack(outs, 0), h, c


def recurrent(mod: nn.RNNBase, w, groups: int, batch_dim: int, x, hx=None):
    """nn.LSTM / nn.GRU forward with per-group weights; same inputs and outputs as the module."""
    name = type(mod).__name__
    if isinstance(x, PackedSequence):
        raise ConfigError(f"{name}: batched weights do not support PackedSequence inputs; pad the batch instead")
    if mod.mode not in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"):
        raise ConfigError(f"{name}: batched weights support RNN, LSTM and GRU (got mode {mod.mode})")
    if getattr(mod, "proj_size", 0):
        raise ConfigError(f"{name}: batched weights do not support proj_size > 0 (got {mod.proj_size})")
    if x.dim() != 3:
        raise ShapeError(f"{name}: batched weights need a batched 3-d input (got shape {tuple(x.shape)})")
    xs = x.transpose(0, 1) if mod.batch_first else x  # (T, B, I)
    steps, rows, _ = xs.shape
    if rows % groups:
        raise ShapeError(f"{name}: batch of {rows} is not a multiple of the {groups} weight sets")
    n = rows // groups
    dirs = 2 if mod.bidirectional else 1
    hsize = mod.hidden_size
    if mod.mode == "LSTM":
        h0, c0 = hx if hx is not None else (None, None)
    else:
        h0, c0 = hx, None
    zeros = xs.new_zeros(mod.num_layers * dirs, rows, hsize)
    h0 = zeros if h0 is None else h0
    if mod.mode == "LSTM" and c0 is None:
        c0 = zeros
    for t, what in ((h0, "h0"), (c0, "c0")):
        if t is not None and tuple(t.shape) != (mod.num_layers * dirs, rows, hsize):
            raise ShapeError(
                f"{name}: {what} has shape {tuple(t.shape)}; expected {(mod.num_layers * dirs, rows, hsize)}"
            )
    layer_in = xs.reshape(steps, groups, n, -1)
    h_n, c_n = [], []
    for layer in range(mod.num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            h = h0[k].reshape(groups, n, hsize)
            c = c0[k].reshape(groups, n, hsize) if c0 is not None else None
            ws = _weights(mod, w, layer, "_reverse" if d else "")
            out, h, c = _run_direction(mod.mode, layer_in, h, c, ws, bool(d), groups)
            outs.append(out)
            h_n.append(h.reshape(rows, hsize))
            if c is not None:
                c_n.append(c.reshape(rows, hsize))
        layer_in = torch.cat(outs, -1) if dirs == 2 else outs[0]  # (T, G, n, dirs*H)
        if mod.dropout and mod.training and layer < mod.num_layers - 1:
            layer_in = F.dropout(layer_in, mod.dropout, True)
    output = layer_in.reshape(steps, rows, dirs * hsize)
    if mod.batch_first:
        output = output.transpose(0, 1)
    h_n = torch.stack(h_n, 0)
    if mod.mode == "LSTM":
        return output, (h_n, torch.stack(c_n, 0))
    return output, h_n
