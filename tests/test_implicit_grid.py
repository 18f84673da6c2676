"""Implicit(encoding="grid"): each tensor a grid sampled at any width by bilinear interpolation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.errors import CheckpointError, ConfigError, ShapeError
from hyperdnn.outputs.implicit_grid import interpolation


class SmallCNN(nn.Module):
    def __init__(self, w: int = 4) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv_2 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.linear = nn.Linear(2 * w, 3)

    def forward(self, x):
        x = F.relu(self.conv_1(x))
        x = F.relu(self.conv_2(x)).mean((2, 3))
        return self.linear(x)


X = torch.randn(5, 1, 6, 6)


def grid_model(target=None, **kw):
    torch.manual_seed(0)
    return hd.HyperDNN(target if target is not None else SmallCNN(4), outputs=hd.Implicit(encoding="grid", **kw))


def sample_by_hand(grid: torch.Tensor, n_out: int, n_in: int) -> torch.Tensor:
    """The bilinear sample of ``grid`` (R_out, R_in, k) at ``(n_out, n_in)``, one weight at a time."""
    r_out, r_in, k = grid.shape

    def where(j, n, r):
        x = min(max((j + 0.5) * r / n - 0.5, 0.0), r - 1.0)
        lo = min(int(x), max(r - 2, 0))
        return lo, min(lo + 1, r - 1), x - lo

    out = torch.empty(n_out, n_in, k)
    for o in range(n_out):
        a0, a1, fa = where(o, n_out, r_out)
        for i in range(n_in):
            b0, b1, fb = where(i, n_in, r_in)
            v = ((1 - fa) * (1 - fb) * grid[a0, b0] + fa * (1 - fb) * grid[a1, b0]
                 + (1 - fa) * fb * grid[a0, b1] + fa * fb * grid[a1, b1])
            out[o, i] = v * (r_in / n_in)
    return out


def test_the_construction_width_is_the_construction_target():
    target = SmallCNN(4)
    model = grid_model(target).eval()
    theta = model.weights()
    for name, p in target.named_parameters():
        assert torch.equal(theta[name], p)
    torch.testing.assert_close(model(X), target(X))
    assert sum(p.numel() for p in model.hypernetwork.parameters()) == sum(p.numel() for p in target.parameters())


@pytest.mark.parametrize("width", [2, 3, 5, 7, 9])
def test_other_widths_against_a_weight_by_weight_loop(width):
    model = grid_model().eval()
    grids = {p.name: g.detach() for p, g in zip(model.hypernetwork.outputs.spec.params, model.hypernetwork.outputs.grids)}
    theta = model.weights(target=SmallCNN(width))
    for name, p in SmallCNN(width).named_parameters():
        assert theta[name].shape == p.shape
        shape = p.shape
        n_in = shape[1] if len(shape) > 1 else 1
        expected = sample_by_hand(grids[name], shape[0], n_in).reshape(shape)
        torch.testing.assert_close(theta[name], expected, rtol=1e-5, atol=1e-6)


def test_twice_the_inputs_halve_each_weight():
    """A kernel constant along the inputs: at any input width a constant input gives the same sum."""
    model = grid_model(nn.Linear(4, 3)).eval()
    weight = torch.tensor([[1.0] * 4, [2.0] * 4, [-3.0] * 4])
    model.hypernetwork.outputs.load_weights({"weight": weight, "bias": torch.zeros(3)})
    for n_in in (2, 4, 8, 11):
        theta = model.weights(target=nn.Linear(n_in, 3))
        torch.testing.assert_close(theta["weight"], weight[:, :1].expand(3, n_in) * 4 / n_in)
        torch.testing.assert_close(theta["weight"] @ torch.ones(n_in), weight @ torch.ones(4))


def test_chunked_generation_equals_one_pass():
    model = grid_model(chunk_size=3)
    with torch.no_grad():
        chunked = model.weights(target=SmallCNN(7))
    whole = model.weights(target=SmallCNN(7))  # autograd on: one block per tensor
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name].detach())


def test_gradients_reach_the_grids_at_every_width():
    model = grid_model()
    model(X, target=SmallCNN(6)).square().mean().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in model.hypernetwork.outputs.grids)


def test_interpolation_covers_the_grid():
    lo, up, frac = interpolation(4, 4, 0.0, torch.device("cpu"), torch.float32)
    assert lo.tolist() == [0, 1, 2, 2] and up.tolist() == [1, 2, 3, 3] and frac.tolist() == [0.0, 0.0, 0.0, 1.0]
    lo, up, frac = interpolation(1, 5, 0.0, torch.device("cpu"), torch.float32)
    assert (lo.item(), up.item(), frac.item()) == (2, 3, 0.0)  # one sample: the grid's centre


def test_coordinate_noise_only_in_training():
    model = grid_model(coord_noise=1.0)
    model.eval()
    a, b = model.weights(target=SmallCNN(5)), model.weights(target=SmallCNN(5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    model.train()
    c = model.weights(target=SmallCNN(5))
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_save_load_then_a_width_never_seen(tmp_path):
    model = grid_model(coord_noise=0.5)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for w in (4, 6):
        model(X, target=SmallCNN(w)).square().mean().backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    hd.save(model, tmp_path / "run")
    expected = model(X, target=SmallCNN(13))
    loaded = hd.load(tmp_path / "run", target=SmallCNN(4)).eval()
    torch.testing.assert_close(loaded(X, target=SmallCNN(13)), expected)
    assert loaded.configs["outputs"].encoding == "grid"
    # the grids have the construction target's sizes: loading around another width is refused, not resampled
    with pytest.raises(CheckpointError, match="grids.0"):
        hd.load(tmp_path / "run", target=SmallCNN(10))


def test_load_weights_sets_the_grids_and_checks_shapes():
    model = grid_model().eval()
    other = SmallCNN(4)
    model.hypernetwork.outputs.load_weights(dict(other.named_parameters()))
    torch.testing.assert_close(model(X), other(X))
    with pytest.raises(ShapeError, match="conv_1.weight"):
        model.hypernetwork.outputs.load_weights(dict(SmallCNN(5).named_parameters()))


def test_refuses_a_condition_and_another_depth():
    with pytest.raises(ConfigError, match="takes no condition"):
        hd.HyperDNN(SmallCNN(4), inputs=hd.TaskEmbedding(2, 3), outputs=hd.Implicit(encoding="grid"))

    class Deeper(SmallCNN):
        def __init__(self, w: int = 4) -> None:
            super().__init__(w)
            self.extra = nn.Linear(3, 3)

    with pytest.raises(ShapeError, match="encoding='fourier'"):
        grid_model().weights(target=Deeper(4))
