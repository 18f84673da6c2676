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

__all__ = ["local_kernel", "rbf_bandwidth", "stein_loss", "svgd_direction"]


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


def _numpy_median(t: Tensor) -> Tensor:
    return torch.quantile(t.flatten(), 0.5)


def local_kernel(values: Tensor, active: Tensor, c: float = 1.0) -> Tensor:
    """SVH-PSL's kernel on the particles' objective values, one RBF per objective.

    ``K_ij = sum_k a_ik exp(-(v_ik - v_jk)^2 / h_k)`` where ``a_i`` is one-hot on the
    objective that is active in particle ``i``'s Tchebycheff term, and
    ``h_k = c * med_k^2 / log n`` with ``med_k`` the median of ``(v_ik - v_jk)^2`` over all
    pairs (``h_k = 5e-6`` when that median is 0), as in the authors' ``SVGD/moosvgd.py``.

    Args:
        values: ``(n, m)`` objective values (differentiable).
        active: ``(n,)`` index of each particle's active objective.
        c: the bandwidth scale.

    Returns:
        ``(n, n)``, differentiable w.r.t. ``values`` (the bandwidths are held fixed).
    """
    if values.dim() != 2 or active.shape != values.shape[:1]:
        raise ShapeError(f"local_kernel: values {tuple(values.shape)} and active {tuple(active.shape)} must be (n, m) and (n,)")
    n, m = values.shape
    d2 = (values[:, None, :] - values[None, :, :]).pow(2)  # (i, j, k)
    med = torch.stack([_numpy_median(d2[:, :, k].detach()) for k in range(m)])
    h = torch.where(med > 0, c * med.pow(2) / math.log(n), torch.full_like(med, 5e-6))
    weights = torch.nn.functional.one_hot(active, m).to(values)  # (i, k)
    return (weights[:, None, :] * torch.exp(-d2 / h)).sum(-1)


def stein_loss(losses: Tensor, kernel: Tensor, alpha: float = 1e-3) -> Tensor:
    """The scalar whose gradient is SVH-PSL's Stein variational update of the model's parameters.

    With per-particle losses ``L_j`` and a kernel ``K`` on the particles (e.g.
    :func:`local_kernel` of their predicted objective values), the update the authors'
    code applies is ``1/n [sum_i sum_j K_ij grad L_j + alpha grad sum_ij K_ij]``: each
    particle's loss gradient weighted by its kernel column (the driving term) plus the
    gradient of the kernel's total (descending it pushes the particles apart). That is the
    gradient of ``1/n [sum_j stopgrad(sum_i K_ij) L_j + alpha sum_ij K_ij]``, returned here.

    Args:
        losses: ``(n,)`` the particles' losses.
        kernel: ``(n, n)`` differentiable kernel matrix.
        alpha: the repulsion's weight (SVH-PSL's 1e-3).
    """
    n = losses.shape[0]
    if losses.dim() != 1 or kernel.shape != (n, n):
        raise ShapeError(f"stein_loss: losses {tuple(losses.shape)} and kernel {tuple(kernel.shape)} must be (n,) and (n, n)")
    drive = (kernel.detach().sum(dim=0) * losses).sum()
    return (drive + alpha * kernel.sum()) / n
