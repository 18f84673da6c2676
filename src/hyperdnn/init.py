"""Initialisation of the generating layers: hyperfan-in (Chang et al., 2020).

Chang, Sarma, Lipson, "Principled Weight Initialization for Hypernetworks"
(ICLR 2020): choose the variance of a hypernetwork's output layer so that the
*generated* weights have the variance the target would have had under its own
initialisation. For an output layer ``theta = W h + b`` with ``d`` input
features, ``Var(theta) = d * Var(W) * E[h^2]``, so

    Var(W) = Var_target / (d * E[h^2]),     b = mean_target.

Chang et al. derive ``E[h^2]`` analytically for a given embedding and
activation; here it is measured once at construction by running the body on
typical conditions (``InputModule.probe``), which gives the same variance for
any body. ``Var_target`` and ``mean_target`` are taken from the target's own
initial parameters, so LayerNorm scales start near 1 and biases near 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


@torch.no_grad()
def hyperfan_in_(layer: nn.Linear, features: Tensor, std: Tensor | float, mean: Tensor | float = 0.0) -> None:
    """Sets ``layer`` so that ``layer(features)`` has the given per-output std and mean.

    Args:
        layer: the generating linear layer, ``(out, d)``.
        features: typical inputs to ``layer``, ``(..., d)``.
        std: target standard deviation per output row, ``(out,)``, or a float.
        mean: target mean per output row, ``(out,)``, or a float.
    """
    d = layer.in_features
    m2 = features.detach().float().pow(2).mean().item() if features.numel() else 0.0
    std_t = torch.as_tensor(std, dtype=layer.weight.dtype, device=layer.weight.device).expand(layer.out_features)
    mean_t = torch.as_tensor(mean, dtype=layer.weight.dtype, device=layer.weight.device).expand(layer.out_features)
    if d == 0 or m2 == 0.0:
        layer.weight.zero_()
    else:
        layer.weight.normal_().mul_((std_t / math.sqrt(d * m2)).unsqueeze(1))
    if layer.bias is not None:
        layer.bias.copy_(mean_t)


@torch.no_grad()
def zero_(layer: nn.Linear) -> None:
    """Zeroes a generating layer (the additive output then starts exactly at theta0)."""
    layer.weight.zero_()
    if layer.bias is not None:
        layer.bias.zero_()
