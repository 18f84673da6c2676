"""The baseline without a hypernetwork: a trained wide network cut to a narrower one."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hyperdnn.errors import ShapeError


@torch.no_grad()
def keep_first_channels(reference: nn.Module, narrow: nn.Module) -> nn.Module:
    """A copy of ``narrow`` whose every parameter and buffer is the leading block of the
    ``reference``'s (the first ``k`` channels of each layer, all kernel positions).

    Args:
        reference: the trained wide network (not modified).
        narrow: a member of the same family with every size at most the reference's.

    Returns:
        The pruned network (a new module).

    Raises:
        ShapeError: a parameter the reference lacks, or one larger than the reference's.
    """
    out = copy.deepcopy(narrow)
    ref = dict(reference.named_parameters()) | dict(reference.named_buffers())
    for name, t in list(out.named_parameters()) + list(out.named_buffers()):
        if name not in ref:
            raise ShapeError(f"keep_first_channels: the reference has no tensor {name!r}")
        src = ref[name]
        if src.dim() != t.dim() or any(a > b for a, b in zip(t.shape, src.shape)):
            raise ShapeError(
                f"keep_first_channels: {name!r} has shape {tuple(t.shape)} in the narrow network but "
                f"{tuple(src.shape)} in the reference; every size must be at most the reference's"
            )
        t.copy_(src[tuple(slice(0, s) for s in t.shape)])
    return out
