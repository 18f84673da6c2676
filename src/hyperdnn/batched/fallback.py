"""The batched path for modules without a rule: ``torch.func.vmap`` over groups."""

from __future__ import annotations

from torch import Tensor
from torch.func import vmap
from torch.nn.utils.stateless import _reparametrize_module
from torch.utils._pytree import tree_map

from ..errors import ShapeError


def vmap_rule(mod, w, groups: int, batch_dim: int, *args, **kwargs):
    """Runs ``mod`` once per group under ``vmap``.

    Tensor inputs with as many rows along ``batch_dim`` as the first input are
    split into the groups; other tensors (masks, tables) are shared by all groups.
    """
    first = next((a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)), None)
    if first is None or first.dim() <= batch_dim or first.shape[batch_dim] % groups:
        raise ShapeError(
            f"{type(mod).__name__}: input of shape {None if first is None else tuple(first.shape)} does not have "
            f"a multiple of {groups} rows along dim {batch_dim}"
        )
    rows = first.shape[batch_dim]

    def batched(a):
        return isinstance(a, Tensor) and a.dim() > batch_dim and a.shape[batch_dim] == rows

    def split(a):
        return a.unflatten(batch_dim, (groups, -1)).movedim(batch_dim, 0) if batched(a) else a

    flat_args = tree_map(split, args)
    flat_kwargs = tree_map(split, kwargs)
    arg_dims = tree_map(lambda a: 0 if batched(a) else None, args)
    kw_dims = tree_map(lambda a: 0 if batched(a) else None, kwargs)

    forward = type(mod).forward

    def one(weights, a, kw):
        # The module's own forward under functional_call's reparametrisation: the module's
        # hooks already ran around the batched call, so they are not run again per sample.
        with _reparametrize_module(mod, weights, tie_weights=True, strict=False):
            return forward(mod, *a, **kw)

    out = vmap(one, in_dims=(0, arg_dims, kw_dims))(w, flat_args, flat_kwargs)
    return tree_map(lambda o: o.movedim(0, batch_dim).flatten(batch_dim, batch_dim + 1) if isinstance(o, Tensor) else o, out)
