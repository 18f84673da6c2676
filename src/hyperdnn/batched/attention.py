"""Batched nn.MultiheadAttention: projections per group, attention per row.

Written out in plain tensor ops because the module's own fast path (taken
in eval mode) has no backward under ``vmap``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError


def _proj(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> Tensor:
    """x: (B, L, E) with B = G*n -> (B, L, E_out) with weight (G, E_out, E) or (E_out, E)."""
    rows, length, e = x.shape
    y = torch.matmul(x.reshape(groups, -1, e), weight.transpose(-1, -2))
    if bias is not None:
        y = y + (bias.unsqueeze(1) if bias.dim() == 2 else bias)
    return y.reshape(rows, length, -1)


def multihead_attention(
    mod: nn.MultiheadAttention,
    w,
    groups: int,
    batch_dim: int,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    key_padding_mask: Tensor | None = None,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
):
    """Same inputs and outputs as ``nn.MultiheadAttention.forward``, weights per group."""
    if mod.bias_k is not None or mod.bias_v is not None:
        raise ConfigError("MultiheadAttention: batched weights do not support add_bias_kv=True")
    if mod.add_zero_attn:
        raise ConfigError("MultiheadAttention: batched weights do not support add_zero_attn=True")
    if is_causal and attn_mask is None:
        raise ConfigError("MultiheadAttention: is_causal=True needs attn_mask (as in nn.MultiheadAttention)")
    if query.dim() != 3:
        raise ShapeError(f"MultiheadAttention: batched weights need a batched 3-d query (got {tuple(query.shape)})")

    def param(name):
        return w[name] if name in w else getattr(mod, name) if "." not in name else mod.get_parameter(name)

    def sub(name):
        full = {"out_proj.weight": mod.out_proj.weight, "out_proj.bias": mod.out_proj.bias}
        return w[name] if name in w else full[name]

    if not mod.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))  # (B, L, E)
    rows, lq, e = query.shape
    ls = key.shape[1]
    heads, hd = mod.num_heads, mod.head_dim
    if mod._qkv_same_embed_dim:
        in_w = w["in_proj_weight"] if "in_proj_weight" in w else mod.in_proj_weight
        wq, wk, wv = in_w.chunk(3, dim=-2)
    else:
        wq, wk, wv = (w.get(n, getattr(mod, n)) for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"))
    in_b = w.get("in_proj_bias", mod.in_proj_bias)
    bq, bk, bv = in_b.chunk(3, dim=-1) if in_b is not None else (None, None, None)
    q = _proj(query, wq, bq, groups).reshape(rows, lq, heads, hd).transpose(1, 2)  # (B, h, Lq, hd)
    k = _proj(key, wk, bk, groups).reshape(rows, ls, heads, hd).transpose(1, 2)
    v = _proj(value, wv, bv, groups).reshape(rows, ls, heads, hd).transpose(1, 2)

    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd)  # (B, h, Lq, Ls)
    if attn_mask is not None:
        if attn_mask.dim() == 3:
            attn_mask = attn_mask.reshape(rows, heads, lq, ls)
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    if key_padding_mask is not None:
        kpm = key_padding_mask.reshape(rows, 1, 1, ls)
        scores = scores.masked_fill(kpm, float("-inf")) if kpm.dtype == torch.bool else scores + kpm
    attn = torch.softmax(scores, dim=-1)
    dropped = F.dropout(attn, mod.dropout, mod.training) if mod.dropout > 0 else attn
    out = torch.matmul(dropped, v).transpose(1, 2).reshape(rows, lq, e)
    out = _proj(out, sub("out_proj.weight"), sub("out_proj.bias"), groups)
    if not mod.batch_first:
        out = out.transpose(0, 1)
    if not need_weights:
        return out, None
    return out, attn.mean(dim=1) if average_attn_weights else attn
