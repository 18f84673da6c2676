"""Small helpers shared by the batched rules."""

from __future__ import annotations

from torch import Tensor


def get(mod, weights: dict[str, Tensor], name: str):
    """The generated tensor ``name`` (batched), else the module's own one (shared)."""
    if name in weights:
        return weights[name], True
    return getattr(mod, name), False


def groups_first(x: Tensor, groups: int, batch_dim: int) -> tuple[Tensor, tuple[int, ...]]:
    """``(..., G*n, ...)`` at ``batch_dim`` -> ``(G, n * rest, last)`` plus the moved shape."""
    xm = x.movedim(batch_dim, 0) if batch_dim else x
    return xm.reshape(groups, -1, xm.shape[-1]), tuple(xm.shape)


def groups_back(y: Tensor, moved_shape: tuple[int, ...], last: int, batch_dim: int) -> Tensor:
    y = y.reshape(*moved_shape[:-1], last)
    return y.movedim(0, batch_dim) if batch_dim else y


def per_group(t: Tensor, batched: bool, groups: int, ndim_after: int) -> Tensor:
    """Shapes a (possibly batched) vector for broadcasting against ``(G, n, ..., C)``-like tensors.

    ``t`` is ``(G, C)`` when batched, ``(C,)`` otherwise; the result is
    ``(G, 1, C, 1, ..., 1)`` with ``ndim_after`` trailing singleton dims.
    """
    if batched:
        return t.reshape(groups, 1, t.shape[-1], *([1] * ndim_after))
    return t.reshape(1, 1, t.shape[-1], *([1] * ndim_after))
