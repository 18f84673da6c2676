"""The grid encoding of implicit outputs: each tensor a continuous function sampled by interpolation.

``hd.Implicit(encoding="grid")`` stores, per generated tensor ``t`` of the
construction target, a grid ``G_t`` of shape ``(R_out, R_in, k)`` (the
tensor's own output size, input size and kernel numbers per row; initialised
with the construction target's tensor, so a hypernetwork built on a trained
network starts as that network). The weight of output index ``o`` and input
index ``i`` of a member of width ``(n_out, n_in)`` is the bilinear interpolation
of ``G_t`` at the normalised coordinates

    x_o = (o + 1/2) R_out / n_out - 1/2,   x_i = (i + 1/2) R_in / n_in - 1/2

(clamped to the grid), times ``R_in / n_in``: a layer's sum over its inputs is a
Riemann sum of the same continuous kernel at every width, so the
pre-activations keep their scale when the width changes (NeuMeta's ``1 / n_in``,
taken relative to the construction width so that, at that width, the weights
are ``G_t`` exactly). A wider or narrower member is a finer or coarser sampling
of the same functions; a channel order in which neighbours are alike (NeuMeta's
permutation, :func:`hyperdnn.methods.any_width.smooth_permutation`) is what
makes that sampling a good network.

Why this exists beside the Fourier-feature MLP: on any-width-mnist the MLP's
filters of a layer start nearly identical and its cross-entropy did not leave
ln 10 within this CPU's budget (docs/methods/any_width.md); the grid starts as
the (permuted) reference and trains with the step sizes of a plain network.
It takes no condition (the grid is the function), and it serves members of the
construction target's depth and kernel sizes only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..dynamic_target import DynamicOutput
from ..errors import ShapeError
from ..target import TargetSpec
from .base import OutputModule, split_flat
from .implicit import _rows_of as rows_of


def interpolation(n: int, grid: int, noise: float, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Where ``n`` evenly spaced samples fall on a grid of ``grid`` nodes.

    Returns ``(lower, upper, frac)``, each ``(n,)``: sample ``j`` is
    ``(1 - frac) G[lower] + frac G[upper]``. ``noise`` > 0 moves each index by
    ``U(-noise/2, noise/2)`` index units first (NeuMeta's coordinate noise).
    """
    j = torch.arange(n, device=device, dtype=dtype)
    if noise > 0:
        j = j + (torch.rand(n, device=device, dtype=dtype) - 0.5) * noise
    x = ((j + 0.5) * (grid / n) - 0.5).clamp(0, grid - 1)
    lower = x.floor().clamp(max=max(grid - 2, 0)).long()
    upper = (lower + 1).clamp(max=grid - 1)
    return lower, upper, x - lower.to(dtype)


