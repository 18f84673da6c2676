"""Which target parameters a rule picks: all, by module type, by name pattern.

A *selector* is one of
- ``"all"``: every parameter;
- an ``nn.Module`` subclass (or a tuple of them): every parameter inside a
  module of that type, its submodules included (``nn.MultiheadAttention``
  selects ``out_proj`` too), e.g. ``nn.Linear``;
- a name pattern (``fnmatch`` style, e.g. ``"layers.*.weight"``) or an exact name;
- a callable ``(name, parameter) -> bool``;
- a list of the above (union).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import nn

from .errors import ConfigError, HDTypeError

Selector = Union[str, type, tuple, Callable[[str, torch.Tensor], bool], Sequence[Any], None]


def _owner_types(module: nn.Module) -> dict[str, set[type]]:
    """Maps each parameter name to the types of every module it lies inside (tied aliases included)."""
    by_id: dict[int, set[type]] = {}
    for mod_name, mod in module.named_modules(remove_duplicate=False):
        for _, p in mod.named_parameters():
            by_id.setdefault(id(p), set()).add(type(mod))
    return {n: by_id[id(p)] for n, p in module.named_parameters()}


def select(module: nn.Module, selector: Selector, role: str) -> list[str]:
    """Returns the names of ``module``'s parameters that ``selector`` picks, in module order.

    Args:
        module: the target module.
        selector: see the module docstring; ``None`` picks nothing.
        role: the argument's name, used in error messages (``"generate"``, ``"freeze"``).

    Raises:
        ConfigError: a pattern or name matches no parameter.
        HDTypeError: the selector is of an unsupported type.
    """
    names = [n for n, _ in module.named_parameters()]
    if selector is None:
        return []
    owners = _owner_types(module)
    params = dict(module.named_parameters())
    if isinstance(selector, tuple) and not all(isinstance(t, type) for t in selector):
        selector = list(selector)  # a tuple of patterns means the same as a list
    items = list(selector) if isinstance(selector, list) else [selector]
    chosen: set[str] = set()
    for item in items:
        if isinstance(item, str):
            if item == "all":
                hits = set(names)
            else:
                hits = {n for n in names if n == item or fnmatch.fnmatchcase(n, item)}
            if not hits:
                raise ConfigError(
                    f"HyperDNN: {role}={item!r} matches no parameter of the target; "
                    f"its parameters are {names}"
                )
        elif isinstance(item, type) and issubclass(item, nn.Module) or (
            isinstance(item, tuple) and all(isinstance(t, type) and issubclass(t, nn.Module) for t in item)
        ):
            types = item if isinstance(item, tuple) else (item,)
            hits = {n for n in names if any(issubclass(o, types) for o in owners[n])}
            if not hits:
                wanted = ", ".join(t.__name__ for t in types)
                raise ConfigError(
                    f"HyperDNN: {role}={wanted} matches no parameter: the target holds no "
                    f"parameter in a module of that type"
                )
        elif callable(item):
            hits = {n for n in names if item(n, params[n])}
        else:
            raise HDTypeError(
                f"HyperDNN: {role} must be 'all', a module type, a name pattern, a callable "
                f"or a list of these (got {item!r} of type {type(item).__name__})"
            )
        chosen |= hits
    return [n for n in names if n in chosen]
