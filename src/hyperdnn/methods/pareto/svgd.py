"""Stein variational gradient descent (SVGD): the update that moves a set of particles.

For particles ``x_1..x_n`` and scores ``s_j = grad log p(x_j)`` (for a loss ``U``,
``s_j = -grad U(x_j)``), SVGD moves each particle along

    phi(x_i) = 1/n sum_j [ k(x_j, x_i) s_j + grad_{x_j} k(x_j, x_i) ]

with the RBF kernel ``k(x, y) = exp(-||x - y||^2 / h)``: the first term pulls the
particles down the loss, the second pushes them apart. The bandwidth defaults to the
median heuristic ``h = med(||x_i - x_j||^2) / log(n + 1)`` of Liu & Wang's code.

Liu & Wang, "Stein Variational Gradient Descent", NeurIPS 2016; SVH-PSL (Nguyen et al.,
AAAI 2025) moves the preference-conditioned solutions of a Pareto-set model this way.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["rbf_bandwidth", "svgd_direction"]


def rbf_bandwidth(particles: Tensor) -> Tensor:
    """The median heuristic ``h = med(||x_i - x_j||^2) / log(n + 1)`` over all pairs ``(i, j)``.

    A zero median (coincident particles) gives ``h = 1``.
    """
    x = particles.detach()
    d2 = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    med = torch.quantile(d2.flatten(), 0.5)  # numpy's median: the mean of the two middle values
    n = particles.shape[0]
    h = med / math.log(n + 1)
    return torch.where(h > 0, h, torch.ones_like(h))


def svgd_direction(particles: Tensor, scores: Tensor, bandwidth: float | Tensor | None = None) -> Tensor:
    """The SVGD direction ``phi`` for each particle (move with ``x <- x + step * phi``).

    Args:
        particles: ``(n, d)``.
        scores: ``(n, d)``, ``grad log p`` at each particle (``-grad`` of its loss).
        bandwidth: ``h`` of the RBF kernel; None: :func:`rbf_bandwidth`.

    Returns:
        ``(n, d)``.
    """
    if particles.dim() != 2 or scores.shape != particles.shape:
        raise ShapeError(f"svgd_direction: particles {tuple(particles.shape)} and scores {tuple(scores.shape)} must both be (n, d)")
    x = particles.detach()
    h = rbf_bandwidth(x) if bandwidth is None else torch.as_tensor(bandwidth, dtype=x.dtype)
    if not float(h) > 0:
        raise ConfigError(f"svgd_direction: bandwidth must be > 0 (got {float(h)})")
    diff = x[:, None, :] - x[None, :, :]  # (i, j, d): x_i - x_j
    K = torch.exp(-diff.pow(2).sum(-1) / h)  # symmetric
    drive = K @ scores.detach()
    # grad_{x_j} k(x_j, x_i) = (2 / h) (x_i - x_j) k(x_i, x_j), summed over j
    repulse = (2.0 / h) * (K[:, :, None] * diff).sum(dim=1)
    return (drive + repulse) / x.shape[0]
