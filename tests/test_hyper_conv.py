"""Static hyper-conv (Ha et al. 2016, sec. 3.1) through the core's component-wise output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.layers.hyper_conv import conv_kernels, hyper_conv


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _net(c_mid: int = 16, c_out: int = 16, k: int = 7) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, c_mid, 5, padding=2), nn.ReLU(), nn.Conv2d(c_mid, c_out, k, padding=k // 2), nn.Flatten()
    )


def _hand_tiles(model, key: str) -> torch.Tensor:
    """Every tile the generator makes, written from the paper's two equations; (n, t_out, t_in, kh, kw)."""
    out = model.hypernetwork.outputs
    w_in, w_out = out.w_in[key], out.w_out[key]
    t_out, t_in, k = out.group_shapes[key]
    z = out.tile_embeddings  # (n_tiles, N_z); the identity body passes them through
    a = (z @ w_in.weight.T + w_in.bias).view(z.shape[0], t_in, -1)  # (n, t_in, d)
    kern = (a @ w_out.weight.T + w_out.bias).view(z.shape[0], t_in, t_out, *k)  # (n, t_in, t_out, kh, kw)
    return kern.transpose(1, 2)


def test_paper_mnist_counts():
    torch.manual_seed(0)
    model = hyper_conv(_net(), generate="2.weight")
    s = model.summary()
    n_hyper = sum(p.numel() for p in model.hypernetwork.parameters())
    assert n_hyper == 4240 + 4  # generator + one 4-number embedding, as in the paper
    assert model.weights()["2.weight"].numel() == 12544
    assert "12,544" in str(s) and "4,244" in str(s)


def test_equals_plain_conv_with_the_generated_kernel_copied_in():
    torch.manual_seed(1)
    net = _net()
    model = hyper_conv(net)  # both conv kernels generated, different tile shapes
    assert conv_kernels(net) == ["0.weight", "2.weight"]
    theta = model.weights()
    plain = _net()
    state = {**{n: p for n, p in model.target.named_parameters() if n not in theta}, **theta}
    plain.load_state_dict({n: t.detach() for n, t in state.items()})
    x = torch.randn(3, 1, 12, 12)
    torch.testing.assert_close(model(x), plain(x))
    # gradients reach the generator and the embeddings through the kernel
    model(x).square().mean().backward()
    grads = [p.grad for p in model.hypernetwork.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_kernel_is_made_by_the_two_layer_generator():
    torch.manual_seed(2)
    model = hyper_conv(_net(), generate="2.weight")
    (key,) = model.hypernetwork.outputs.w_in.keys()
    tile = _hand_tiles(model, key)[0]
    torch.testing.assert_close(model.weights()["2.weight"], tile)


@pytest.mark.parametrize("c_mid,c_out", [(32, 48), (16, 48), (20, 36)])
def test_tiling_for_non_square_channel_counts(c_mid, c_out):
    torch.manual_seed(3)
    model = hyper_conv(_net(c_mid, c_out, k=3), tile=(16, 16), generate="2.weight")
    kernel = model.weights()["2.weight"]
    assert kernel.shape == (c_out, c_mid, 3, 3)
    n_o, n_i = -(-c_out // 16), -(-c_mid // 16)
    assert model.hypernetwork.outputs.num_tiles == n_o * n_i
    tiles = _hand_tiles(model, "16x16x3x3")  # (n_o * n_i, 16, 16, 3, 3)
    # each block of the kernel is one generated tile (trimmed at the edges), each tile used once
    used = []
    for o in range(n_o):
        for i in range(n_i):
            block = kernel[16 * o : 16 * (o + 1), 16 * i : 16 * (i + 1)]
            hits = [j for j in range(tiles.shape[0]) if torch.allclose(tiles[j, : block.shape[0], : block.shape[1]], block)]
            assert len(hits) == 1
            used += hits
    assert sorted(used) == list(range(n_o * n_i))


def test_shared_generator_across_layers_with_the_same_tile():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(16, 16, 3), nn.Conv2d(16, 32, 3), nn.Conv2d(32, 16, 3))
    model = hyper_conv(net)
    outs = model.hypernetwork.outputs
    assert list(outs.w_out.keys()) == ["16x16x3x3"]  # one generator for all three kernels
    assert outs.num_tiles == 1 + 2 + 2


def test_errors():
    with pytest.raises(ConfigError, match="no Conv"):
        hyper_conv(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(ConfigError, match="hyper_conv: tile"):
        hyper_conv(_net(), tile=(0, 16))
    for bad in (16, (16,), (16, 16, 1), (16.0, 16), (True, 16), "16x16"):
        with pytest.raises(HDTypeError, match="hyper_conv: tile must be a pair of ints"):
            hyper_conv(_net(), tile=bad)
    with pytest.raises(HDTypeError, match="hyper_conv: target"):
        hyper_conv("not a module")
    with pytest.raises(ConfigError):
        hyper_conv(_net(), generate="nope.weight")
