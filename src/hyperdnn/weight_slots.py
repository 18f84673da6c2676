"""The one way generated weights enter the target for a call.

HyperDNN's private copy of the target holds every generated parameter as an
empty, non-persistent buffer: a *slot*. :meth:`WeightSlots.filled` puts the
generated tensors in their slots (every tied name of a tensor too, and
``nn.RNNBase``'s own weight list), optionally swaps in batched ``forward``
methods for modules that run per-sample weights, and restores everything in
``finally``. Every path (one weight set, per-sample weight sets, ensembles, the
``vmap`` fallback inside them) runs inside it, so forward hooks and forward
pre-hooks see the generated weights the module computes with: the parameter's
shape for one weight set, ``(G, *shape)`` for ``G`` sets, and a
:class:`~hyperdnn.factored.Factored` value for low-rank weights that a
batched Linear, Conv or Embedding consumes in parts.

Calls from several threads are serialised on a lock (the slots are shared
state of the model); a model serves one call at a time. For parallel
inference, give each thread its own ``copy.deepcopy(model)``.

This is ``torch.func.functional_call``'s semantics (weights in place for the
call, gone after it), written for a fixed set of names, which skips
``functional_call``'s name resolution: for a small target that resolution
costs more than the forward pass itself.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import torch
from torch import nn

from .errors import ConfigError


class WeightSlots:
    """The generated slots of a prepared target, and the context that fills them.

    Args:
        target: the private target copy (generated parameters are empty buffers).
        names: the generated parameters' names.

    Attributes:
        aliases: name -> the other names under which the same (tied) tensor is reachable.
    """

    def __init__(self, target: nn.Module, names: list[str]) -> None:
        self.target = target
        wanted = set(names)
        first: dict[int, str] = {}
        self.slots: dict[str, list[tuple[nn.Module, str]]] = {n: [] for n in names}
        self.aliases: dict[str, list[str]] = {}
        for mod_name, mod in target.named_modules(remove_duplicate=False):
            for attr, buf in mod._buffers.items():
                full = f"{mod_name}.{attr}" if mod_name else attr
                if buf is None:
                    continue
                key = first.setdefault(id(buf), full) if full in wanted or id(buf) in first else None
                if key is not None and key in self.slots:
                    self.slots[key].append((mod, attr))
                    if full != key:
                        self.aliases.setdefault(key, []).append(full)
        missing = [n for n, s in self.slots.items() if not s]
        if missing:
            raise ConfigError(f"HyperDNN: internal error, no slot for generated tensors {missing}")
        self.rnn: list[tuple[nn.Module, int, str]] = []
        for n, slots in self.slots.items():
            for mod, attr in slots:
                if isinstance(mod, nn.RNNBase) and attr in mod._flat_weights_names:
                    self.rnn.append((mod, mod._flat_weights_names.index(attr), n))
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        # copy.deepcopy(model) gives the copy its own lock (a lock cannot be copied).
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def filled(self, theta: dict[str, Any], forwards: list[tuple[nn.Module, Callable]] | None = None) -> "_Filled":
        """A context in which every slot holds ``theta[name]`` (and ``forwards`` replace
        those modules' ``forward``); all is restored on exit, also after an exception.

        Args:
            theta: name -> tensor (or ``Factored``) for every generated name.
            forwards: ``(module, forward)`` pairs installed for the duration (the batched rules).
        """
        return _Filled(self, theta, forwards or [])

    def run(self, theta: dict[str, Any], args: tuple, kwargs: dict) -> Any:
        """``target(*args, **kwargs)`` with one weight set in the slots."""
        with self.filled(theta):
            return self.target(*args, **kwargs)


class _Filled:
    """The context manager behind :meth:`WeightSlots.filled` (a class: it is on every call's path)."""

    __slots__ = ("owner", "theta", "forwards", "saved", "patched")

    def __init__(self, owner: WeightSlots, theta: dict[str, Any], forwards: list[tuple[nn.Module, Callable]]) -> None:
        self.owner, self.theta, self.forwards = owner, theta, forwards

    def __enter__(self) -> None:
        owner = self.owner
        # Under torch.compile the lock is not traceable, and a compiled graph runs
        # the whole call as one unit anyway.
        if not torch.compiler.is_compiling():
            owner._lock.acquire()
        # The empty placeholders are read at each call, so .to()/.double() on the model are followed.
        self.saved = [(mod, attr, mod._buffers[attr]) for slots in owner.slots.values() for mod, attr in slots]
        self.patched: list[tuple[nn.Module, Any]] = []
        try:
            for name, slots in owner.slots.items():
                t = self.theta[name]
                for mod, attr in slots:
                    mod._buffers[attr] = t
            for mod, i, name in owner.rnn:
                mod._flat_weights[i] = self.theta[name]
            for mod, forward in self.forwards:
                self.patched.append((mod, mod.__dict__.get("forward")))
                mod.forward = forward
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: Any) -> None:
        owner = self.owner
        try:
            for mod, before in reversed(self.patched):
                if before is None:
                    mod.__dict__.pop("forward", None)
                else:
                    mod.forward = before
            for mod, attr, empty in self.saved:
                mod._buffers[attr] = empty
            for mod, i, name in owner.rnn:
                first_mod, first_attr = owner.slots[name][0]
                mod._flat_weights[i] = first_mod._buffers[first_attr]
        finally:
            if not torch.compiler.is_compiling():
                owner._lock.release()
