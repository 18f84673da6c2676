"""LoGAH's low-rank decoder: every weight as ``A B^T`` with ``A`` and ``B`` made block by block.

A weight of shape ``(out, *rest)`` with ``in = prod(rest)`` is
``W = A B^T`` with ``A (out, r)`` and ``B (in, r)``. ``A`` is made of ``ceil(out / c)``
blocks of ``c`` rows, block ``j`` being ``MLP_A(e + code(j))`` reshaped to ``(c, r)``,
where ``code(j)`` is a fixed sinusoidal code of the block index (no parameters); ``B``
likewise with ``MLP_B``. Vectors are blocks of ``c`` numbers from ``MLP_V``. The
decoder's size is ``hidden * 2 c r`` whatever the layer widths, and a wide layer is
not a copy of a small one (the blocks differ by their codes).

LoGAH (Zhou et al. 2024, ``ghn3/nn.py::ConvDecoder3LoRA`` in Blackzxy/LoGAH) makes one
``(c, r)`` ``A`` and one ``B`` per tensor from an MLP to ``2 r x r`` and a linear map
``r -> c``, and tiles the product to wider layers as GHN-2 does; producing the blocks
from their index codes instead is this library's choice (documented in
docs/methods/graph.md). Convolution weights are ``(out, in k k)`` matrices (LoGAH:
``(c_out k, c_in k)``). The result is a :class:`~hyperdnn.factored.Factored` value, so
the target paths and the fan-in normalisation (its ``scale``) never form ``W`` unless
the module needs it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hyperdnn.errors import ConfigError
from hyperdnn.factored import Factored


def block_codes(n: int, dim: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Sinusoidal codes of the block indices ``0..n-1``, ``(n, dim)`` (Vaswani et al. 2017's table)."""
    pos = torch.arange(n, device=device, dtype=torch.float32).unsqueeze(1)  # (n, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    code = torch.zeros(n, dim, device=device)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return code.to(dtype or torch.float32)


class LowRankDecoder(nn.Module):
    """LoGAH-style low-rank decoder.

    Args:
        dim: node embedding width ``C``.
        rank: ``r`` of every predicted matrix.
        block: ``c``, rows of ``A``/``B`` (and numbers of a vector) per block.
        hidden: the MLPs' hidden width.

    Shapes: ``forward(e (C,), shape)`` -> :class:`Factored` with ``A (out, r)``, ``B (in, r)``
    for tensors of 2+ dimensions, a tensor of ``shape`` for vectors; raw (before fan-in
    normalisation).
    """

    def __init__(self, dim: int, rank: int = 8, block: int = 32, hidden: int = 64) -> None:
        super().__init__()
        if rank < 1 or block < 1:
            raise ConfigError(f"LowRankDecoder: rank and block must be >= 1 (got rank={rank}, block={block})")
        self.dim, self.rank, self.block = dim, rank, block

        def mlp(out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))

        self.mlp_a, self.mlp_b, self.mlp_v = mlp(block * rank), mlp(block * rank), mlp(block)

    def _blocks(self, mlp: nn.Module, e: Tensor, rows: int, width: int) -> Tensor:
        n = math.ceil(rows / self.block)
        x = e + block_codes(n, self.dim, device=e.device, dtype=e.dtype)  # (n, C)
        return mlp(x).reshape(n * self.block, width)[:rows]  # (rows, width)

    def forward(self, e: Tensor, shape: tuple[int, ...]) -> Tensor | Factored:
        if len(shape) <= 1:
            return self._blocks(self.mlp_v, e, math.prod(shape), 1).reshape(shape)
        a = self._blocks(self.mlp_a, e, shape[0], self.rank)  # (out, r)
        b = self._blocks(self.mlp_b, e, math.prod(shape[1:]), self.rank)  # (in, r)
        return Factored(a, b, tuple(shape))


class LoGAHDecoder(nn.Module):
    """LoGAH's low-rank decoder as the authors wrote it (``ConvDecoder3LoRA`` in Blackzxy/LoGAH's ``ghn3/nn.py``).

    ``M = MLP(e)`` viewed as ``(2r, r)`` (MLP ``C -> 4C -> 8C -> 2 r r``, ReLU between);
    ``Y = table(relu(M))`` with ``table = Linear(r, c_max)`` applied to every row, ``(2r, c_max)``;
    ``Y`` reshaped (row-major, as the authors' ``view``) to ``(2 c_max, r)``: ``A`` its first
    ``c_max`` rows, ``B`` the rest. Row ``i`` of ``A`` is thus a learned ``(r, r)`` slice of the
    table applied to one row of ``relu(M)``: the table is a learned basis of row patterns shared
    by every tensor. A weight takes ``A[:out]`` and ``B[:in]`` (tiled when ``out`` or ``in``
    exceeds ``c_max``, as LoGAH tiles). Vectors are the first column of a product, as LoGAH's
    ``n_dim=1`` path: ``v = A[:n] B[0]``. The size grows with ``c_max`` (``r c_max``), unlike
    :class:`LowRankDecoder`'s.

    Args:
        dim: node embedding width ``C``.
        rank: ``r``.
        max_rows: ``c_max`` (LoGAH's ``max_ck_lora``; 32768 by default there).

    Shapes: ``forward(e (C,), shape)`` -> :class:`Factored` (``A (out, r)``, ``B (in, r)``) or a vector.
    """

    def __init__(self, dim: int, rank: int = 16, max_rows: int = 512) -> None:
        super().__init__()
        if rank < 1 or max_rows < 1:
            raise ConfigError(f"LoGAHDecoder: rank and max_rows must be >= 1 (got rank={rank}, max_rows={max_rows})")
        self.rank, self.max_rows = rank, max_rows
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, 8 * dim), nn.ReLU(),
                                 nn.Linear(8 * dim, 2 * rank * rank))
        self.table = nn.Linear(rank, max_rows)

    def _factors(self, e: Tensor) -> tuple[Tensor, Tensor]:
        r, c = self.rank, self.max_rows
        y = self.table(torch.relu(self.mlp(e).view(2 * r, r)))  # (2r, c)
        ab = y.reshape(2 * c, r)
        return ab[:c], ab[c:]

    def _rows(self, f: Tensor, n: int) -> Tensor:
        return f[:n] if n <= self.max_rows else f.repeat(math.ceil(n / self.max_rows), 1)[:n]

    def forward(self, e: Tensor, shape: tuple[int, ...]) -> Tensor | Factored:
        a, b = self._factors(e)
        if len(shape) <= 1:
            n = math.prod(shape)
            return (self._rows(a, n) @ b[0]).reshape(shape)
        return Factored(self._rows(a, shape[0]), self._rows(b, math.prod(shape[1:])), tuple(shape))
