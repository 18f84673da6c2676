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
