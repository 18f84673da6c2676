"""Evaluating a Pareto-front model: its losses over a grid of preferences and their hypervolume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from hyperdnn.errors import ShapeError
from hyperdnn.methods.pareto.hypervolume import hypervolume

__all__ = ["ParetoResults", "evaluate_front"]


@dataclass(frozen=True)
class ParetoResults:
    """Losses at each evaluated preference, and the front's hypervolume.

    Attributes:
        preferences: ``(R, m)`` the rays evaluated.
        losses: ``(R, m)`` the loss vector reached at each ray.
        reference: the hypervolume's reference point.
        hypervolume: of ``losses`` at ``reference``.
        extras: per ray, whatever else the caller's function returned (e.g. accuracies), ``(R, k)`` or None.
    """

    preferences: np.ndarray
    losses: np.ndarray
    reference: tuple[float, ...]
    hypervolume: float
    extras: np.ndarray | None = None


def evaluate_front(
    losses_at: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]],
    preferences: Tensor,
    reference: Sequence[float],
) -> ParetoResults:
    """Runs ``losses_at(r)`` at each preference and computes the hypervolume of the results.

    Args:
        losses_at: ``r -> (m,)`` loss vector on the caller's test data (or ``(losses, extras)``
            with ``extras`` a 1-D tensor, e.g. per-task accuracies); called without gradients.
        preferences: ``(R, m)`` the grid (e.g. :func:`circle_rays`).
        reference: ``(m,)`` the hypervolume reference point.
    """
    rows, extras = [], []
    with torch.no_grad():
        for r in preferences:
            out = losses_at(r)
            if isinstance(out, tuple):
                out, extra = out
                extras.append(torch.as_tensor(extra).detach().double().cpu().numpy().reshape(-1))
            out = torch.as_tensor(out).detach().double().cpu().reshape(-1)
            if out.shape[0] != preferences.shape[1]:
                raise ShapeError(f"evaluate_front: losses_at returned {out.shape[0]} losses for a preference of "
                                 f"{preferences.shape[1]} objectives; return one loss per objective")
            rows.append(out.numpy())
    losses = np.stack(rows)
    ref = tuple(float(v) for v in reference)
    return ParetoResults(
        preferences=preferences.detach().double().cpu().numpy(),
        losses=losses,
        reference=ref,
        hypervolume=hypervolume(losses, ref),
        extras=np.stack(extras) if extras else None,
    )
