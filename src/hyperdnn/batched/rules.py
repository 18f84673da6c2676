"""Which batched rule runs which module type, and where each looks for the batch.

``RULES`` covers modules that hold generated tensors directly; ``SUBTREE_RULES``
covers modules whose rule also handles their children's tensors
(``nn.MultiheadAttention`` reads ``out_proj.weight`` itself).
``BATCH_POSITION`` gives the dimension of a module's first input that holds the
batch, when it is not the HyperDNN's ``batch_dim``.
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
    nn.RNN: recurrent,
    nn.LSTM: recurrent,
    nn.GRU: recurrent,
}

SUBTREE_RULES = {nn.MultiheadAttention: multihead_attention}


def _first(mod, batch_dim):
    return 0


def _batch_first(mod, batch_dim):
    return 0 if mod.batch_first else 1


BATCH_POSITION = {
    nn.Conv1d: _first, nn.Conv2d: _first, nn.Conv3d: _first,
    nn.BatchNorm1d: _first, nn.BatchNorm2d: _first, nn.BatchNorm3d: _first,
    nn.RNN: _batch_first, nn.LSTM: _batch_first, nn.GRU: _batch_first,
    nn.MultiheadAttention: _batch_first,
}

#: Rules that take ``Factored`` weights in parts; every other rule gets them formed.
FACTORED_RULES = {linear, conv, embedding}
