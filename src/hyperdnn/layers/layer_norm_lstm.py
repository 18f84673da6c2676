"""LayerNorm LSTM: the baseline of Ha et al. 2016 Table 3, with nn.LSTM's interface.

    gates_t = LN(W_x x_t + W_h h_{t-1} + b)     (per gate: i, f, g, o)
    c_t = sig(f) c_{t-1} + sig(i) tanh(g),   h_t = sig(o) tanh(LN(c_t))

This is the layer-norm placement of the reference code of Ha et al. (its
``LSTMCell(use_layer_norm=True)``: the bias b is added before one norm per
gate, b starts at 0, and the norm's shift carries the forget-gate bias of 1),
and it is exactly ``HyperLSTM(layer_norm=True)`` with its scalings fixed to 1
and the same bias (its ``bias_ih`` = b; with ``bias=False`` on both, no b), so
the two differ only by the hypernetwork. Ba, Kiros, Hinton 2016 (arXiv
1607.06450) normalise W_x x and W_h h separately and add b after the norms;
this variant sums first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.layers.lstm_core import (
    initial_state,
    layer_norm_gates,
    lstm_options,
    lstm_output,
    lstm_update,
    run_layers,
    sequence_input,
)

__all__ = ["LayerNormLSTM"]


class LayerNormLSTM(nn.Module):
    """Multi-layer LSTM with layer norm on gates and cell; the interface of torch.nn.LSTM.

    Args:
        input_size (int): features of x.
        hidden_size (int): H.
        num_layers (int, default 1): stacked layers.
        bias (bool, default True): the bias b inside the gate norm (``bias_ih``, (4H) per
            layer, starts at 0); the norms' own gains and shifts are always there.
        batch_first (bool, default False): (B, T, *) instead of (T, B, *).
        dropout (float, default 0.0): dropout on each layer's output except the last
            (training only), as nn.LSTM.

    ``forward(input, state=None)``: input (T, B, input_size) ((B, T, ...) with
    batch_first) or unbatched (T, input_size); state ``(h0, c0)`` each
    (num_layers, B, H) (unbatched: (num_layers, H)) or None (zeros). Returns
    ``(output, (h_n, c_n))`` with output (T, B, H) (or (B, T, H), or (T, H)) and
    h_n, c_n (num_layers, B, H) (unbatched: (num_layers, H)).
    Not supported (refused with an error or absent): PackedSequence inputs,
    bidirectional, proj_size.

    Paper: the baseline "LayerNorm LSTM" of Ha, Dai, Le 2016 (arXiv 1609.09106), Table 3.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        (self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first, self.dropout) = lstm_options(
            "LayerNormLSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout
        )
        H = hidden_size
        self.weight_ih = nn.ParameterList(
            nn.Parameter(torch.empty(4 * H, input_size if k == 0 else H)) for k in range(num_layers)
        )
        self.weight_hh = nn.ParameterList(nn.Parameter(torch.empty(4 * H, H)) for _ in range(num_layers))
        self.bias_ih = (
            nn.ParameterList(nn.Parameter(torch.zeros(4 * H)) for _ in range(num_layers)) if self.bias else None
        )
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

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
            f"batch_first={self.batch_first}, dropout={self.dropout}"
        )

    def forward(
        self, input: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run all layers; shapes as in the class docstring."""
        x, unbatched = sequence_input("LayerNormLSTM", input, self.input_size, self.batch_first)
        h0, c0 = initial_state(
            "LayerNormLSTM", state, ("h0", "c0"), (self.num_layers, x.shape[1]), self.hidden_size, 0, x,
            unbatched_dim=1 if unbatched else None, layout=f"num_layers, {'' if unbatched else 'batch, '}hidden_size",
        )
        layers = [lambda x, h, c, k=k: self._layer(k, x, h, c) for k in range(self.num_layers)]
        out, h_n, c_n = run_layers(x, layers, h0, c0, self.dropout, self.training)  # h_n, c_n (L, B, H)
        return lstm_output(out, h_n, c_n, unbatched, self.batch_first)

    def _layer(self, k: int, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Layer ``k`` over the sequence x (T, B, I) from state h, c (B, H); returns (out (T, B, H), (h, c))."""
        b = self.bias_ih[k] if self.bias_ih is not None else None
        # unbind, not x[t]: one backward for the whole sequence instead of a zero fill per step
        xw = F.linear(x, self.weight_ih[k], b).unbind(0)  # T x (B, 4H)
        w_hh = self.weight_hh[k].t()
        ln, ln_cell = (self.ln_weight[k], self.ln_bias[k]), (self.ln_cell_weight[k], self.ln_cell_bias[k])
        outs = []
        for xw_t in xw:
            gates = layer_norm_gates(torch.addmm(xw_t, h, w_hh), ln[0], ln[1], 4)  # (B, 4H)
            h, c = lstm_update(gates, c, ln_cell)
            outs.append(h)
        return torch.stack(outs), (h, c)  # (T, B, H)
