"""The likelihood a training objective fits: categorical (classification) or Gaussian (regression)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["Categorical", "Gaussian", "Likelihood", "likelihood_from"]


@dataclass(frozen=True)
class Categorical:
    """``p(y | f) = softmax(f)_y`` over the last dimension of the logits ``f``."""

    def nll(self, f: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood over members and inputs; ``f (k, B, C)``, ``y (B,)``."""
        k, b, c = f.shape
        return F.cross_entropy(f.reshape(k * b, c), y.repeat(k))

    def grad_log_lik(self, f: Tensor, y: Tensor) -> Tensor:
        """``d/df sum_b log p(y_b | f_b)`` per member: ``onehot(y) - softmax(f)``, ``(k, B, C)``."""
        return F.one_hot(y, f.shape[-1]).to(f.dtype) - torch.softmax(f, -1)


@dataclass(frozen=True)
class Gaussian:
    """``p(y | f) = N(y; f, std^2)`` with a known noise ``std`` (the toy regression's)."""

    std: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.std, (int, float)) and self.std > 0):
            raise ConfigError(f"Gaussian: std must be a positive number (got {self.std!r})")

    def _check(self, f: Tensor, y: Tensor) -> Tensor:
        yy = y.reshape(1, *f.shape[1:]) if y.numel() == f[0].numel() else None
        if yy is None:
            raise ShapeError(f"Gaussian: targets of shape {tuple(y.shape)} do not match predictions {tuple(f.shape[1:])}")
        return yy

    def nll(self, f: Tensor, y: Tensor) -> Tensor:
        """Mean Gaussian NLL over members and inputs (nats), ``f (k, B, 1)``, ``y (B, 1)``."""
        yy = self._check(f, y)
        return ((f - yy).pow(2) / (2 * self.std**2)).mean() + math.log(self.std * math.sqrt(2 * math.pi))

    def grad_log_lik(self, f: Tensor, y: Tensor) -> Tensor:
        """``(y - f) / std^2``, ``(k, B, 1)``."""
        return (self._check(f, y) - f) / self.std**2


Likelihood = Union[Categorical, Gaussian]


def likelihood_from(value: object, part: str) -> Likelihood:
    """``"categorical"``, ``"gaussian"`` (std 1) or a :class:`Categorical` / :class:`Gaussian`."""
    if isinstance(value, (Categorical, Gaussian)):
        return value
    if value == "categorical":
        return Categorical()
    if value == "gaussian":
        return Gaussian()
    raise ConfigError(f"{part}: likelihood must be 'categorical', 'gaussian' or Gaussian(std) (got {value!r})")
