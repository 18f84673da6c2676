"""hd.Implicit: NeuMeta's coordinate MLP, checked against a row-by-row reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd


class SmallCNN(nn.Module):
    """A LeNet-like family: conv 3x3 1->w, conv 5x5 w->2w, linear 2w->3."""

    def __init__(self, w: int = 4) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv_2 = nn.Conv2d(w, 2 * w, 5, padding=2)
        self.linear = nn.Linear(2 * w, 3)

    def forward(self, x):
        x = F.relu(self.conv_1(x))
        x = F.relu(self.conv_2(x)).mean((2, 3))
        return self.linear(x)


class TwoLayer(nn.Module):
    def __init__(self, h1: int, h2: int) -> None:
        super().__init__()
        self.a = nn.Linear(4, h1)
        self.b = nn.Linear(h1, h2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def model_for(target: nn.Module, **kw) -> hd.HyperDNN:
    torch.manual_seed(0)
    return hd.HyperDNN(target, outputs=hd.Implicit(**kw), body=hd.MLP(hidden=(16, 16)))


def reference_weights(out, spec, z=None) -> dict[str, torch.Tensor]:
    """NeuMeta's math written row by row with Python loops (the independent reference)."""
    result = {}
    T = len(spec.params)
    fan_in = {}  # module -> fan-in of its weight (a bias is scaled like its layer's weight)
    for p in spec.params:
        if len(p.shape) >= 2:
            fan_in[p.name.rpartition(".")[0]] = math.prod(p.shape[1:])
    freqs = [math.pi * 2.0**k for k in range(len(out.freqs))]
    for t, p in enumerate(spec.params):
        shape = p.shape
        n_out = shape[0]
        n_in = shape[1] if len(shape) >= 2 else 1
        kk = math.prod(shape[2:]) if len(shape) >= 2 else 1
        rows = []
        for o in range(n_out):
            for i in range(n_in):
                u = [t / T, o / n_out, i / n_in, T / out.norm, n_out / out.norm, n_in / out.norm]
                enc = list(u) + [math.sin(f * c) for c in u for f in freqs] + [math.cos(f * c) for c in u for f in freqs]
                token = torch.tensor(enc, dtype=torch.float64)
                if z is not None:
                    token = torch.cat([z.double(), token])
                h = out.body.double()(token)
                w = out.head.double()(h)
                start = out.kernel // 2 - kk // 2
                w = w[start:start + kk]
                fan = fan_in.get(p.name.rpartition(".")[0])
                if fan is not None:
                    w = w / math.sqrt(fan)
                rows.append(w)
        result[p.name] = torch.stack(rows).reshape(shape)
        out.float()
    return result


def assert_all_close(ref: dict, got: dict) -> None:
    for k in ref:
        torch.testing.assert_close(got[k].double(), ref[k], rtol=1e-5, atol=1e-6)


def test_matches_row_by_row_reference():
    model = model_for(SmallCNN(3), num_freqs=3, chunk_size=5)
    out = model.hypernetwork.outputs
    # The encoding orders features [u, sin(f_k u_j) for j, k, cos(...)]; the reference builds the
    # same order, so the body sees identical tokens.
    got = model.weights()
    ref = reference_weights(out, model.spec)
    assert_all_close(ref, got)


@pytest.mark.parametrize("width", [1, 2, 5, 9, 16])
def test_shapes_for_arbitrary_widths(width):
    model = model_for(SmallCNN(4))
    target = SmallCNN(width)
    theta = model.weights(target=target)
    assert {k: tuple(v.shape) for k, v in theta.items()} == {n: tuple(p.shape) for n, p in target.named_parameters()}
    assert model(torch.randn(2, 1, 6, 6), target=target).shape == (2, 3)


def test_same_coordinate_same_weight_whatever_the_rest_of_the_target():
    model = model_for(TwoLayer(6, 5))
    # Layer a has the same shape (6, 4) in both targets; the rest differs. Its coordinates
    # (t/T, o/n_out, i/n_in, T/norm, n_out/norm, n_in/norm) are identical, so are its weights.
    w1 = model.weights(target=TwoLayer(6, 3))
    w2 = model.weights(target=TwoLayer(6, 11))
    torch.testing.assert_close(w1["a.weight"], w2["a.weight"], rtol=0, atol=0)
    torch.testing.assert_close(w1["a.bias"], w2["a.bias"], rtol=0, atol=0)
    assert w1["b.weight"].shape != w2["b.weight"].shape


