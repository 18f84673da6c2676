"""The RBF kernel with the median bandwidth, shared by the diversity terms."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["median_bandwidth", "squared_distances"]


def squared_distances(v: Tensor) -> Tensor:
    """``||v_i - v_j||^2`` for the rows of ``v (k, P)`` -> ``(k, k)`` (exact zeros on the diagonal)."""
    sq = v.pow(2).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * v @ v.t()).clamp_min(0.0)
    return d * (1 - torch.eye(v.shape[0], dtype=v.dtype, device=v.device))


def median_bandwidth(d: Tensor) -> Tensor:
    """``h = median_{i != j} d_ij / log(k + 1)`` (Liu & Wang 2016's heuristic), detached, > 0."""
    k = d.shape[0]
    off = d.detach()[~torch.eye(k, dtype=torch.bool, device=d.device)]
    return (off.median() / math.log(k + 1)).clamp_min(1e-12)
