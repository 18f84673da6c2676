"""Architecture axis: the hypernetwork's body.

A body maps a sequence of *tokens* (one per component the output strategy
generates: one token for generate-once, one per chunk, tile or parameter
tensor otherwise) to features: ``(..., T, in) -> (..., T, out)``. An MLP
treats tokens independently; an RNN walks them in order, so later components
depend on earlier ones; attention lets every token see every other.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from .config import BodyConfig, checked, choice, number, optional, positive_int, sizes
from .errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}


class BodyModule(nn.Module):
    """Built body: ``(..., T, in_features) -> (..., T, out_features)``."""

    in_features: int
    out_features: int
    mixes_tokens: bool = False


@dataclass
class MLP(BodyConfig):
    """A multilayer perceptron applied to each token.

    Args:
        hidden: widths of the hidden layers, a tuple (``(64,)`` for one layer; a bare
            int is refused); ``()`` makes the body the identity (the output heads
            then act on the tokens directly).
        activation: nonlinearity after each hidden layer ('relu', 'elu', 'gelu',
            'tanh', 'sigmoid', 'silu' or None for a linear body).
        dropout: dropout after each hidden layer.
    """

    hidden: tuple[int, ...] = checked(sizes(example=(64,)), default=(100, 100), counts_tensors=True)
    activation: str | None = checked(choice(None, *ACTIVATIONS), default="relu")
    dropout: float = checked(number(0.0, 1.0, high_open=True), default=0.0)
    mixes_tokens: ClassVar[bool] = False

    def build(self, in_features: int) -> BodyModule:
        return MLPBody(in_features, self.hidden, self.activation, self.dropout)


class MLPBody(BodyModule):
    """Token-wise MLP."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], activation: str | None, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            with warnings.catch_warnings():
                # A zero-width input (no condition) is legal: the layer then learns a constant.
                warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
                layers.append(nn.Linear(width, h))
            if activation is not None:
                layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.in_features, self.out_features = in_features, width

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)


def _over_sequences(tokens: Tensor, fn, out_features: int) -> Tensor:
    """Applies a sequence model ``fn: (N, T, d) -> (N, T, out)`` to ``(..., T, d)`` tokens.

    A zero-width token (no condition, no embedding) is fed as a single zero feature.
    """
    lead = tokens.shape[:-2]
    t, d = tokens.shape[-2:]
    flat = tokens.reshape(-1, t, d)
    if d == 0:
        flat = flat.new_zeros(flat.shape[0], t, 1)
    return fn(flat).reshape(*lead, t, out_features)


@dataclass
class RNN(BodyConfig):
    """A recurrent body that walks the components in order (GRU or LSTM cell).

    Args:
        hidden: width of the recurrent state (the features given to the heads).
        cell: 'gru' or 'lstm'.
        layers: number of stacked recurrent layers.
    """

    hidden: int = checked(positive_int, default=64)
    cell: str = checked(choice("gru", "lstm"), default="gru")
    layers: int = checked(positive_int, default=1, counts_tensors=True)
    mixes_tokens: ClassVar[bool] = True

    def build(self, in_features: int) -> BodyModule:
        return RNNBody(in_features, self.hidden, self.cell, self.layers)


class RNNBody(BodyModule):
    """Runs a GRU/LSTM over the token axis."""

    mixes_tokens = True

    def __init__(self, in_features: int, hidden: int, cell: str, layers: int) -> None:
        super().__init__()
        cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = cls(max(in_features, 1), hidden, num_layers=layers, batch_first=True)
        self.in_features, self.out_features = in_features, hidden

    def forward(self, tokens: Tensor) -> Tensor:
        return _over_sequences(tokens, lambda flat: self.rnn(flat)[0], self.out_features)


@dataclass
class Attention(BodyConfig):
    """A transformer encoder over the component tokens.

    Args:
        dim: model width (tokens are projected to it first).
        heads: attention heads (must divide ``dim``).
        layers: encoder layers.
        ff: feed-forward width (default ``4 * dim``).
    """

    dim: int = checked(positive_int, default=64)
    heads: int = checked(positive_int, default=4)
    layers: int = checked(positive_int, default=2, counts_tensors=True)
    ff: int | None = checked(optional(positive_int), default=None)
    mixes_tokens: ClassVar[bool] = True

    def check(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"Attention: heads ({self.heads}) must divide dim ({self.dim})")

    def build(self, in_features: int) -> BodyModule:
        return AttentionBody(in_features, self.dim, self.heads, self.layers, self.ff or 4 * self.dim)


class AttentionBody(BodyModule):
    """Projection to ``dim`` then ``nn.TransformerEncoder`` (pre-norm, no dropout)."""

    mixes_tokens = True

    def __init__(self, in_features: int, dim: int, heads: int, layers: int, ff: int) -> None:
        super().__init__()
        self.proj = nn.Linear(max(in_features, 1), dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.in_features, self.out_features = in_features, dim

    def forward(self, tokens: Tensor) -> Tensor:
        return _over_sequences(tokens, lambda flat: self.encoder(self.proj(flat)), self.out_features)
