"""HyperLSTM: an LSTM whose weights a small LSTM rescales at every step.

Ha, Dai, Le 2016, "HyperNetworks" (arXiv 1609.09106), section 3.2, the
memory-efficient weight-scaling form. At step t a small *hyper* LSTM with
N_h units reads ``[x_t, h_{t-1}]`` and its own state and emits
``hh_t`` (N_h). For each gate y in (i, f, g, o) linear maps make one
embedding per gate and per term (12 in all, each N_z wide)

    z_x^y = W_zx^y hh_t + b_zx^y,   z_h^y = W_zh^y hh_t + b_zh^y,   z_b^y = W_zb^y hh_t

and from each its own per-unit vector for that gate's H units

    d_x^y = W_dx^y z_x^y,   d_h^y = W_dh^y z_h^y,   b^y_t = W_db^y z_b^y + b_0^y      (each H)

which rescale the rows of the main LSTM's input and recurrent weights
(a full weight matrix per step is never formed):

    y_t = LN(d_x^y * (W_x^y x_t) + d_h^y * (W_h^y h_{t-1}) + b^y_t)      y in (i, f, g, o)
    c_t = sig(f_t) c_{t-1} + sig(i_t) tanh(g_t),   h_t = sig(o_t) tanh(LN(c_t))

The paper writes d^y per gate, and the authors' reference code (hardmaru's
supercell, ported to tensorflow/contrib/rnn HyperLSTMCell) makes a separate
embedding for each gate and term (``hyper_ix`` ... ``hyper_oh``, ``hyper_ib``
... ``hyper_ob``); all 12 maps W_d^y run as one block-diagonal matmul here.

``LN`` is layer normalisation per gate (and on the cell), used only with
``layer_norm=True``, as in the paper's "LayerNorm HyperLSTM"; the hyper cell
is then a layer-norm LSTM too, and b_0 stays inside the norm (as in the paper's
equations and the reference code). Gate order is torch.nn.LSTM's (i, f, g, o).

The hyper output used at step t is the hyper cell's output of the same step
(as in the authors' reference code), so the scaling depends on x_t.

Initialisation: the main weights as in torch.nn.LSTM (uniform +-1/sqrt(H));
W_zx = W_zh = 0 with b_zx = b_zh = 1 and W_dx = W_dh = 1/N_z, so d_x = d_h = 1
exactly at the start (the main LSTM starts as an ordinary LSTM); W_zb ~
N(0, 0.01) and W_db = 0, so the dynamic bias starts at b_0; forget-gate
biases start at 1. The reference code differs here: it starts every scaling
at 0.1 (``init_gamma = 0.10``, hard-coded in its ``hyper_norm``, with or
without layer norm). Without layer norm that is a different function at the
start (the main pre-activations scaled by 0.1); with layer norm and b_0 = 0
the norm removes the common factor, so the two starts compute the same
function at initialisation (up to the norm's epsilon), but they do not train
the same way (the gradients reaching W_x, W_h and the hyper maps differ by
that factor).

State format: ``(h, c)`` as in torch.nn.LSTM, with the hyper cell's state
appended on the last dimension: ``h[..., :hidden_size]`` is the main hidden
state, ``h[..., hidden_size:]`` the hyper cell's (hyper_size wide); likewise
for ``c``. A state whose last dimension is only ``hidden_size`` is accepted
as input (the hyper state then starts at zero), so code that builds
nn.LSTM-shaped initial states keeps working.
"""

from __future__ import annotations

import math
import warnings
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, HDTypeError, ShapeError
from hyperdnn.layers.lstm_core import (
    check_sizes,
    initial_state,
    layer_norm_gates,
    lstm_options,
    lstm_output,
    lstm_update,
    run_layers,
    sequence_input,
)

__all__ = ["HyperLSTM", "HyperLSTMCell"]


