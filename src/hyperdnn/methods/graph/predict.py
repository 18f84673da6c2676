"""Predicted parameters into a model: written once (initialisation) or passed in for a call (training).

:func:`predict_into` is what a user of a trained GHN calls to initialise a new
architecture: the predicted values are copied into the model's own parameters
(shapes checked, nothing else of the model touched), as ``load_state_dict`` would.
A low-rank weight is formed straight into the parameter's storage (one matmul with
``out=``), so predicting a large model needs no second copy of theta.
:func:`run_with` runs a model with predicted (differentiable) parameters for one call,
``torch.func.functional_call`` semantics; it is what training the GHN uses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.factored import Factored, densify

from .graph import ModelGraph


@torch.no_grad()
def write_params(model: nn.Module, theta: dict[str, Tensor | Factored]) -> nn.Module:
    """Copies ``theta`` into ``model``'s parameters in place.

    Args:
        model: the module to initialise (on a real device, not ``meta``).
        theta: ``{name: Tensor | Factored}`` for every parameter of ``model``.

    Returns:
        ``model``.

    Raises:
        ConfigError: a parameter of ``model`` has no predicted value, or ``theta`` names one it lacks.
        ShapeError: a predicted value's shape differs from the parameter's.
    """
    params = dict(model.named_parameters())
    missing, extra = [n for n in params if n not in theta], [n for n in theta if n not in params]
    if missing or extra:
        raise ConfigError(f"write_params: {type(model).__name__}'s parameters and the predicted ones differ "
                          f"(not predicted: {missing[:3]}, not in the model: {extra[:3]}); predict for this model")
    for name, p in params.items():
        w = theta[name]
        shape = tuple(w.shape)
        if shape != tuple(p.shape):
            raise ShapeError(f"write_params: parameter {name!r} has shape {tuple(p.shape)} but the prediction "
                             f"has {shape}; predict for this model (the graph was read from another one)")
        if p.device.type == "meta":
            raise ConfigError(f"write_params: parameter {name!r} is on the meta device; call "
                              "model.to_empty(device=...) first")
        if isinstance(w, Factored) and w.groups is None and w.base is None:
            # W = (scale A) B^T formed in the parameter's own storage: one pass over W (the scale on the small A).
            torch.matmul(w.a.to(p) * w.scale, w.b.to(p).T, out=p.view(p.shape[0], -1))
        else:
            p.copy_(w.dense() if isinstance(w, Factored) else w)
    return model


def predict_into(ghn: nn.Module, model: nn.Module, graph: ModelGraph | None = None) -> nn.Module:
    """Initialises ``model`` with the parameters ``ghn`` predicts for it.

    Args:
        ghn: a :class:`~hyperdnn.methods.graph.GraphHyperNetwork`.
        model: any module of the family it was trained on, never seen before included.
        graph: the model's graph when fx cannot read it (see ``module_chain_graph``).

    Returns:
        ``model``, its parameters overwritten (buffers, e.g. batch-norm statistics, untouched).
    """
    with torch.no_grad():
        theta = ghn(model, graph)
    return write_params(model, theta)


def run_with(model: nn.Module, theta: dict[str, Tensor | Factored], *args: Any, **kwargs: Any) -> Any:
    """``model(*args, **kwargs)`` with the parameters ``theta`` (gradients flow into ``theta``).

    Raises:
        ConfigError: ``theta`` does not name exactly ``model``'s parameters.
    """
    names = [n for n, _ in model.named_parameters()]
    if set(names) != set(theta):
        missing, extra = [n for n in names if n not in theta], [n for n in theta if n not in set(names)]
        raise ConfigError(f"run_with: {type(model).__name__}'s parameters and theta differ (not in theta: "
                          f"{missing[:3]}, not in the model: {extra[:3]}); predict for this model")
    # Buffers (batch-norm statistics) stay the model's own, as in a plain call.
    return torch.func.functional_call(model, densify(theta), args, kwargs, strict=False)
