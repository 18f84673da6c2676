"""What the LSTMs in :mod:`hyperdnn.layers` share: the gate math and the nn.LSTM interface.

The gate math is the LSTM step on pre-activations in torch.nn.LSTM's gate
order (i, f, g, o), with optional layer norm per gate and on the cell:

    c_t = sig(f) c_{t-1} + sig(i) tanh(g),   h_t = sig(o) tanh(LN(c_t))

The interface is torch.nn.LSTM's: the constructor's options and their checks,
``(T, B, I)`` / ``(B, T, I)`` / unbatched ``(T, I)`` inputs, ``(h, c)`` states
of shape ``(num_layers, B, width)``, dropout between stacked layers, and the
``(output, (h_n, c_n))`` result. :class:`~hyperdnn.layers.HyperLSTM`,
:class:`~hyperdnn.layers.HyperLSTMCell` and
:class:`~hyperdnn.layers.LayerNormLSTM` are built from these parts.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.errors import ConfigError, HDTypeError, ShapeError

__all__ = [
    "LN_EPS",
    "as_state_pair",
    "check_dropout",
    "check_sizes",
    "initial_state",
    "layer_norm_gates",
    "LSTMOptions",
    "lstm_options",
    "lstm_output",
    "lstm_update",
    "run_layers",
    "sequence_input",
]

LN_EPS = 1e-5

# one layer of a stacked LSTM: (x (T, B, I), h0 (B, W), c0 (B, W)) -> (out (T, B, H), (h, c))
Layer = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, tuple[Tensor, Tensor]]]


def check_sizes(part: str, **sizes: int) -> None:
    """Raises ``HDTypeError`` for a size that is not an int (bools included), ``ConfigError`` for one <= 0."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise HDTypeError(f"{part}: {name} must be an int (got {type(value).__name__})")
        if value <= 0:
            raise ConfigError(f"{part}: {name} must be > 0 (got {value})")


def check_dropout(part: str, dropout: object, num_layers: int, stacklevel: int = 3) -> None:
    """nn.LSTM's dropout rules, with the project's errors (and its warning for one layer).

    Args:
        stacklevel: passed to ``warnings.warn`` so that the warning names the user's line.
    """
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise HDTypeError(f"{part}: dropout must be a number in [0, 1] (got {type(dropout).__name__})")
    if not 0.0 <= dropout <= 1.0:
        raise ConfigError(f"{part}: dropout must be a number in [0, 1] (got {dropout!r})")
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            f"{part}: dropout={dropout} acts between layers only (after all but the last), "
            f"so with num_layers=1 it does nothing",
            UserWarning,
            stacklevel=stacklevel,
        )


class LSTMOptions(NamedTuple):
    """nn.LSTM's constructor options, checked (see :func:`lstm_options`)."""

    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float


def lstm_options(
    part: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    batch_first: bool,
    dropout: float,
    **sizes: int,
) -> LSTMOptions:
    """Check nn.LSTM's constructor options: sizes in the order given (``input_size``,
    ``hidden_size``, ``num_layers``, then ``sizes``, e.g. ``hyper_size=...``), then dropout.

    Call from a module's ``__init__`` (the one-layer dropout warning then names the caller's line)::

        (self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first,
         self.dropout) = lstm_options("MyLSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout)
    """
    check_sizes(part, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, **sizes)
    check_dropout(part, dropout, num_layers, stacklevel=4)
    return LSTMOptions(input_size, hidden_size, num_layers, bool(bias), bool(batch_first), float(dropout))


