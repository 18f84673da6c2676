"""Hypervolume of a set of loss vectors, with pymoo's indicator.

The hypervolume of points ``P`` (minimisation) at a reference point ``ref`` is the
measure of ``{y : p <= y <= ref for some p in P}``; points not below ``ref`` in every
objective add nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from hyperdnn.errors import ShapeError

__all__ = ["hypervolume"]


def hypervolume(points: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor | list[float] | tuple[float, ...]) -> float:
    """Hypervolume dominated by ``points`` (minimised) up to ``reference``, by ``pymoo.indicators.hv.HV``.

    Args:
        points: ``(n, m)`` loss vectors.
        reference: ``(m,)`` the reference point (PHN and COSMOS on Multi-MNIST: ``(2, 2)``).

    Returns:
        The hypervolume (0 when no point is below the reference in every objective).
    """
    from pymoo.indicators.hv import HV  # the optional 'pareto' extra

    p = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    ref = reference.detach().cpu().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference)
    p = np.asarray(p, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if p.ndim != 2 or ref.shape != (p.shape[1],):
        raise ShapeError(f"hypervolume: points {p.shape} and reference {ref.shape} must be (n, m) and (m,)")
    inside = p[np.all(p < ref, axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    return float(HV(ref_point=ref)(inside))