class HyperLSTMCell(nn.Module):
    """One HyperLSTM layer: a main LSTM cell rescaled per step by a hyper LSTM cell.

    Args:
        input_size (int): features of x_t.
        hidden_size (int): H, units of the main LSTM.
        hyper_size (int, default 128): N_h, units of the hyper LSTM.
        embedding_size (int, default 4): N_z, size of each of the 12 embeddings
            z_x^y, z_h^y, z_b^y (one per gate y and term).
        bias (bool, default True): main bias b_0 and the dynamic bias W_db^y z_b^y.
        layer_norm (bool, default False): layer norm on gates and cell, in both cells.

    Parameters (H, N_h, N_z as above; I = input_size): ``weight_ih`` (4H, I),
    ``weight_hh`` (4H, H), ``bias_ih`` (4H) as nn.LSTM's (one bias, b_0);
    ``weight_z`` (12 N_z, N_h) (8 N_z without bias), rows [z_x^i, z_x^f, z_x^g,
    z_x^o, z_h^i, ..., z_b^o]; ``bias_z`` (8 N_z); ``weight_dx``, ``weight_dh``,
    ``weight_db`` (4H, N_z), rows y*H:(y+1)*H map z^y of the same gate.

    ``forward(x, state)`` runs one step: x (B, input_size) or (input_size,),
    state ``(h, c)`` each (B, H + N_h) (or (B, H): hyper state starts at 0) or None;
    returns the new ``(h, c)``, each (B, H + N_h) (main state first).

    Paper: Ha, Dai, Le 2016, arXiv 1609.09106, section 3.2.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        hyper_size: int = 128,
        embedding_size: int = 4,
        bias: bool = True,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        check_sizes(
            "HyperLSTMCell",
            input_size=input_size,
            hidden_size=hidden_size,
            hyper_size=hyper_size,
            embedding_size=embedding_size,
        )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.hyper_size = hyper_size
        self.embedding_size = embedding_size
        self.bias = bool(bias)
        self.layer_norm = bool(layer_norm)
        H, Nh, Nz, I = hidden_size, hyper_size, embedding_size, input_size
        # main LSTM, torch.nn.LSTM layout: rows are gates (i, f, g, o)
        self.weight_ih = nn.Parameter(torch.empty(4 * H, I))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(4 * H)) if bias else None
        # hyper LSTM, reads [x_t, h_{t-1}]
        self.hyper_weight_ih = nn.Parameter(torch.empty(4 * Nh, I + H))
        self.hyper_weight_hh = nn.Parameter(torch.empty(4 * Nh, Nh))
        self.hyper_bias = nn.Parameter(torch.empty(4 * Nh))
        # hyper output -> one embedding per gate and term: z_x^y, z_h^y (with bias), z_b^y (without)
        n_terms = 3 if bias else 2
        self.weight_z = nn.Parameter(torch.empty(n_terms * 4 * Nz, Nh))
        self.bias_z = nn.Parameter(torch.empty(2 * 4 * Nz))
        # embeddings -> per-unit scalings d_x^y, d_h^y and dynamic bias; block y maps z^y
        self.weight_dx = nn.Parameter(torch.empty(4 * H, Nz))
        self.weight_dh = nn.Parameter(torch.empty(4 * H, Nz))
        self.weight_db = nn.Parameter(torch.empty(4 * H, Nz)) if bias else None
        if self.layer_norm:
            self.ln_weight = nn.Parameter(torch.empty(4 * H))
            self.ln_bias = nn.Parameter(torch.empty(4 * H))
            self.ln_cell_weight = nn.Parameter(torch.empty(H))
            self.ln_cell_bias = nn.Parameter(torch.empty(H))
            self.hyper_ln_weight = nn.Parameter(torch.empty(4 * Nh))
            self.hyper_ln_bias = nn.Parameter(torch.empty(4 * Nh))
            self.hyper_ln_cell_weight = nn.Parameter(torch.empty(Nh))
            self.hyper_ln_cell_bias = nn.Parameter(torch.empty(Nh))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise as described in the module docstring (scalings start at exactly 1)."""
        H, Nh, Nz = self.hidden_size, self.hyper_size, self.embedding_size
        k = 1.0 / math.sqrt(H)
        nn.init.uniform_(self.weight_ih, -k, k)
        nn.init.uniform_(self.weight_hh, -k, k)
        if self.bias_ih is not None:
            if self.layer_norm:
                self.bias_ih.zero_()
            else:
                nn.init.uniform_(self.bias_ih, -k, k)
                self.bias_ih[H : 2 * H] = 1.0
        kh = 1.0 / math.sqrt(Nh)
        nn.init.uniform_(self.hyper_weight_ih, -kh, kh)
        nn.init.uniform_(self.hyper_weight_hh, -kh, kh)
        self.hyper_bias.zero_()
        self.weight_z.zero_()
        self.bias_z.fill_(1.0)
        if self.bias:
            nn.init.normal_(self.weight_z[8 * Nz :], 0.0, 0.01)
        self.weight_dx.fill_(1.0 / Nz)
        self.weight_dh.fill_(1.0 / Nz)
        if self.weight_db is not None:
            self.weight_db.zero_()
        if self.layer_norm:
            for w in (self.ln_weight, self.ln_cell_weight, self.hyper_ln_weight, self.hyper_ln_cell_weight):
                w.fill_(1.0)
            for b in (self.ln_bias, self.ln_cell_bias, self.hyper_ln_bias, self.hyper_ln_cell_bias):
                b.zero_()
            self.ln_bias[H : 2 * H] = 1.0
            self.hyper_ln_bias[Nh : 2 * Nh] = 1.0
        else:
            self.hyper_bias[Nh : 2 * Nh] = 1.0

    @property
    def state_size(self) -> int:
        """Width of h and c in this cell's state: hidden_size + hyper_size."""
        return self.hidden_size + self.hyper_size

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, hyper_size={self.hyper_size}, "
            f"embedding_size={self.embedding_size}, bias={self.bias}, layer_norm={self.layer_norm}"
        )

    def zero_state(self, batch: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """Zero state (h, c), each (batch, H + N_h), on like's device and dtype."""
        z = like.new_zeros(batch, self.state_size)
        return z, z

    def forward(
        self, input: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """One step. input (B, input_size) or (input_size,); returns (h, c) each (B, H + N_h)."""
        if not isinstance(input, Tensor):
            raise HDTypeError(f"HyperLSTMCell: input must be a Tensor (got {type(input).__name__})")
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ShapeError(
                f"HyperLSTMCell: input must be (B, {self.input_size}) or ({self.input_size},) "
                f"(got {tuple(input.shape)})"
            )
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        h0, c0 = initial_state(
            "HyperLSTMCell", state, ("h", "c"), (x.shape[0],), self.hidden_size, self.hyper_size, x,
            unbatched_dim=0 if unbatched else None, layout="hidden_size + hyper_size" if unbatched else "batch, hidden_size + hyper_size",
        )
        _, (h, c) = self._scan(x.unsqueeze(0), (h0, c0))
        return (h[0], c[0]) if unbatched else (h, c)

    def _scan(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the cell over a sequence (no input checks: forward and HyperLSTM do them).

        Args:
            x (Tensor): (T, B, input_size).
            state (tuple): (h0, c0), each (B, H + N_h).

        Returns:
            (out, (h, c)): out (T, B, H) the main hidden states; h, c (B, H + N_h).
        """
        H, Nh, Nz, I = self.hidden_size, self.hyper_size, self.embedding_size, self.input_size
        T, B, _ = x.shape
        # everything that does not depend on the recurrence leaves the time loop
        xw = F.linear(x, self.weight_ih)  # (T, B, 4H)
        xhyp = F.linear(x, self.hyper_weight_ih[:, :I], self.hyper_bias)  # (T, B, 4Nh)
        # one matmul per step serves the main LSTM and the hyper cell's h_{t-1} input
        w_rec = torch.cat([self.weight_hh, self.hyper_weight_ih[:, I:]], 0).t()  # (H, 4H + 4Nh)
        w_hyp = self.hyper_weight_hh.t()  # (Nh, 4Nh)
        w_z = self.weight_z.t()  # (Nh, n_terms*4*Nz)
        b_z = torch.cat([self.bias_z, self.bias_z.new_zeros(self.weight_z.shape[0] - 8 * Nz)])
        d_blocks = [*self.weight_dx.split(H), *self.weight_dh.split(H)]
        if self.weight_db is not None:
            d_blocks.extend(self.weight_db.split(H))
        # one (H, Nz) block per gate and term: all 12 maps z^y -> d^y in one matmul
        w_d = torch.block_diag(*d_blocks).t()  # (n_terms*4*Nz, n_terms*4H)
        b_d = None
        if self.bias_ih is not None:
            b_d = torch.cat([self.bias_ih.new_zeros(8 * H), self.bias_ih])  # (12H,)
        ln = (self.ln_weight, self.ln_bias) if self.layer_norm else None
        ln_cell = (self.ln_cell_weight, self.ln_cell_bias) if self.layer_norm else None
        hyp_ln = (self.hyper_ln_weight, self.hyper_ln_bias) if self.layer_norm else None
        hyp_ln_cell = (self.hyper_ln_cell_weight, self.hyper_ln_cell_bias) if self.layer_norm else None

        h0, c0 = state
        h, hh = h0[:, :H], h0[:, H:]
        c, hc = c0[:, :H], c0[:, H:]
        # unbind/split, never x[t] or slices: their backward fills a zero tensor of the
        # whole input per step (quadratic in T); unbind's backward stacks once
        xw_t, xhyp_t = xw.unbind(0), xhyp.unbind(0)
        outs = []
        for t in range(T):
            rec_main, rec_hyp = torch.mm(h, w_rec).split([4 * H, 4 * Nh], 1)  # (B, 4H), (B, 4Nh)
            hg = torch.addmm(xhyp_t[t] + rec_hyp, hh, w_hyp)  # (B, 4Nh)
            if hyp_ln is not None:
                hg = layer_norm_gates(hg, hyp_ln[0], hyp_ln[1], 4)
            hh, hc = lstm_update(hg, hc, hyp_ln_cell)  # (B, Nh)
            z = torch.addmm(b_z, hh, w_z)  # (B, n_terms*4*Nz)
            if b_d is None:
                d_x, d_h = torch.mm(z, w_d).chunk(2, 1)  # (B, 4H) each
                gates = d_x * xw_t[t]
            else:
                d_x, d_h, b_t = torch.addmm(b_d, z, w_d).chunk(3, 1)  # (B, 4H) each
                gates = torch.addcmul(b_t, d_x, xw_t[t])
            gates = torch.addcmul(gates, d_h, rec_main)  # (B, 4H)
            if ln is not None:
                gates = layer_norm_gates(gates, ln[0], ln[1], 4)
            h, c = lstm_update(gates, c, ln_cell)  # (B, H)
            outs.append(h)
        out = torch.stack(outs)  # (T, B, H)
        return out, (torch.cat([h, hh], 1), torch.cat([c, hc], 1))


class HyperLSTM(nn.Module):
    """A multi-layer HyperLSTM with the interface of torch.nn.LSTM.

    Args:
        input_size (int): features of x.
        hidden_size (int): H, units of each main LSTM.
        num_layers (int, default 1): stacked HyperLSTMCell layers, each with its own hyper cell.
        bias (bool, default True): main and dynamic biases (see HyperLSTMCell).
        batch_first (bool, default False): input/output are (B, T, *) instead of (T, B, *).
        dropout (float, default 0.0): dropout on each layer's output except the last, as nn.LSTM.
        hyper_size (int, default 128): N_h, units of each hyper LSTM.
        embedding_size (int, default 4): N_z.
        layer_norm (bool, default False): the paper's LayerNorm HyperLSTM.

    ``forward(input, state=None)``: input (T, B, input_size) ((B, T, ...) with
    batch_first) or unbatched (T, input_size); state ``(h0, c0)`` each
    (num_layers, B, H + N_h) (unbatched: (num_layers, H + N_h)); a last dimension
    of H alone is accepted (hyper state starts at 0). Returns ``(output, (h_n, c_n))``:
    output (T, B, H) (or (B, T, H), or (T, H)), the main LSTM's hidden states of
    the last layer; h_n, c_n (num_layers, B, H + N_h), main state first then the
    hyper cell's.

    Warning: unlike nn.LSTM, h_n and c_n are H + N_h wide, not H: code that
    reads the final hidden state (e.g. a classifier on ``h_n[-1]``) must take
    ``h_n[..., :hidden_size]``, which is what nn.LSTM would return (or use
    ``output[-1]``). Feeding ``(h_n, c_n)`` back as the next call's state is
    fine either way.

    Example:
        >>> rnn = HyperLSTM(10, 20, num_layers=2, hyper_size=8, batch_first=True)
        >>> out, (h, c) = rnn(torch.randn(3, 5, 10))
        >>> out.shape, h.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 28]))

    Paper: Ha, Dai, Le 2016, arXiv 1609.09106, section 3.2.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        hyper_size: int = 128,
        embedding_size: int = 4,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        (self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first, self.dropout) = lstm_options(
            "HyperLSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            hyper_size=hyper_size, embedding_size=embedding_size,
        )
        self.hyper_size, self.embedding_size = hyper_size, embedding_size
        self.layer_norm = bool(layer_norm)
        self.cells = nn.ModuleList(
            HyperLSTMCell(
                input_size if layer == 0 else hidden_size,
                hidden_size,
                hyper_size=hyper_size,
                embedding_size=embedding_size,
                bias=bias,
                layer_norm=layer_norm,
            )
            for layer in range(num_layers)
        )

    @property
    def state_size(self) -> int:
        """Width of h_n and c_n: hidden_size + hyper_size."""
        return self.hidden_size + self.hyper_size

    @classmethod
    def from_lstm(
        cls, lstm: nn.LSTM, hyper_size: int = 128, embedding_size: int = 4, layer_norm: bool = False
    ) -> "HyperLSTM":
        """A HyperLSTM whose main weights are copied from an nn.LSTM, scalings starting at 1.

        Args:
            lstm (nn.LSTM): unidirectional, without proj_size; not modified.
            hyper_size (int, default 128): N_h of the new hyper cells.
            embedding_size (int, default 4): N_z.
            layer_norm (bool, default False): with layer norm the result is no
                longer the same function as ``lstm``.

        Returns:
            HyperLSTM: same input_size, hidden_size, num_layers, bias, batch_first
            and dropout; ``weight_ih``/``weight_hh`` copied, ``bias_ih`` = the
            LSTM's bias_ih + bias_hh (forget-gate bias as it is in ``lstm``).
            Without layer norm the untrained HyperLSTM computes exactly ``lstm``'s
            function (h_n[..., :hidden_size] included).
        """
        if not isinstance(lstm, nn.LSTM):
            raise HDTypeError(f"HyperLSTM.from_lstm: lstm must be a torch.nn.LSTM (got {type(lstm).__name__})")
        if lstm.bidirectional or lstm.proj_size:
            raise ConfigError(
                f"HyperLSTM.from_lstm: bidirectional and proj_size are not supported "
                f"(got bidirectional={lstm.bidirectional}, proj_size={lstm.proj_size})"
            )
        # nn.LSTM already warned about dropout with one layer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            m = cls(
                lstm.input_size,
                lstm.hidden_size,
                num_layers=lstm.num_layers,
                bias=lstm.bias,
                batch_first=lstm.batch_first,
                dropout=lstm.dropout,
                hyper_size=hyper_size,
                embedding_size=embedding_size,
                layer_norm=layer_norm,
            )
        ref = cast(Tensor, lstm.weight_ih_l0)
        m.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for layer, cell in enumerate(cast(list[HyperLSTMCell], list(m.cells))):
                cell.weight_ih.copy_(getattr(lstm, f"weight_ih_l{layer}"))
                cell.weight_hh.copy_(getattr(lstm, f"weight_hh_l{layer}"))
                if cell.bias_ih is not None:
                    cell.bias_ih.copy_(getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}"))
        return m

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}, dropout={self.dropout}"

    def forward(
        self, input: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run all layers over the sequence; see the class docstring for shapes."""
        x, unbatched = sequence_input("HyperLSTM", input, self.input_size, self.batch_first)
        h0, c0 = initial_state(
            "HyperLSTM", state, ("h0", "c0"), (self.num_layers, x.shape[1]), self.hidden_size, self.hyper_size, x,
            unbatched_dim=1 if unbatched else None, layout=f"num_layers, {'' if unbatched else 'batch, '}hidden_size + hyper_size",
        )
        layers = [lambda x, h, c, cell=cell: cell._scan(x, (h, c)) for cell in self.cells]
        out, h_n, c_n = run_layers(x, layers, h0, c0, self.dropout, self.training)  # h_n, c_n (L, B, H + Nh)
        return lstm_output(out, h_n, c_n, unbatched, self.batch_first)
