"""Which batched rule runs which module type.

``RULES`` covers modules that hold generated tensors directly; ``SUBTREE_RULES``
covers modules whose rule also handles their children's tensors
(``nn.MultiheadAttention`` reads ``out_proj.weight`` itself).
"""

from __future__ import annotations

from torch import nn

from .attention import multihead_attention
from .linear_conv import conv, embedding, linear
from .norm import batch_norm, layer_norm
from .recurrent import recurrent

RULES = {
    nn.Linear: linear,
    nn.Conv1d: conv,
    nn.Conv2d: conv,
    nn.Conv3d: conv,
    nn.BatchNorm1d: batch_norm,
    nn.BatchNorm2d: batch_norm,
    nn.BatchNorm3d: batch_norm,
    nn.LayerNorm: layer_norm,
    nn.Embedding: embedding,
    nn.LSTM: recurrent,
    nn.GRU: recurrent,
}

SUBTREE_RULES = {nn.MultiheadAttention: multihead_attention}
