"""Uncertainty from hypernetworks: a noise-conditioned HyperDNN as an implicit ensemble.

- :mod:`.ensemble`: fixed or fresh members (:class:`FixedMembers`), deep ensembles and
  MC dropout as the same kind of object (:class:`DeepEnsemble`, :class:`MCDropout`);
- :mod:`.hypergan`, :mod:`.svgd`: training objectives that keep the draws diverse
  (:class:`HyperGAN`, :class:`FunctionalSVGD`), each with ``loss`` / ``step`` / ``evaluate``;
- :mod:`.metrics`, :mod:`.evaluate`: accuracy, NLL, Brier, ECE, entropy, mutual
  information, OOD AUROC/AUPR; :func:`evaluate` returns them as one table for any
  ensemble-like model.

torchmetrics (the ``uncertainty`` extra) is imported only when a calibration error or
AUROC/AUPR is computed.
"""

from hyperdnn.methods.uncertainty.ensemble import (
    CPU_ROWS_PER_CALL,
    DeepEnsemble,
    FixedMembers,
    MCDropout,
    as_members,
    members_per_call,
)
from hyperdnn.methods.uncertainty.evaluate import OOD_SCORES, UncertaintyResults, evaluate, member_probs, ood_scores
from hyperdnn.methods.uncertainty.hypergan import HyperGAN, kernel_entropy
from hyperdnn.methods.uncertainty.likelihood import Categorical, Gaussian
from hyperdnn.methods.uncertainty.metrics import (
    Reliability,
    brier_score,
    calibration_error,
    entropy,
    mutual_information,
    negative_log_likelihood,
    ood_auroc_aupr,
    reliability,
)
from hyperdnn.methods.uncertainty.objective import EnsembleObjective, UncertaintyStep
from hyperdnn.methods.uncertainty.svgd import FunctionalSVGD, stein_direction

__all__ = [
    "as_members",
    "brier_score",
    "calibration_error",
    "Categorical",
    "CPU_ROWS_PER_CALL",
    "DeepEnsemble",
    "EnsembleObjective",
    "entropy",
    "evaluate",
    "FixedMembers",
    "FunctionalSVGD",
    "Gaussian",
    "HyperGAN",
    "kernel_entropy",
    "MCDropout",
    "member_probs",
    "members_per_call",
    "mutual_information",
    "negative_log_likelihood",
    "ood_auroc_aupr",
    "OOD_SCORES",
    "ood_scores",
    "Reliability",
    "reliability",
    "stein_direction",
    "UncertaintyResults",
    "UncertaintyStep",
]
