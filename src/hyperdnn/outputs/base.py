"""What every output strategy shares: the module interface and token helpers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..bodies import BodyModule
from ..target import TargetSpec


class OutputModule(nn.Module):
    """Built output strategy: ``forward(z) -> {name: Tensor | Factored}``.

    ``z`` is ``(cond_dim,)`` for one weight set or ``(G, cond_dim)`` for ``G``. Each
    value is a dense tensor of ``param_shape`` or ``(G, *param_shape)`` accordingly,
    or a :class:`~hyperdnn.factored.Factored` value of that shape (see there).
    A new strategy is one file in ``outputs/`` with a config dataclass whose
    ``build(spec, cond_dim, body, initial)`` returns a subclass of this.
    """

    spec: TargetSpec
    body: BodyModule

    def has_embeddings(self) -> bool:
        """Whether the tokens carry learned component embeddings (needed when there is no condition)."""
        return True

    def calibrate(self, probe: Tensor) -> None:
        """Hyperfan-in initialisation of the generating layers from typical conditions ``(S, cond_dim)``."""
        raise NotImplementedError

    def zero_(self) -> None:
        """Zeroes the generating layers (used by the additive output)."""
        raise NotImplementedError


def make_tokens(z: Tensor, emb: Tensor | None) -> Tensor:
    """Token inputs ``[z, e_t]`` for every component ``t``.

    Args:
        z: ``(d,)`` or ``(G, d)``.
        emb: ``(T, e)`` learned component embeddings, or None for a single token.

    Returns:
        ``(T, d + e)`` or ``(G, T, d + e)``.
    """
    if emb is None:
        return z.unsqueeze(-2)
    lead = z.shape[:-1]
    t = emb.shape[0]
    ze = z.unsqueeze(-2).expand(*lead, t, z.shape[-1])
    ee = emb.expand(*lead, *emb.shape)
    return torch.cat([ze, ee], dim=-1)


def split_flat(flat: Tensor, spec: TargetSpec) -> dict[str, Tensor]:
    """``(..., P + extra) -> {name: (..., *shape)}`` as views (no copy); a trailing extra is dropped.

    One ``split`` rather than a slice per tensor: its backward writes all the
    gradients into one buffer, where each slice's backward would allocate and
    zero a tensor as large as ``flat``.
    """
    sizes = [p.numel for p in spec.params]
    extra = flat.shape[-1] - spec.numel
    pieces = flat.split(sizes + [extra] if extra else sizes, dim=-1)
    return {p.name: piece.unflatten(-1, p.shape) if p.shape else piece.squeeze(-1) for p, piece in zip(spec.params, pieces)}


def std_mean_rows(spec: TargetSpec) -> tuple[Tensor, Tensor]:
    """Per-element target std and mean, ``(P,)`` each, for hyperfan-in of a flat head."""
    std = torch.cat([torch.full((p.numel,), s) for p, s in zip(spec.params, spec.init_std)])
    mean = torch.cat([torch.full((p.numel,), m) for p, m in zip(spec.params, spec.init_mean)])
    return std, mean


def pooled_std_mean(spec: TargetSpec, indices: list[int] | None = None) -> tuple[float, float]:
    """Size-weighted pooled std and mean over (a subset of) the generated parameters."""
    idx = range(len(spec.params)) if indices is None else indices
    n = sum(spec.params[i].numel for i in idx)
    mean = sum(spec.params[i].numel * spec.init_mean[i] for i in idx) / n
    second = sum(spec.params[i].numel * (spec.init_std[i] ** 2 + spec.init_mean[i] ** 2) for i in idx) / n
    return max(second - mean**2, 0.0) ** 0.5, mean
