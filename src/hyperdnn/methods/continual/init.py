"""The hypernetwork initialisation of the released continual-learning code."""

from __future__ import annotations

import torch
from torch import nn

from hyperdnn.errors import ConfigError
from hyperdnn.hyperdnn import HyperDNN

__all__ = ["xavier_init_"]


@torch.no_grad()
def xavier_init_(model: HyperDNN) -> None:
    """Re-initialise the hypernetwork's body and heads as the released code does:
    Xavier-uniform weight matrices, zero biases (``mnist/train_utils.py``,
    ``generate_classifier``, of chrhenning/hypercl).

    Task and chunk embeddings keep their N(0, 1) draws (``std_normal_temb`` and
    ``std_normal_emb`` default to 1 there). This replaces the core's default, which
    scales the head so that the generated weights start at the target's own init
    statistics and keeps PyTorch's default init (random biases) in the body.

    Args:
        model: a HyperDNN; every ``nn.Linear`` in ``model.hypernetwork.outputs`` is reset.
    """
    if not isinstance(model, HyperDNN):
        raise ConfigError(f"xavier_init_: the model must be a HyperDNN (got {type(model).__name__})")
    for m in model.hypernetwork.outputs.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
