"""GHN-2's decoder: one fixed-size block per tensor, sliced and tiled to the tensor's shape.

A node embedding ``e`` (C,) goes through an MLP to a block of shape
``(c_out, c_in, k, k)``; a tensor of shape ``(out, in, kh, kw)`` takes the block's
``[:out, :in, :kh, :kw]`` corner and repeats it along the channel dimensions until it
covers ``out x in`` (ppuda's ``GHN._tile_params``; a Linear weight is the ``[:, :, 0, 0]``
plane). Vectors (biases, norm scales) come from a second MLP to ``max(c_out, c_in)``
numbers, tiled the same way. The decoder's size is ``hidden * c_out * c_in * k * k``:
it grows with the block, which must be large for wide layers not to be mostly copies
(the cost LoGAH removes). Knyazev et al. 2021, ``ppuda/ghn/decoder.py`` (MLPDecoder).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from hyperdnn.errors import ConfigError


def tile_to(block: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``block`` sliced to ``shape`` where it is larger and repeated along every dimension where it is smaller.

    Args:
        block: ``(b_0, ..., b_k)`` with ``k + 1 == len(shape)``.
        shape: the target shape.

    Returns:
        a tensor of ``shape`` with ``out[i_0, ..., i_k] = block[i_0 % b_0, ..., i_k % b_k]``.
    """
    block = block[tuple(slice(0, s) for s in shape)]
    reps = [math.ceil(s / b) for s, b in zip(shape, block.shape)]
    if any(r > 1 for r in reps):
        block = block.repeat(*reps)[tuple(slice(0, s) for s in shape)]
    return block


class TiledDecoder(nn.Module):
    """GHN-2's tiled decoder.

    Args:
        dim: node embedding width ``C``.
        block: ``(c_out, c_in, k, k)`` of the predicted block (GHN-2 on CIFAR-10: (64, 64, 3, 3)).
        hidden: the MLP's hidden width (GHN-2: ``2 C``).

    Shapes: ``forward(e (C,), shape) -> Tensor of shape``, raw (before fan-in normalisation).
    """

    def __init__(self, dim: int, block: tuple[int, int, int, int] = (32, 32, 3, 3), hidden: int = 64) -> None:
        super().__init__()
        if len(block) != 4 or min(block) < 1:
            raise ConfigError(f"TiledDecoder: block must be 4 positive sizes (c_out, c_in, k, k) (got {block})")
        self.block = tuple(block)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(block)))
        self.mlp_1d = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, max(block[:2])))

    def forward(self, e: Tensor, shape: tuple[int, ...]) -> Tensor:
        if len(shape) <= 1:
            return tile_to(self.mlp_1d(e), shape or (1,)).reshape(shape)
        if len(shape) > 4:
            raise ConfigError(f"TiledDecoder: tensors of at most 4 dimensions are predicted (got shape {shape})")
        w = self.mlp(e).view(self.block)  # (c_out, c_in, k, k)
        if len(shape) == 2:
            w = w[:, :, 0, 0]
        elif len(shape) == 3:
            w = w[:, :, :, 0]
        return tile_to(w, shape)
