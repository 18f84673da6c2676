"""``evaluate(model, loader, samples=k)``: an ensemble's metrics on test data, as one table.

Works for any ensemble-like model (see :func:`.ensemble.as_members`): a
noise-conditioned HyperDNN (``k`` fixed draws), a list of networks, MC dropout,
a single network; so the baselines go through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import Tensor

from hyperdnn.errors import ShapeError

from .ensemble import as_members
from .metrics import (
    Reliability,
    brier_score,
    calibration_error,
    entropy,
    mutual_information,
    negative_log_likelihood,
    ood_auroc_aupr,
    reliability,
)

__all__ = ["OOD_SCORES", "UncertaintyResults", "evaluate", "member_probs", "ood_scores"]

# Scores that are higher for inputs the ensemble knows less about.
OOD_SCORES = ("entropy", "mutual_information", "max_prob")


@dataclass(frozen=True)
class UncertaintyResults:
    """An ensemble's metrics on one test set (and, if given, an out-of-distribution set).

    Fields: ``accuracy``, ``nll`` (nats), ``brier``, ``ece`` (15 bins), mean predictive
    ``entropy`` and ``mutual_information`` on the test set, ``members`` (``k``),
    ``ood``: ``{score: (auroc, aupr)}`` for each of :data:`OOD_SCORES` (empty without an
    OOD set), ``ood_entropy`` / ``ood_mutual_information`` (means on the OOD set, NaN
    without one), ``reliability`` (the diagram's data).
    """

    accuracy: float
    nll: float
    brier: float
    ece: float
    entropy: float
    mutual_information: float
    members: int
    ood: dict[str, tuple[float, float]] = field(default_factory=dict)
    ood_entropy: float = float("nan")
    ood_mutual_information: float = float("nan")
    reliability: Reliability | None = field(default=None, repr=False, compare=False)

    def row(self) -> dict[str, float]:
        """The scalar metrics as one table row ``{column: value}``."""
        out = {"accuracy": self.accuracy, "nll": self.nll, "brier": self.brier, "ece": self.ece,
               "entropy": self.entropy, "mutual_information": self.mutual_information}
        for score, (auroc, aupr) in self.ood.items():
            out[f"auroc_{score}"] = auroc
            out[f"aupr_{score}"] = aupr
        return out


def _loader(data: Any) -> Iterable:
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ShapeError(f"evaluate: inputs have {x.shape[0]} rows but labels {y.shape[0]}; expected the same")
        return [(x, y)]
    return data


@torch.no_grad()
def member_probs(members: Any, data: Any) -> tuple[Tensor, Tensor | None]:
    """Every member's class probabilities on ``data`` (a loader of ``(x, y)`` or ``x`` batches,
    or one ``(x, y)`` pair of tensors): ``(k, N, C)`` and the labels ``(N,)`` (None if absent)."""
    probs, labels = [], []
    for batch in _loader(data):
        x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        logits = members(x)
        if logits.dim() != 3:
            raise ShapeError(f"evaluate: members must return (k, B, C) logits (got shape {tuple(logits.shape)})")
        probs.append(torch.softmax(logits.float(), -1).cpu())
        if y is not None:
            labels.append(y.cpu())
    return torch.cat(probs, 1), (torch.cat(labels) if labels else None)


def ood_scores(probs: Tensor) -> dict[str, Tensor]:
    """The OOD scores of :data:`OOD_SCORES` per input, from member probabilities ``(k, N, C)``."""
    mean = probs.mean(0)
    return {"entropy": entropy(mean), "mutual_information": mutual_information(probs), "max_prob": 1 - mean.max(1).values}


def evaluate(model: Any, data: Any, samples: int | None = None, *, ood: Any = None,
             generator: torch.Generator | None = None, bins: int = 15) -> UncertaintyResults:
    """Accuracy, NLL, Brier, ECE, entropy, mutual information (and OOD AUROC/AUPR) of an ensemble.

    Args:
        model: a noise-conditioned HyperDNN (``samples`` draws, fixed for the whole call,
            made with ``generator``), ``FixedMembers``, ``DeepEnsemble``, ``MCDropout``, a
            list of networks, or one network.
        data: a loader of ``(x, y)`` batches, or one ``(x, y)`` pair of tensors.
        samples: ``k`` for a HyperDNN.
        ood: out-of-distribution inputs (a loader of ``x`` or ``(x, y)`` batches); their
            labels are ignored.
        bins: calibration bins (15, as Ovadia et al. 2019 and Guo et al. 2017).

    Runs in eval mode without gradients and restores the model's mode after.
    """
    members, module = as_members(model, samples, generator=generator)
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        probs, labels = member_probs(members, data)
        out_probs = member_probs(members, ood)[0] if ood is not None else None
    finally:
        if module is not None:
            module.train(was_training)
    if labels is None:
        raise ShapeError("evaluate: data must give (x, y) batches with labels")
    mean = probs.mean(0)
    ood_results: dict[str, tuple[float, float]] = {}
    ood_ent = ood_mi = float("nan")
    if out_probs is not None:
        ins, outs = ood_scores(probs), ood_scores(out_probs)
        ood_results = {s: ood_auroc_aupr(ins[s], outs[s]) for s in OOD_SCORES}
        ood_ent, ood_mi = float(outs["entropy"].mean()), float(outs["mutual_information"].mean())
    return UncertaintyResults(
        accuracy=float((mean.argmax(1) == labels).float().mean()),
        nll=negative_log_likelihood(mean, labels),
        brier=brier_score(mean, labels),
        ece=calibration_error(mean, labels, bins),
        entropy=float(entropy(mean).mean()),
        mutual_information=float(mutual_information(probs).mean()),
        members=int(probs.shape[0]),
        ood=ood_results,
        ood_entropy=ood_ent,
        ood_mutual_information=ood_mi,
        reliability=reliability(mean, labels, bins),
    )
