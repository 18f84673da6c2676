"""Metrics of an ensemble's predictions: accuracy, NLL, Brier, ECE, entropy, mutual information, OOD scores.

All take the members' class probabilities ``probs`` of shape ``(k, N, C)``
(``k`` members, ``N`` inputs, ``C`` classes) or the ensemble's predictive
distribution ``mean = probs.mean(0)`` of shape ``(N, C)``. The calibration
error and AUROC/AUPR come from torchmetrics (the ``uncertainty`` extra,
imported on first use); the rest are closed forms written here.

Definitions (Lakshminarayanan et al. 2017; Ovadia et al. 2019; Depeweg et al. 2018):

- NLL: ``-mean_n log mean_k p_k(y_n | x_n)``;
- Brier: ``mean_n sum_c (mean_c - onehot(y_n)_c)^2``;
- ECE (15 equal-width confidence bins, L1): ``sum_b |B_b|/N |acc(B_b) - conf(B_b)|``;
- predictive entropy ``H[mean]`` = aleatoric + epistemic;
- mutual information ``I = H[mean] - mean_k H[p_k]`` (the epistemic part: zero
  when the members agree).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = [
    "Reliability",
    "brier_score",
    "calibration_error",
    "entropy",
    "mutual_information",
    "negative_log_likelihood",
    "ood_auroc_aupr",
    "reliability",
]

_EPS = 1e-12


def _torchmetrics() -> Any:
    try:
        import torchmetrics.functional.classification as tmc
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "hyperdnn.methods.uncertainty: calibration error and AUROC/AUPR need torchmetrics; "
            "install it with pip install 'hyperdnn[uncertainty]'"
        ) from e
    return tmc


def _check_mean(mean: Tensor, labels: Tensor, part: str) -> None:
    if mean.dim() != 2:
        raise ShapeError(f"{part}: probabilities must be (N, C) (got shape {tuple(mean.shape)})")
    if labels.shape != mean.shape[:1]:
        raise ShapeError(f"{part}: labels must be (N,) = ({mean.shape[0]},) (got shape {tuple(labels.shape)})")


def entropy(p: Tensor) -> Tensor:
    """Entropy in nats of categorical distributions ``p (..., C)`` -> ``(...)``."""
    return -(p * p.clamp_min(_EPS).log()).sum(-1)


def mutual_information(probs: Tensor) -> Tensor:
    """Mutual information between the prediction and the member, ``(k, N, C)`` -> ``(N,)``.

    ``H[mean_k p_k] - mean_k H[p_k]``: zero when all members agree, at most ``log k``.
    """
    if probs.dim() != 3:
        raise ShapeError(f"mutual_information: probs must be (k, N, C) (got shape {tuple(probs.shape)})")
    return (entropy(probs.mean(0)) - entropy(probs).mean(0)).clamp_min(0.0)


def negative_log_likelihood(mean: Tensor, labels: Tensor) -> float:
    """Mean NLL in nats of the labels ``(N,)`` under the predictive distribution ``mean (N, C)``."""
    _check_mean(mean, labels, "negative_log_likelihood")
    return float(-mean.gather(1, labels.view(-1, 1)).clamp_min(_EPS).log().mean())


def brier_score(mean: Tensor, labels: Tensor) -> float:
    """Mean over inputs of ``sum_c (mean_c - onehot_c)^2`` (0 is perfect, 2 is the worst)."""
    _check_mean(mean, labels, "brier_score")
    return float((mean - F.one_hot(labels, mean.shape[1]).to(mean.dtype)).pow(2).sum(1).mean())


def calibration_error(mean: Tensor, labels: Tensor, bins: int = 15) -> float:
    """Expected calibration error (L1, ``bins`` equal-width confidence bins), by torchmetrics'
    ``multiclass_calibration_error`` on the top-class confidence."""
    _check_mean(mean, labels, "calibration_error")
    tmc = _torchmetrics()
    return float(tmc.multiclass_calibration_error(mean.float(), labels, num_classes=mean.shape[1], n_bins=bins, norm="l1"))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's data: per confidence bin its bounds, mean confidence, accuracy and count."""

    edges: Tensor  # (bins + 1,)
    confidence: Tensor  # (bins,), NaN where the bin is empty
    accuracy: Tensor  # (bins,), NaN where the bin is empty
    count: Tensor  # (bins,)


def reliability(mean: Tensor, labels: Tensor, bins: int = 15) -> Reliability:
    """Bins ``(lo, hi]`` of the top-class confidence (torchmetrics' binning); the ECE is
    ``sum_b count_b / N * |accuracy_b - confidence_b|``."""
    _check_mean(mean, labels, "reliability")
    conf, pred = mean.max(1)
    correct = (pred == labels).to(mean.dtype)
    edges = torch.linspace(0, 1, bins + 1, dtype=mean.dtype)
    idx = (torch.bucketize(conf, edges, right=False) - 1).clamp(0, bins - 1)
    count = torch.zeros(bins, dtype=mean.dtype).index_add_(0, idx, torch.ones_like(conf))
    conf_sum = torch.zeros(bins, dtype=mean.dtype).index_add_(0, idx, conf)
    acc_sum = torch.zeros(bins, dtype=mean.dtype).index_add_(0, idx, correct)
    nan = torch.full_like(count, math.nan)
    return Reliability(edges, torch.where(count > 0, conf_sum / count.clamp_min(1), nan),
                       torch.where(count > 0, acc_sum / count.clamp_min(1), nan), count)


def ood_auroc_aupr(in_scores: Tensor, out_scores: Tensor) -> tuple[float, float]:
    """AUROC and AUPR of telling out-of-distribution inputs (positives) from in-distribution
    ones by a score that is higher for OOD inputs (entropy, mutual information, 1 - max p).

    Args:
        in_scores: ``(N_in,)``; out_scores: ``(N_out,)``.

    Returns:
        ``(auroc, aupr)`` from torchmetrics' ``binary_auroc`` and ``binary_average_precision``.
    """
    if in_scores.dim() != 1 or out_scores.dim() != 1 or not len(in_scores) or not len(out_scores):
        raise ShapeError(
            f"ood_auroc_aupr: scores must be non-empty 1-D tensors (got {tuple(in_scores.shape)} and {tuple(out_scores.shape)})"
        )
    tmc = _torchmetrics()
    scores = torch.cat([in_scores, out_scores]).float()
    target = torch.cat([torch.zeros(len(in_scores)), torch.ones(len(out_scores))]).long()
    return float(tmc.binary_auroc(scores, target)), float(tmc.binary_average_precision(scores, target))