class GridImplicitOutput(OutputModule, DynamicOutput):
    """Built grid-encoded implicit strategy (see the module docstring)."""

    def __init__(self, spec: TargetSpec, initial: dict[str, Tensor], chunk_size: int, coord_noise: float) -> None:
        super().__init__()
        self.spec, self.chunk_size, self.coord_noise = spec, chunk_size, coord_noise
        grids = []
        for p in spec.params:
            n_out, n_in, kk = rows_of(p.shape)
            value = initial[p.name].detach().float().reshape(n_out, n_in, kk) if p.name in initial else torch.zeros(n_out, n_in, kk)
            grids.append(nn.Parameter(value.clone()))
        self.grids = nn.ParameterList(grids)

    @property
    def body(self):  # type: ignore[override]
        return None  # the grid is the whole function

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        return self.generate(z, self.spec)

    def generate(self, z: Tensor, spec: TargetSpec) -> dict[str, Tensor]:
        """``{name: tensor}`` for every tensor of ``spec`` (``z`` only sets the leading shape: ``(d,)`` or ``(G, d)``)."""
        self.check_family(spec, None)
        lead = tuple(z.shape[:-1])
        track = torch.is_grad_enabled() and any(g.requires_grad for g in self.grids)
        noise = self.coord_noise if self.training else 0.0
        first = self.grids[0]
        # without autograd the blocks are written into one buffer: peak memory is the target plus one block
        out = None if track else torch.empty(spec.numel, device=first.device, dtype=first.dtype)  # (P,)
        pieces: list[Tensor] = []
        offset = 0
        for p, grid in zip(spec.params, self.grids):
            n_out, n_in, kk = rows_of(p.shape)
            r_out, r_in = grid.shape[0], grid.shape[1]
            lo_i, up_i, f_i = interpolation(n_in, r_in, noise, grid.device, grid.dtype)
            lo_o, up_o, f_o = interpolation(n_out, r_out, noise, grid.device, grid.dtype)
            fi = f_i[None, :, None]  # (1, n_in, 1)
            scale_i = r_in / n_in  # the Riemann-sum factor: 1 at the construction width
            step = n_out if track else max(1, self.chunk_size // max(1, n_in))
            for a in range(0, n_out, step):  # row blocks bound the no-grad path's peak memory
                b = min(n_out, a + step)
                fo = f_o[a:b, None, None]
                rows = grid[lo_o[a:b]] * (1 - fo) + grid[up_o[a:b]] * fo  # (rows, r_in, kk)
                w = ((rows[:, lo_i] * (1 - fi) + rows[:, up_i] * fi) * scale_i).reshape(-1)  # (rows * n_in * kk,)
                if track:
                    pieces.append(w)
                else:
                    out[offset:offset + w.numel()] = w
                offset += w.numel()
        if track:
            out = torch.cat(pieces)
        return split_flat(out.expand(*lead, out.shape[0]) if lead else out, spec)

    def check_family(self, spec: TargetSpec, kinds: dict[str, str] | None) -> None:
        """Raises when ``spec`` is not the construction target's depth, tensor names, ranks and kernel sizes."""
        mine = [(p.name, len(p.shape), rows_of(p.shape)[2]) for p in self.spec.params]
        theirs = [(p.name, len(p.shape), rows_of(p.shape)[2]) for p in spec.params]
        if mine == theirs:
            return
        for m, t in zip(mine, theirs):
            if m != t:
                where = f" (module {kinds[t[0]]})" if kinds and t[0] in kinds else ""
                raise ShapeError(
                    f"Implicit(encoding='grid'): target parameter {t[0]!r}{where} (rank {t[1]}, {t[2]} kernel numbers per "
                    f"row) does not match the construction target's {m[0]!r} (rank {m[1]}, {m[2]}); the grid encoding "
                    f"serves other widths of the same layers only: use encoding='fourier' for other depths or kernels"
                )
        raise ShapeError(
            f"Implicit(encoding='grid'): the target has {len(theirs)} generated tensors, the construction target "
            f"{len(mine)}; the grid encoding serves other widths of the same layers only: use encoding='fourier'"
        )

    def has_embeddings(self) -> bool:
        return True

    def calibrate(self, probe: Tensor) -> None:
        return None  # the grids start as the construction target's own tensors

    def zero_(self) -> None:
        for g in self.grids:
            nn.init.zeros_(g)

    @torch.no_grad()
    def load_weights(self, weights: dict[str, Tensor]) -> None:
        """Sets the grids to a network of the construction width (e.g. the trained, permuted reference).

        Args:
            weights: ``{name: tensor}`` of the construction target's shapes.

        Raises:
            ShapeError: a name is missing or a shape differs.
        """
        for p, grid in zip(self.spec.params, self.grids):
            if p.name not in weights or tuple(weights[p.name].shape) != tuple(p.shape):
                got = tuple(weights[p.name].shape) if p.name in weights else "missing"
                raise ShapeError(f"Implicit(encoding='grid').load_weights: {p.name!r} must have shape {tuple(p.shape)} (got {got})")
            grid.copy_(weights[p.name].reshape(grid.shape))
