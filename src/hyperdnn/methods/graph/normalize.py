"""GHN-2's normalisation of predicted parameters by fan-in.

    weight of 2+ dims:   W <- W * sqrt(beta / fan_in)      beta = 2 before a ReLU, else 1
    1-d weight (norms):  w <- 2 sigmoid(w / 2)             in (0, 2)
    bias:                b <- tanh(b / 5)                  in (-1, 1)

(Knyazev et al. 2021, section 4 "Parameter normalization"; ppuda ``GHN._normalize``.)
A low-rank weight ``A B^T`` of rank ``r`` whose factors have unit scale has entries of
variance ``r``; its factor is ``sqrt(beta / (fan_in r))``, kept in the
:class:`~hyperdnn.factored.Factored` value's ``scale`` so ``W`` is not formed here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.factored import Factored


def fan_in(shape: tuple[int, ...], module_class: str = "") -> int:
    """The fan-in of a weight: ``prod(shape[1:])``; HuggingFace's ``Conv1D`` stores ``(in, out)``, so ``shape[0]``."""
    return shape[0] if module_class == "Conv1D" else math.prod(shape[1:])


def fan_in_normalize(p: Tensor | Factored, name: str, *, module_class: str = "", beta: float = 1.0) -> Tensor | Factored:
    """A raw predicted tensor normalised as GHN-2 does.

    Args:
        p: the decoder's output for parameter ``name`` (a tensor or a ``Factored``).
        name: the parameter's name (a name ending in ``bias`` is a bias).
        module_class: class name of the owning module (for the fan-in of ``Conv1D``).
        beta: 2 for a layer followed by a ReLU, 1 otherwise.

    Returns:
        the normalised value, of the same type.
    """
    if isinstance(p, Factored):
        scale = math.sqrt(beta / (fan_in(p.shape, module_class) * p.a.shape[-1]))
        return Factored(p.a, p.b, p.shape, p.base, p.scale * scale, p.dropout)
    if p.dim() >= 2:
        return p * math.sqrt(beta / fan_in(tuple(p.shape), module_class))
    if name.rpartition(".")[2].endswith("bias"):
        return torch.tanh(0.2 * p)
    return 2.0 * torch.sigmoid(0.5 * p)


def factored_moments(p: Factored) -> tuple[Tensor, Tensor]:
    """Mean and unbiased standard deviation of the entries of ``p.dense()`` without forming it.

    ``sum W = s (1^T A)(B^T 1)`` and ``sum W^2 = s^2 trace((A^T A)(B^T B))`` for ``W = s A B^T``,
    ``A (out, r)``, ``B (in, r)``; differentiable.

    Raises:
        ConfigError: ``p`` has a dense ``base`` (its moments are not those of ``s A B^T``).
        ShapeError: the factors are not 2-D (one weight, not a batch of them), or ``W`` has
            fewer than 2 entries (no standard deviation).
    """
    if p.base is not None:
        raise ConfigError("factored_moments: the Factored value has a dense base W0, and the moments of "
                          "W0 + s A B^T are not computed here; expected base=None (a GHN's low-rank output); "
                          "fix: normalise p.dense() instead")
    if p.a.dim() != 2 or p.b.dim() != 2:
        raise ShapeError(f"factored_moments: expected 2-D factors A (out, r) and B (in, r) of one weight, got "
                         f"A {tuple(p.a.shape)} and B {tuple(p.b.shape)}; fix: call it once per weight")
    n = p.a.shape[0] * p.b.shape[0]
    if n < 2:
        raise ShapeError(f"factored_moments: a weight of shape {tuple(p.shape)} has {n} entry: no standard "
                         "deviation; expected at least 2 entries")
    total = p.scale * (p.a.sum(0) * p.b.sum(0)).sum()
    squares = p.scale ** 2 * ((p.a.T @ p.a) * (p.b.T @ p.b)).sum()
    mean = total / n
    return mean, ((squares - n * mean ** 2).clamp_min(0) / max(n - 1, 1)).sqrt()


def std_normalize(p: Tensor | Factored, std: float) -> Tensor | Factored:
    """A raw predicted weight of 2+ dimensions rescaled to the standard deviation ``std``.

    LoGAH's normalisation for GPT-2 (``GHN3_GPT._normalize`` in Blackzxy/LoGAH's
    ``ghn3/nn.py``: ``p / (p.std() + 1e-7) * config.initializer_range``, 0.02 for GPT-2):
    the scale of every weight is fixed, whatever the layer's width or rank, and only its
    structure is learned. A factored weight gets the factor on ``A``, ``W`` is not formed.

    Args:
        p: the decoder's output for one weight, ``(out, *rest)`` (a tensor or a ``Factored``).
        std: the target standard deviation.

    Raises:
        ConfigError, ShapeError: as :func:`factored_moments`; a dense weight of fewer than 2 entries.
    """
    if isinstance(p, Factored):
        k = std / (factored_moments(p)[1] + 1e-7)
        return Factored(p.a * k, p.b, p.shape, p.base, p.scale, p.dropout)
    if p.numel() < 2:
        raise ShapeError(f"std_normalize: a weight of shape {tuple(p.shape)} has {p.numel()} entry: no standard "
                         "deviation to rescale; expected at least 2 entries")
    return p * (std / (p.std() + 1e-7))
