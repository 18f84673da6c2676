"""Preference vectors on the simplex: random draws for training, a fixed grid for evaluation.

A preference ``r`` has ``m`` non-negative entries summing to 1, one per objective.
Training draws them from a Dirichlet distribution (PHN: ``alpha = 0.2``, which puts
most of the mass near the simplex's corners); evaluation uses evenly spread rays.

Navon, Shamsian, Chechik, Fetaya, "Learning the Pareto Front with Hypernetworks", ICLR 2021.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, HDTypeError, ShapeError

__all__ = ["check_simplex", "circle_rays", "sample_dirichlet"]


def sample_dirichlet(count: int, objectives: int, alpha: float = 0.2, *, rng: np.random.Generator | None = None) -> Tensor:
    """Draws ``count`` preferences from ``Dirichlet(alpha, ..., alpha)`` with numpy's sampler.

    PHN draws its training rays with ``np.random.dirichlet``; this uses the same
    distribution through a ``numpy.random.Generator`` (seed it for repeatable draws).

    Args:
        count: number of preferences.
        objectives: ``m``, the number of objectives (at least 2).
        alpha: the Dirichlet concentration (PHN's default 0.2 puts most mass near the
            simplex's corners; 1 is uniform on the simplex).
        rng: the generator (default: a fresh unseeded one).

    Returns:
        ``(count, m)`` float32, each row non-negative and summing to 1.
    """
    for field, value in (("count", count), ("objectives", objectives)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"sample_dirichlet: {field} must be a positive int (got {value!r})")
    if objectives < 2:
        raise ConfigError(f"sample_dirichlet: objectives must be at least 2 (got {objectives}); one objective has no trade-off")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ConfigError(f"sample_dirichlet: alpha must be a finite number > 0 (got {alpha!r})")
    rng = np.random.default_rng() if rng is None else rng
    draws = rng.dirichlet(np.full(objectives, float(alpha)), size=count)
    # float32 rounding can move a row's sum off 1 by an ulp; renormalise in float32.
    out = torch.from_numpy(draws).float()
    return out / out.sum(dim=1, keepdim=True)


def circle_rays(count: int, min_angle: float = 0.1, max_angle: float = math.pi / 2 - 0.1) -> Tensor:
    """``count`` two-objective preferences at evenly spaced angles, normalised to sum 1.

    The ray at angle ``t`` is ``(cos t, sin t) / (cos t + sin t)``; PHN evaluates 25 of them
    between 0.1 and pi/2 - 0.1 radians (``circle_points`` in the authors' code).

    Returns:
        ``(count, 2)`` float32.
    """
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ConfigError(f"circle_rays: count must be a positive int (got {count!r})")
    if not 0 <= min_angle <= max_angle <= math.pi / 2:
        raise ConfigError(f"circle_rays: need 0 <= min_angle <= max_angle <= pi/2 (got {min_angle}, {max_angle})")
    t = torch.linspace(min_angle, max_angle, count, dtype=torch.float64)
    rays = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    return (rays / rays.sum(dim=1, keepdim=True)).float()


def check_simplex(part: str, value: object, objectives: int, atol: float = 1e-5) -> Tensor:
    """Returns ``value`` if it is a preference (or a batch of them) on the simplex, else raises.

    Args:
        part: the name used in error messages.
        value: a tensor ``(m,)`` or ``(B, m)``.
        objectives: ``m``.
        atol: tolerance on the sum (``|sum - 1| <= atol``) and on negative entries (``>= -atol``).

    Raises:
        HDTypeError: not a floating tensor. ShapeError: wrong shape.
        ConfigError: an entry negative or not finite, or a row whose sum is not 1.
    """
    if not isinstance(value, Tensor):
        raise HDTypeError(f"{part}: a preference must be a tensor (got {type(value).__name__})")
    if not value.dtype.is_floating_point:
        raise HDTypeError(f"{part}: a preference must be a floating tensor (got dtype {value.dtype}); e.g. torch.tensor([0.3, 0.7])")
    if value.dim() not in (1, 2) or value.shape[-1] != objectives:
        raise ShapeError(f"{part}: preference has shape {tuple(value.shape)}; expected ({objectives},) or (B, {objectives})")
    rows = value.reshape(-1, objectives).detach()
    if not torch.isfinite(rows).all():
        raise ConfigError(f"{part}: preference holds NaN or infinity ({_show(rows)}); expected non-negative entries summing to 1")
    low = float(rows.min()) if rows.numel() else 0.0
    if low < -atol:
        raise ConfigError(f"{part}: preference has a negative entry {low:.6g} ({_show(rows)}); a preference lies on the "
                          f"simplex: entries >= 0 summing to 1 (normalise with r.clamp(min=0) / r.clamp(min=0).sum(-1, keepdim=True))")
    sums = rows.sum(dim=1)
    worst = int((sums - 1).abs().argmax()) if sums.numel() else 0
    if sums.numel() and abs(float(sums[worst]) - 1) > atol:
        raise ConfigError(f"{part}: preference {rows[worst].tolist()} sums to {float(sums[worst]):.6g}; a preference lies on the "
                          f"simplex: entries >= 0 summing to 1 (divide by its sum: r / r.sum(-1, keepdim=True))")
    return value


def _show(rows: Tensor) -> str:
    return str(rows[0].tolist()) if rows.shape[0] == 1 else f"{rows.shape[0]} rows"
