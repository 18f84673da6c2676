"""LayerNorm LSTM: the baseline of Ha et al. 2016 Table 3, with the nn.LSTM interface.

    gates_t = LN(W_x x_t + W_h h_{t-1} + b)     (per gate: i, f, g, o)
    c_t = sig(f) c_{t-1} + sig(i) tanh(g),   h_t = sig(o) tanh(LN(c_t))

This is the layer-norm placement of the reference code of Ha et al. (one norm
per gate on the summed pre-activation, one on the cell), i.e. exactly
``HyperLSTM(layer_norm=True)`` with its scalings fixed to 1, so the two
differ only by the hypernetwork. Ba, Kiros, Hinton 2016 (arXiv 1607.06450)
normalise W_x x and W_h h separately; this variant sums first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.layers.hyper_lstm import _as_pair, _check_sizes, _layer_norm_gates, _lstm_update

__all__ = ["LayerNormLSTM"]


class LayerNormLSTM(nn.Module):
    """Multi-layer LSTM with layer norm on gates and cell; interface of torch.nn.LSTM.

    Args:
        input_size (int): features of x.
        hidden_size (int): H.
        num_layers (int, default 1): stacked layers.
        batch_first (bool, default False): (B, T, *) instead of (T, B, *).
        dropout (float, default 0.0): dropout between layers (training only).

    ``forward(input, state=None)``: input (T, B, input_size) (or batch-first);
    state ``(h0, c0)`` each (num_layers, B, H). Returns ``(output, (h_n, c_n))``
    with output (T, B, H) and h_n, c_n (num_layers, B, H).
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        _check_sizes("LayerNormLSTM", input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ConfigError(f"LayerNormLSTM: dropout must be a number in [0, 1] (got {dropout!r})")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        H = hidden_size
        self.weight_ih = nn.ParameterList(
            nn.Parameter(torch.empty(4 * H, input_size if k == 0 else H)) for k in range(num_layers)
        )
        self.weight_hh = nn.ParameterList(nn.Parameter(torch.empty(4 * H, H)) for _ in range(num_layers))
        self.ln_weight = nn.ParameterList(nn.Parameter(torch.ones(4 * H)) for _ in range(num_layers))
        self.ln_bias = nn.ParameterList(nn.Parameter(torch.zeros(4 * H)) for _ in range(num_layers))
        self.ln_cell_weight = nn.ParameterList(nn.Parameter(torch.ones(H)) for _ in range(num_layers))
        self.ln_cell_bias = nn.ParameterList(nn.Parameter(torch.zeros(H)) for _ in range(num_layers))
        k = 1.0 / math.sqrt(H)
        with torch.no_grad():
            for w in [*self.weight_ih, *self.weight_hh]:
                nn.init.uniform_(w, -k, k)
            for b in self.ln_bias:
                b[H : 2 * H] = 1.0  # forget-gate bias 1

    def forward(
        self, input: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run all layers; shapes as in the class docstring."""
        if not isinstance(input, Tensor) or input.dim() != 3 or input.shape[-1] != self.input_size:
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ShapeError(f"LayerNormLSTM: input must be 3-d with input_size={self.input_size} (got {shape})")
        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        L, B, H = self.num_layers, x.shape[1], self.hidden_size
        if state is None:
            h0 = c0 = x.new_zeros(L, B, H)
        else:
            h0, c0 = _as_pair("LayerNormLSTM", state)
            for name, s in (("h0", h0), ("c0", c0)):
                if tuple(s.shape) != (L, B, H):
                    raise ShapeError(f"LayerNormLSTM: state {name} must be ({L}, {B}, {H}) (got {tuple(s.shape)})")
        hs, cs = [], []
        for k in range(L):
            xw = F.linear(x, self.weight_ih[k]).unbind(0)  # T x (B, 4H)
            w_hh = self.weight_hh[k].t()
            ln, ln_cell = (self.ln_weight[k], self.ln_bias[k]), (self.ln_cell_weight[k], self.ln_cell_bias[k])
            h, c = h0[k], c0[k]
            outs = []
            for xw_t in xw:
                gates = _layer_norm_gates(torch.addmm(xw_t, h, w_hh), ln[0], ln[1], 4)  # (B, 4H)
                h, c = _lstm_update(gates, c, ln_cell)
                outs.append(h)
            x = torch.stack(outs)  # (T, B, H)
            if self.dropout > 0 and self.training and k < L - 1:
                x = F.dropout(x, self.dropout, True)
            hs.append(h)
            cs.append(c)
        out = x.transpose(0, 1) if self.batch_first else x
        return out, (torch.stack(hs), torch.stack(cs))
