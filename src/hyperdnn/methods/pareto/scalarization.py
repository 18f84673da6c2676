"""Scalarising a loss vector with a preference: linear (PHN-LS) and Tchebycheff (PSL).

Navon et al., "Learning the Pareto Front with Hypernetworks", ICLR 2021 (PHN-LS);
Lin et al., "Pareto Set Learning for Expensive Multi-Objective Optimization", NeurIPS 2022
(the Tchebycheff scalarisation SVH-PSL trains on).
"""

from __future__ import annotations

from torch import Tensor

from hyperdnn.errors import ShapeError

__all__ = ["linear_scalarization", "tchebycheff"]


def linear_scalarization(losses: Tensor, preference: Tensor) -> Tensor:
    """PHN-LS: ``sum_i r_i l_i``.

    Args:
        losses: ``(m,)`` or ``(B, m)``.
        preference: ``(m,)`` or ``(B, m)`` (broadcast against ``losses``).

    Returns:
        A scalar for ``(m,)`` inputs, else ``(B,)``.
    """
    _same_width("linear_scalarization", losses, preference)
    return (losses * preference.to(losses)).sum(dim=-1)


def tchebycheff(values: Tensor, preference: Tensor, ideal: Tensor) -> Tensor:
    """The weighted Tchebycheff scalarisation ``max_i r_i (f_i - z_i)`` (lower is better).

    Args:
        values: objective values ``(..., m)``.
        preference: ``(..., m)``.
        ideal: the ideal point ``z`` ``(m,)``, below every value seen.

    Returns:
        ``(...)``.
    """
    _same_width("tchebycheff", values, preference)
    return ((values - ideal.to(values)) * preference.to(values)).amax(dim=-1)


def _same_width(part: str, a: Tensor, b: Tensor) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ShapeError(f"{part}: losses have {a.shape[-1]} objectives but the preference has {b.shape[-1]} "
                         f"(shapes {tuple(a.shape)} and {tuple(b.shape)}); give one preference entry per objective")
