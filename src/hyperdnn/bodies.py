"""Architecture axis: the hypernetwork's body.

A body maps a sequence of *tokens* (one per component the output strategy
generates: one token for generate-once, one per chunk, tile or parameter
tensor otherwise) to features: ``(..., T, in) -> (..., T, out)``. An MLP
treats tokens independently; an RNN walks them in order, so later components
depend on earlier ones; attention lets every token see every other.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

from .errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}


class BodyModule(nn.Module):
    """Built body: ``(..., T, in_features) -> (..., T, out_features)``."""

    in_features: int
    out_features: int
    mixes_tokens: bool = False


def _check_activation(part: str, activation: str | None) -> None:
    if activation is not None and activation not in ACTIVATIONS:
        raise ConfigError(f"{part}: activation must be one of {sorted(ACTIVATIONS)} or None (got {activation!r})")


@dataclass
class MLP:
    """A multilayer perceptron applied to each token.

    Args:
        hidden: widths of the hidden layers; ``()`` makes the body the identity
            (the output heads then act on the tokens directly).
        activation: nonlinearity after each hidden layer ('relu', 'elu', 'gelu',
            'tanh', 'sigmoid', 'silu' or None for a linear body).
        dropout: dropout after each hidden layer.
    """

    hidden: tuple[int, ...] = (100, 100)
    activation: str | None = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        for h in self.hidden:
            if not isinstance(h, int) or h <= 0:
                raise ConfigError(f"MLP: hidden widths must be positive ints (got {self.hidden})")
        _check_activation("MLP", self.activation)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"MLP: dropout must be in [0, 1) (got {self.dropout})")

    @property
    def mixes_tokens(self) -> bool:
        """Whether the built body lets components see each other (then they need embeddings)."""
        return False

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
class RNN:
    """A recurrent body that walks the components in order (GRU or LSTM cell).

    Args:
        hidden: width of the recurrent state (the features given to the heads).
        cell: 'gru' or 'lstm'.
        layers: number of stacked recurrent layers.
    """

    hidden: int = 64
    cell: str = "gru"
    layers: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, int) or self.hidden <= 0:
            raise ConfigError(f"RNN: hidden must be a positive int (got {self.hidden!r})")
        if self.cell not in ("gru", "lstm"):
            raise ConfigError(f"RNN: cell must be 'gru' or 'lstm' (got {self.cell!r})")
        if not isinstance(self.layers, int) or self.layers <= 0:
            raise ConfigError(f"RNN: layers must be a positive int (got {self.layers!r})")

    @property
    def mixes_tokens(self) -> bool:
        """Whether the built body lets components see each other (then they need embeddings)."""
        return True

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
class Attention:
    """A transformer encoder over the component tokens.

    Args:
        dim: model width (tokens are projected to it first).
        heads: attention heads (must divide ``dim``).
        layers: encoder layers.
        ff: feed-forward width (default ``4 * dim``).
    """

    dim: int = 64
    heads: int = 4
    layers: int = 2
    ff: int | None = None

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"Attention: {name} must be a positive int (got {v!r})")
        if self.dim % self.heads:
            raise ConfigError(f"Attention: heads ({self.heads}) must divide dim ({self.dim})")

    @property
    def mixes_tokens(self) -> bool:
        """Whether the built body lets components see each other (then they need embeddings)."""
        return True

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


BODY_TYPES = {c.__name__: c for c in (MLP, RNN, Attention)}


def body_to_json(cfg: Any) -> dict[str, Any]:
    d = asdict(cfg)
    if "hidden" in d and isinstance(d["hidden"], tuple):
        d["hidden"] = list(d["hidden"])
    return {"type": type(cfg).__name__, **d}


def body_from_json(data: dict[str, Any]) -> Any:
    data = dict(data)
    kind = data.pop("type")
    if kind not in BODY_TYPES:
        raise ConfigError(f"load: unknown body type {kind!r}; expected one of {sorted(BODY_TYPES)}")
    if "hidden" in data and isinstance(data["hidden"], list):
        data["hidden"] = tuple(data["hidden"])
    return BODY_TYPES[kind](**data)