def test_chunk_size_does_not_change_the_weights():
    small = model_for(SmallCNN(5), chunk_size=3)
    large = model_for(SmallCNN(5), chunk_size=100_000)
    large.load_state_dict(small.state_dict())
    a, b = small.weights(), large.weights()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    with torch.no_grad():  # the preallocated-buffer path gives the same numbers as the autograd path
        c = small.weights()
    for k in a:
        torch.testing.assert_close(a[k], c[k])


def test_chunks_bound_the_rows_the_body_sees_and_one_buffer_holds_the_result():
    model = model_for(SmallCNN(8), chunk_size=7)
    out = model.hypernetwork.outputs
    seen = []
    handle = out.body.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-2]))
    with torch.no_grad():
        theta = model.weights(target=SmallCNN(13))
    handle.remove()
    assert max(seen) <= 7
    rows = sum(p.shape[0] * (p.shape[1] if p.dim() >= 2 else 1) for p in SmallCNN(13).parameters())
    assert sum(seen) == rows
    # Without autograd every tensor is a view of one (P,) buffer: no second copy of theta.
    ptrs = {t.untyped_storage().data_ptr() for t in theta.values()}
    assert len(ptrs) == 1
    assert theta["conv_1.weight"].untyped_storage().nbytes() == 4 * sum(p.numel() for p in SmallCNN(13).parameters())


def test_gradients_reach_the_hypernetwork():
    model = model_for(SmallCNN(4))
    loss = model(torch.randn(3, 1, 6, 6), target=SmallCNN(7)).square().mean()
    loss.backward()
    grads = [p.grad for p in model.hypernetwork.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_coordinate_noise_only_in_training_mode():
    model = model_for(SmallCNN(4), coord_noise=1.0)
    model.eval()
    a, b = model.weights(), model.weights()
    torch.testing.assert_close(a["conv_2.weight"], b["conv_2.weight"], rtol=0, atol=0)
    model.train()
    torch.manual_seed(1)
    c = model.weights()
    assert not torch.equal(a["conv_2.weight"], c["conv_2.weight"])


def test_scales():
    from hyperdnn.outputs.implicit import tensor_scales
    from hyperdnn.target import prepare_target

    _, spec, _ = prepare_target(SmallCNN(4))  # conv 1->4 3x3, conv 4->8 5x5, linear 8->3
    fans = [9, 9, 100, 100, 8, 8]
    assert tensor_scales(spec, "sqrt-fan-in") == pytest.approx([1 / math.sqrt(f) for f in fans])
    assert tensor_scales(spec, "n-in") == pytest.approx([1, 1, 1 / 4, 1, 1 / 8, 1])
    assert tensor_scales(spec, "none") == [1.0] * 6


def test_initial_weights_have_pytorchs_init_scale_at_every_width():
    model = model_for(SmallCNN(8))
    for width in (3, 8, 20):
        theta = model.weights(target=SmallCNN(width))
        w = theta["conv_2.weight"]
        expected = 1 / math.sqrt(3 * width * 25)  # kaiming-uniform(a=sqrt 5): std 1 / sqrt(3 fan_in)
        assert 0.5 * expected < float(w.detach().std()) < 2 * expected


def test_norm_and_kernel_are_fixed_at_build():
    cfg = hd.Implicit()
    hd.HyperDNN(SmallCNN(4), outputs=cfg, body=hd.MLP(hidden=(8,)))
    assert cfg.norm == 8.0 and cfg.kernel == 25  # largest size (2w = 8), largest kernel (5x5)


def test_kernel_larger_than_the_head_is_refused():
    from hyperdnn.target import prepare_target

    model = model_for(TwoLayer(3, 3))  # head makes 1 number per row
    _, spec, _ = prepare_target(SmallCNN(2))
    with pytest.raises(hd.ShapeError, match=r"Implicit: target parameter 'conv_1.weight'.*kernel=9"):
        model.hypernetwork.outputs.generate(torch.zeros(0), spec)


def test_a_token_mixing_body_is_refused():
    with pytest.raises(hd.ConfigError, match="Implicit: the body must treat tokens independently"):
        hd.HyperDNN(SmallCNN(2), outputs=hd.Implicit(), body=hd.RNN(hidden=8))


@pytest.mark.parametrize("bad", [dict(chunk_size=0), dict(num_freqs=-1), dict(coord_noise=-0.1), dict(norm=0),
                                 dict(kernel=0), dict(scale="fan-in")])
def test_bad_options(bad):
    with pytest.raises(hd.ConfigError, match="Implicit: "):
        hd.Implicit(**bad)