def layer_norm_gates(x: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
    """Layer norm of each of ``groups`` equal slices of x (B, groups*n), gain/bias (groups*n)."""
    b, width = x.shape
    y = F.layer_norm(x.view(b, groups, width // groups), (width // groups,), None, None, LN_EPS)
    return torch.addcmul(bias, y.view(b, width), weight)  # (B, groups*n)


def lstm_update(gates: Tensor, c: Tensor, ln_cell: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
    """LSTM nonlinearity on pre-activations (B, 4n) in (i, f, g, o) order; returns (h, c), each (B, n).

    Args:
        gates: (B, 4n) pre-activations.
        c: (B, n) the previous cell state.
        ln_cell: gain and shift (n) of the layer norm on the cell before its tanh, or None.
    """
    n = c.shape[1]
    # chunk, not slicing: one SplitBackward instead of a zero-filled grad per slice
    i, f, g, o = gates.chunk(4, 1)
    c = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))  # (B, n)
    cn = c if ln_cell is None else F.layer_norm(c, (n,), ln_cell[0], ln_cell[1], LN_EPS)
    h = torch.sigmoid(o) * torch.tanh(cn)  # (B, n)
    return h, c


def as_state_pair(part: str, state: object) -> tuple[Tensor, Tensor]:
    """``state`` as a pair ``(h, c)`` of Tensors (``HDTypeError`` otherwise)."""
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise HDTypeError(f"{part}: state must be a tuple (h, c) of two Tensors (got {type(state).__name__})")
    h, c = state
    if not isinstance(h, Tensor) or not isinstance(c, Tensor):
        raise HDTypeError(
            f"{part}: state must be a tuple (h, c) of two Tensors (got ({type(h).__name__}, {type(c).__name__}))"
        )
    return h, c


def initial_state(
    part: str,
    state: Any,
    names: tuple[str, str],
    lead: tuple[int, ...],
    hidden: int,
    extra: int,
    like: Tensor,
    unbatched_dim: int | None = None,
    layout: str = "",
) -> tuple[Tensor, Tensor]:
    """The initial ``(h, c)``, each ``(*lead, hidden + extra)``: zeros for None, else the checked state.

    A given ``h`` or ``c`` may also be ``(*lead, hidden)`` when ``extra > 0`` (the last
    ``extra`` columns, a HyperLSTM's hyper state, then start at zero).

    Args:
        part: the module's name, for the messages.
        state: None or ``(h, c)``.
        names: what the messages call h and c, e.g. ``("h0", "c0")``.
        lead: the leading dimensions the state must have, e.g. ``(num_layers, B)``.
        hidden: the main state's width.
        extra: the width appended after it (0: none).
        like: device and dtype of the zero state.
        unbatched_dim: for an unbatched call, the position in ``lead`` of the batch of
            one that the caller's state leaves out (it is added back here).
    """
    width = hidden + extra
    if state is None:
        z = like.new_zeros(*lead, width)
        return z, z
    given = as_state_pair(part, state)
    user_lead = lead if unbatched_dim is None else lead[:unbatched_dim] + lead[unbatched_dim + 1 :]
    widths = (width,) if extra == 0 else (width, hidden)
    out = []
    for name, s in zip(names, given):
        if s.dim() != len(user_lead) + 1 or tuple(s.shape[:-1]) != user_lead or s.shape[-1] not in widths:
            wants = " or ".join(str((*user_lead, w)) for w in widths)
            note = f" ({layout})" if layout else ""
            if extra:
                note += f"; with width {hidden} the last {extra} columns start at 0"
            raise ShapeError(f"{part}: state {name} must be {wants}{note} (got {tuple(s.shape)})")
        if unbatched_dim is not None:
            s = s.unsqueeze(unbatched_dim)
        if s.shape[-1] == hidden and extra:
            s = torch.cat([s, s.new_zeros(*lead, extra)], -1)
        out.append(s)
    return out[0], out[1]


def sequence_input(part: str, input: Any, input_size: int, batch_first: bool) -> tuple[Tensor, bool]:
    """Checks an nn.LSTM-style input and returns it as ``(T, B, I)`` plus whether it was unbatched."""
    if not isinstance(input, Tensor):
        raise HDTypeError(f"{part}: input must be a Tensor (got {type(input).__name__}; PackedSequence is not supported)")
    if input.dim() not in (2, 3) or input.shape[-1] != input_size:
        layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
        raise ShapeError(
            f"{part}: input must be {layout} or unbatched (T, input_size) with "
            f"input_size={input_size} (got {tuple(input.shape)})"
        )
    unbatched = input.dim() == 2
    if unbatched:
        x = input.unsqueeze(1)
    else:
        x = input.transpose(0, 1) if batch_first else input  # (T, B, I)
    if x.shape[0] == 0:
        raise ShapeError(f"{part}: the sequence must have at least one step (got {tuple(input.shape)})")
    return x, unbatched


def run_layers(
    x: Tensor, layers: Sequence[Layer], h0: Tensor, c0: Tensor, dropout: float, training: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Run stacked layers, with dropout on each layer's output except the last (training only), as nn.LSTM.

    Args:
        x: (T, B, I) the first layer's input.
        layers: one callable per layer.
        h0, c0: (L, B, W) each layer's initial state.

    Returns:
        ``(out (T, B, H), h_n (L, B, W), c_n (L, B, W))``.
    """
    hs, cs = [], []
    for k, layer in enumerate(layers):
        x, (h, c) = layer(x, h0[k], c0[k])
        if dropout > 0 and training and k < len(layers) - 1:
            x = F.dropout(x, dropout, True)
        hs.append(h)
        cs.append(c)
    return x, torch.stack(hs), torch.stack(cs)


def lstm_output(
    out: Tensor, h_n: Tensor, c_n: Tensor, unbatched: bool, batch_first: bool
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """nn.LSTM's result from ``out`` (T, B, H) and ``h_n``, ``c_n`` (L, B, W): batch-first or unbatched as asked."""
    if unbatched:
        return out[:, 0], (h_n[:, 0], c_n[:, 0])
    return (out.transpose(0, 1) if batch_first else out), (h_n, c_n)
