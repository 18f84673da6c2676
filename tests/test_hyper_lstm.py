"""HyperLSTM: parity with nn.LSTM and with a per-step reference of the paper's equations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

from hyperdnn.errors import ConfigError, HDTypeError, ShapeError
from hyperdnn.layers.hyper_lstm import HyperLSTM, HyperLSTMCell
from hyperdnn.layers.layer_norm_lstm import LayerNormLSTM

I, H, NH, NZ = 5, 7, 6, 3


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny ops on a busy 2-core machine: a second thread only adds sync cost (40x here)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fix_scaling_to_one(cell: HyperLSTMCell) -> None:
    """d_x = d_h = 1 and dynamic bias = b_0 whatever the hyper cell does."""
    with torch.no_grad():
        cell.weight_z.zero_()
        cell.bias_z.fill_(1.0)
        cell.weight_dx.fill_(1.0 / cell.embedding_size)
        cell.weight_dh.fill_(1.0 / cell.embedding_size)
        cell.weight_db.zero_()


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    B, W = x.shape
    g = x.view(B, groups, W // groups)
    g = (g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-5)
    return g.reshape(B, W) * w + b


def _reference_cell(cell: HyperLSTMCell, x, h, c, hh, hc):
    """Section 3.2 written out gate by gate with separate matrices, no fusion.

    One embedding per gate y and term (z_x^y, z_h^y, z_b^y), each mapped by its own
    (H, N_z) block to that gate's H units, as in the paper's d^y and the authors' code.
    """
    H_, Nz, ln = cell.hidden_size, cell.embedding_size, cell.layer_norm
    sig = torch.sigmoid
    Wz, bz = cell.weight_z, cell.bias_z

    def rows(w, k, n):  # block k of n-row blocks
        return w[k * n : (k + 1) * n]

    outs = []
    for t in range(x.shape[0]):
        hg = torch.cat([x[t], h], 1) @ cell.hyper_weight_ih.T + hh @ cell.hyper_weight_hh.T + cell.hyper_bias
        if ln:
            hg = _ln(hg, cell.hyper_ln_weight, cell.hyper_ln_bias, 4)
        a, f, g, o = hg.chunk(4, 1)
        hc = sig(f) * hc + sig(a) * torch.tanh(g)
        hh = sig(o) * torch.tanh(_ln(hc, cell.hyper_ln_cell_weight, cell.hyper_ln_cell_bias, 1) if ln else hc)
        pre = []
        for y in range(4):  # gates i, f, g, o
            z_x = hh @ rows(Wz, y, Nz).T + rows(bz, y, Nz)
            z_h = hh @ rows(Wz, 4 + y, Nz).T + rows(bz, 4 + y, Nz)
            z_b = hh @ rows(Wz, 8 + y, Nz).T
            d_x = z_x @ rows(cell.weight_dx, y, H_).T
            d_h = z_h @ rows(cell.weight_dh, y, H_).T
            b_y = z_b @ rows(cell.weight_db, y, H_).T + rows(cell.bias_ih, y, H_)
            p = d_x * (x[t] @ rows(cell.weight_ih, y, H_).T) + d_h * (h @ rows(cell.weight_hh, y, H_).T) + b_y
            if ln:
                p = _ln(p, rows(cell.ln_weight, y, H_), rows(cell.ln_bias, y, H_), 1)
            pre.append(p)
        a, f, g, o = pre
        c = sig(f) * c + sig(a) * torch.tanh(g)
        h = sig(o) * torch.tanh(_ln(c, cell.ln_cell_weight, cell.ln_cell_bias, 1) if ln else c)
        outs.append(h)
    return torch.stack(outs), h, c, hh, hc


def test_init_scalings_start_at_one():
    cell = HyperLSTMCell(I, H, hyper_size=NH, embedding_size=4)
    assert cell.weight_z.shape == (12 * 4, NH) and cell.bias_z.shape == (8 * 4,)
    hh = torch.randn(3, NH)
    z = hh @ cell.weight_z.T + torch.cat([cell.bias_z, torch.zeros(16)])
    for y in range(4):
        blk = slice(y * H, (y + 1) * H)
        d_x = z[:, 4 * y : 4 * y + 4] @ cell.weight_dx[blk].T
        d_h = z[:, 16 + 4 * y : 20 + 4 * y] @ cell.weight_dh[blk].T
        torch.testing.assert_close(d_x, torch.ones_like(d_x))
        torch.testing.assert_close(d_h, torch.ones_like(d_h))
        assert torch.all(z[:, 32 + 4 * y : 36 + 4 * y] @ cell.weight_db[blk].T == 0)
    assert cell.weight_z[32:].abs().sum() > 0  # z_b starts small and random, not 0


@pytest.mark.parametrize("batch_first", [False, True])
def test_scaling_one_equals_nn_lstm_forward_and_grads(batch_first):
    torch.manual_seed(0)
    ref = nn.LSTM(I, H, num_layers=2, batch_first=batch_first)
    m = HyperLSTM.from_lstm(ref, hyper_size=NH, embedding_size=NZ)
    assert m.batch_first == batch_first and m.num_layers == 2
    for cell in m.cells:
        nn.init.normal_(cell.hyper_weight_ih)  # the hyper cell runs, but cannot matter
        _fix_scaling_to_one(cell)
    x = torch.randn(4, 6, I) if batch_first else torch.randn(6, 4, I)
    h0, c0 = torch.randn(2, 4, H), torch.randn(2, 4, H)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    h01, c01 = h0.clone().requires_grad_(), c0.clone().requires_grad_()
    h02, c02 = h0.clone().requires_grad_(), c0.clone().requires_grad_()
    out, (h, c) = m(x1, (h01, c01))
    out_r, (h_r, c_r) = ref(x2, (h02, c02))
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(h[..., :H], h_r)
    torch.testing.assert_close(c[..., :H], c_r)
    w = torch.randn_like(out)
    ((out * w).sum() + h[..., :H].sum() + c[..., :H].square().sum()).backward()
    ((out_r * w).sum() + h_r.sum() + c_r.square().sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(h01.grad, h02.grad)
    torch.testing.assert_close(c01.grad, c02.grad)
    for layer, cell in enumerate(m.cells):
        torch.testing.assert_close(cell.weight_ih.grad, getattr(ref, f"weight_ih_l{layer}").grad)
        torch.testing.assert_close(cell.weight_hh.grad, getattr(ref, f"weight_hh_l{layer}").grad)
        torch.testing.assert_close(cell.bias_ih.grad, getattr(ref, f"bias_ih_l{layer}").grad)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_matches_step_by_step_reference(layer_norm):
    torch.manual_seed(1)
    cell = HyperLSTMCell(I, H, hyper_size=NH, embedding_size=NZ, layer_norm=layer_norm)
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0.0, 0.5)  # every path non-trivial
    x = torch.randn(5, 3, I)
    h, c = torch.randn(3, H + NH), torch.randn(3, H + NH)
    out, (h_n, c_n) = cell._scan(x, (h, c))
    r_out, r_h, r_c, r_hh, r_hc = _reference_cell(cell, x, h[:, :H], c[:, :H], h[:, H:], c[:, H:])
    torch.testing.assert_close(out, r_out)
    torch.testing.assert_close(h_n, torch.cat([r_h, r_hh], 1))
    torch.testing.assert_close(c_n, torch.cat([r_c, r_hc], 1))
    grads = torch.autograd.grad(out.sum(), list(cell.parameters()))
    r_grads = torch.autograd.grad(r_out.sum(), list(cell.parameters()))
    for g, rg in zip(grads, r_grads):
        torch.testing.assert_close(g, rg)


def test_layer_norm_hyper_lstm_with_scaling_one_equals_layer_norm_lstm():
    torch.manual_seed(9)
    ref = LayerNormLSTM(I, H, num_layers=2, batch_first=True)
    m = HyperLSTM(I, H, num_layers=2, batch_first=True, hyper_size=NH, embedding_size=NZ, layer_norm=True)
    with torch.no_grad():
        for k, cell in enumerate(m.cells):
            _fix_scaling_to_one(cell)
            for name in ("weight_ih", "weight_hh", "bias_ih", "ln_weight", "ln_bias", "ln_cell_weight", "ln_cell_bias"):
                getattr(ref, name)[k].normal_()
                getattr(cell, name).copy_(getattr(ref, name)[k])
    x = torch.randn(3, 6, I)
    out, (h, c) = m(x)
    out_r, (h_r, c_r) = ref(x)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(c[..., :H], c_r)
    g = torch.autograd.grad(out.square().sum(), m.cells[1].weight_hh)[0]
    torch.testing.assert_close(g, torch.autograd.grad(out_r.square().sum(), ref.weight_hh[1])[0])
    # without the bias inside the norm on both sides, still the same function
    ref_nb = LayerNormLSTM(I, H, bias=False)
    m_nb = HyperLSTM(I, H, bias=False, hyper_size=NH, embedding_size=NZ, layer_norm=True)
    assert ref_nb.bias_ih is None and m_nb.cells[0].bias_ih is None
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "ln_weight", "ln_bias", "ln_cell_weight", "ln_cell_bias"):
            getattr(ref_nb, name)[0].normal_()
            getattr(m_nb.cells[0], name).copy_(getattr(ref_nb, name)[0])
    x = torch.randn(4, 2, I)
    torch.testing.assert_close(m_nb(x)[0], ref_nb(x)[0])  # scalings start at exactly 1


def test_layer_norm_lstm_interface_unbatched_state_and_errors():
    torch.manual_seed(10)
    m = LayerNormLSTM(I, H, num_layers=2)
    with torch.no_grad():
        for b in m.bias_ih:
            b.normal_()
    x = torch.randn(5, 3, I)
    h0, c0 = torch.randn(2, 3, H), torch.randn(2, 3, H)
    out, (h, c) = m(x, (h0, c0))
    assert out.shape == (5, 3, H) and h.shape == c.shape == (2, 3, H)
    out_u, (h_u, c_u) = m(x[:, 1], (h0[:, 1], c0[:, 1]))  # unbatched (T, I), state (L, H)
    assert out_u.shape == (5, H) and h_u.shape == (2, H)
    torch.testing.assert_close(out_u, out[:, 1])
    torch.testing.assert_close(c_u, c[:, 1])
    out1, st = m(x[:2], (h0, c0))  # continuation
    torch.testing.assert_close(torch.cat([out1, m(x[2:], st)[0]]), out)
    with pytest.raises(ShapeError, match="at least one step"):
        m(torch.randn(0, 3, I))
    with pytest.raises(HDTypeError, match="Tensor"):
        m(x.tolist())
    with pytest.raises(HDTypeError, match="PackedSequence"):
        m(pack_sequence([torch.randn(3, I), torch.randn(2, I)]))
    with pytest.raises(ShapeError, match="input_size=5"):
        m(torch.randn(5, 3, I + 1))
    with pytest.raises(ShapeError, match="state h0"):
        m(x, (torch.zeros(2, 4, H), c0))
    with pytest.raises(ShapeError, match=r"state c0 must be \(2, 7\)"):
        m(x[:, 0], (h0[:, 0], c0))
    with pytest.raises(HDTypeError, match="tuple"):
        m(x, h0)
    with pytest.raises(HDTypeError, match="dropout"):
        LayerNormLSTM(I, H, num_layers=2, dropout="0.1")
    with pytest.warns(UserWarning, match="num_layers=1"):
        LayerNormLSTM(I, H, dropout=0.3)


def test_no_bias_matches_reference_without_bias_terms():
    torch.manual_seed(2)
    m = HyperLSTM(I, H, bias=False, hyper_size=NH, embedding_size=NZ)
    cell = m.cells[0]
    assert cell.bias_ih is None and cell.weight_db is None and cell.weight_z.shape == (2 * 4 * NZ, NH)
    ref = nn.LSTM(I, H, bias=False)
    with torch.no_grad():
        cell.weight_ih.copy_(ref.weight_ih_l0)
        cell.weight_hh.copy_(ref.weight_hh_l0)
    x = torch.randn(4, 2, I)
    torch.testing.assert_close(m(x)[0], ref(x)[0])  # scalings start at exactly 1


def test_state_shapes_and_continuation():
    torch.manual_seed(3)
    m = HyperLSTM(I, H, num_layers=3, hyper_size=NH, embedding_size=NZ, layer_norm=True)
    x = torch.randn(8, 2, I)
    out, (h, c) = m(x)
    assert out.shape == (8, 2, H)
    assert h.shape == c.shape == (3, 2, H + NH) == (3, 2, m.state_size)
    torch.testing.assert_close(h[-1, :, :H], out[-1])
    out1, state = m(x[:5])
    out2, (h2, c2) = m(x[5:], state)
    torch.testing.assert_close(torch.cat([out1, out2]), out)
    torch.testing.assert_close(h2, h)
    torch.testing.assert_close(c2, c)
    # a main-only state (nn.LSTM-shaped) starts the hyper state at zero
    zero = torch.zeros(3, 2, H)
    torch.testing.assert_close(m(x, (zero, zero))[0], out)


def test_batch_first_both_ways_and_unbatched():
    torch.manual_seed(4)
    a = HyperLSTM(I, H, num_layers=2, hyper_size=NH, embedding_size=NZ)
    b = HyperLSTM(I, H, num_layers=2, hyper_size=NH, embedding_size=NZ, batch_first=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(6, 3, I)  # (T, B, I)
    out_a, (h_a, _) = a(x)
    out_b, (h_b, _) = b(x.transpose(0, 1).contiguous())
    assert out_b.shape == (3, 6, H)
    torch.testing.assert_close(out_b.transpose(0, 1), out_a)
    torch.testing.assert_close(h_b, h_a)
    out_u, (h_u, c_u) = a(x[:, 0])  # unbatched (T, I)
    assert out_u.shape == (6, H) and h_u.shape == c_u.shape == (2, H + NH)
    torch.testing.assert_close(out_u, out_a[:, 0])
    torch.testing.assert_close(a(x[:, 0], (h_u, c_u))[0], a(x[:, 0:1], (h_u[:, None], c_u[:, None]))[0][:, 0])


def test_variable_batch_each_sample_independent():
    torch.manual_seed(5)
    m = HyperLSTM(I, H, num_layers=2, hyper_size=NH, embedding_size=NZ, layer_norm=True)
    x = torch.randn(5, 7, I)
    full = m(x)[0]
    for B in (1, 3, 7):
        torch.testing.assert_close(m(x[:, :B])[0], full[:, :B])
    torch.testing.assert_close(m(x[:, 4:5])[0], full[:, 4:5])


def test_cell_step_equals_layer():
    torch.manual_seed(6)
    m = HyperLSTM(I, H, hyper_size=NH, embedding_size=NZ)
    cell = m.cells[0]
    x = torch.randn(4, 2, I)
    out, (h_n, c_n) = m(x)
    state = None
    for t in range(4):
        state = cell(x[t], state)
        torch.testing.assert_close(state[0][:, :H], out[t])
    torch.testing.assert_close(state[0], h_n[0])
    torch.testing.assert_close(state[1], c_n[0])
    h1, c1 = cell(x[0, 0])  # unbatched step
    assert h1.shape == c1.shape == (H + NH,)
    torch.testing.assert_close(h1, cell(x[0, :1])[0][0])


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(7)
    m = HyperLSTM(I, H, num_layers=2, dropout=0.5, hyper_size=NH, embedding_size=NZ)
    x = torch.randn(4, 3, I)
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0])
    m.train()
    assert not torch.allclose(m(x)[0], m(x)[0])
    # never on the last layer's output: one layer in training mode is deterministic (nn.LSTM warns too)
    with pytest.warns(UserWarning, match="num_layers=1"):
        one = HyperLSTM(I, H, num_layers=1, dropout=0.5, hyper_size=NH, embedding_size=NZ)
    one.train()
    out_a, (h_a, c_a) = one(x)
    out_b, (h_b, c_b) = one(x)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(h_a, h_b)
    torch.testing.assert_close(c_a, c_b)


def test_from_lstm_copies_weights_and_refuses_what_it_cannot_copy():
    torch.manual_seed(11)
    ref = nn.LSTM(I, H, num_layers=2, dropout=0.25, batch_first=True)
    m = HyperLSTM.from_lstm(ref, hyper_size=NH, embedding_size=NZ)
    assert (m.num_layers, m.dropout, m.batch_first, m.bias) == (2, 0.25, True, True)
    x = torch.randn(3, 6, I)
    ref.eval(), m.eval()
    out, (h, _) = m(x)
    out_r, (h_r, _) = ref(x)
    torch.testing.assert_close(out, out_r)  # scalings start at 1: the same function, untrained
    torch.testing.assert_close(h[..., :H], h_r)
    nb = nn.LSTM(I, H, bias=False)
    torch.testing.assert_close(HyperLSTM.from_lstm(nb, hyper_size=NH)(x[0])[0], nb(x[0])[0])
    with pytest.raises(HDTypeError, match="from_lstm"):
        HyperLSTM.from_lstm(nn.GRU(I, H))
    with pytest.raises(ConfigError, match="bidirectional"):
        HyperLSTM.from_lstm(nn.LSTM(I, H, bidirectional=True))


def test_learns_a_small_task():
    torch.manual_seed(8)
    m = HyperLSTM(3, 16, hyper_size=8, embedding_size=4, batch_first=True)
    head = nn.Linear(16, 1)
    opt = torch.optim.Adam([*m.parameters(), *head.parameters()], lr=1e-2)
    x = torch.randn(32, 6, 3)
    y = x[:, :, 0].cumsum(1)[:, -1:]  # needs memory over the whole sequence
    losses = []
    for _ in range(40):
        loss = (head(m(x)[0][:, -1]) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_bad_inputs_raise_project_errors():
    m = HyperLSTM(I, H, num_layers=2, hyper_size=NH, embedding_size=NZ)
    x = torch.randn(4, 3, I)
    with pytest.raises(ShapeError, match="input_size=5"):
        m(torch.randn(4, 3, I + 1))
    with pytest.raises(ShapeError):
        m(torch.randn(4, 3, 2, I))
    with pytest.raises(ShapeError, match="at least one step"):
        m(torch.randn(0, 3, I))
    with pytest.raises(ShapeError, match="state h0"):
        m(x, (torch.zeros(1, 3, H + NH), torch.zeros(2, 3, H + NH)))
    with pytest.raises(ShapeError, match="state c0"):
        m(x, (torch.zeros(2, 3, H + NH), torch.zeros(2, 4, H + NH)))
    with pytest.raises(ShapeError):
        m(x, (torch.zeros(2, 3, H + 1), torch.zeros(2, 3, H + 1)))
    with pytest.raises(HDTypeError, match="tuple"):
        m(x, torch.zeros(2, 3, H + NH))
    with pytest.raises(HDTypeError, match="PackedSequence"):
        m(pack_sequence([torch.randn(3, I), torch.randn(2, I)]))
    with pytest.raises(ShapeError):
        m.cells[0](torch.randn(3, I + 2))
    with pytest.raises(ShapeError, match="state h"):
        m.cells[0](torch.randn(3, I), (torch.zeros(2, H), torch.zeros(2, H)))
    with pytest.raises(ConfigError, match="HyperLSTM: hidden_size must be > 0"):
        HyperLSTM(I, 0)
    with pytest.raises(ConfigError, match="num_layers"):
        HyperLSTM(I, H, num_layers=0)
    with pytest.raises(ConfigError, match="dropout"):
        HyperLSTM(I, H, dropout=1.5)
    with pytest.raises(HDTypeError, match="HyperLSTM: dropout"):
        HyperLSTM(I, H, num_layers=2, dropout="0.5")
    with pytest.raises(HDTypeError, match="dropout"):
        HyperLSTM(I, H, num_layers=2, dropout=True)
    with pytest.raises(HDTypeError, match="hyper_size"):
        HyperLSTM(I, H, hyper_size=2.5)


def test_one_layer_dropout_warning_names_the_callers_line():
    # the shared constructor helper must not shift the warning onto library code
    with pytest.warns(UserWarning) as record:
        HyperLSTM(I, H, dropout=0.3)
        LayerNormLSTM(I, H, dropout=0.3)
    assert len(record) == 2 and all(r.filename == __file__ for r in record)


def test_state_errors_name_the_layout():
    with pytest.raises(ShapeError, match=r"state h0 must be \(2, 3, 15\) or \(2, 3, 7\) \(num_layers, batch, hidden_size \+ hyper_size\)"):
        HyperLSTM(I, H, num_layers=2, hyper_size=8)(torch.randn(4, 3, I), (torch.zeros(2, 3, 9), torch.zeros(2, 3, 15)))
    with pytest.raises(ShapeError, match=r"state c must be \(15,\) or \(7,\)"):
        HyperLSTMCell(I, H, hyper_size=8)(torch.randn(I), (torch.zeros(H), torch.zeros(2, 15)))
