"""Dynamic outputs: the target given at call time (``model(x, target=module)``).

A HyperDNN is built around one target, but an output strategy that makes a
weight from its coordinates (:class:`~hyperdnn.outputs.implicit.Implicit`)
can make the weights of any module of the same family: the same kinds of
layers at other widths (or depths). :class:`DynamicTargets` reads the spec of
such a module, prepares a private copy of it with generated slots (the user's
module is never modified) and caches copy, spec and
:class:`~hyperdnn.weight_slots.WeightSlots` by the module's *shape signature*
(class, parameter and buffer names and shapes), so a call with a module seen
before (or one of the same shapes) rebuilds nothing.

A cached copy keeps the buffers (e.g. batch-norm statistics) of the first
module of its signature, and follows the model's ``train()``/``eval()`` mode,
device and dtype at each call. Output strategies that cannot generate for an
arbitrary spec (every strategy whose head is sized by the target) refuse a
call-time target with a ``ConfigError`` that points to ``hd.Implicit``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .errors import ConfigError, HDTypeError
from .selection import Selector
from .target import TargetSpec, prepare_target
from .weight_slots import WeightSlots


class DynamicOutput:
    """What an output strategy provides to serve call-time targets (a mixin of ``OutputModule``).

    ``generate(z, spec)`` makes ``{name: tensor}`` for any spec of the family;
    ``check_family(kinds)`` raises ``ConfigError`` naming the first parameter whose
    owning module kind the strategy's coordinates do not cover.
    """

    def generate(self, z: Tensor, spec: TargetSpec) -> dict[str, Tensor]:
        raise NotImplementedError

    def check_family(self, spec: TargetSpec, kinds: dict[str, str]) -> None:
        raise NotImplementedError


def module_kinds(module: nn.Module, names: list[str]) -> dict[str, str]:
    """``{parameter name: class name of the module that owns it}``, e.g. ``{"fc.weight": "Linear"}``."""
    owners = {}
    for name in names:
        owner_name = name.rpartition(".")[0]
        owners[name] = type(module.get_submodule(owner_name)).__name__
    return owners


def signature(module: nn.Module) -> tuple:
    """The cache key of a call-time target: its class and its parameters' and buffers' names and shapes."""
    params = tuple((n, tuple(p.shape)) for n, p in module.named_parameters())
    buffers = tuple((n, tuple(b.shape)) for n, b in module.named_buffers())
    return (type(module).__qualname__, params, buffers)


class _Entry:
    """One prepared call-time target: the private copy, its spec and its slots."""

    __slots__ = ("target", "spec", "slots", "param_order")

    def __init__(self, target: nn.Module, spec: TargetSpec, slots: WeightSlots, param_order: list[str]) -> None:
        self.target, self.spec, self.slots, self.param_order = target, spec, slots, param_order


class DynamicTargets:
    """The call-time targets of one HyperDNN, prepared once per shape signature.

    Args:
        outputs: the built output strategy (must be a :class:`DynamicOutput` to serve a target).
        generate: the model's ``generate`` selector, applied to each call-time module.
        family: ``{parameter name: owning module kind}`` of the construction target.
    """

    def __init__(self, outputs: nn.Module, generate: Selector, family: dict[str, str]) -> None:
        self.outputs = outputs
        self.selector = generate
        self.family = family
        self._cache: dict[tuple, _Entry] = {}

    def __getstate__(self) -> dict[str, Any]:
        # A deep copy of the model starts with an empty cache (the copies would be shared otherwise).
        return {**self.__dict__, "_cache": {}}

    def resolve(self, module: Any, like: nn.Module) -> _Entry:
        """The prepared copy of ``module`` (made on the first call with its signature).

        Args:
            module: the call-time target (an ``nn.Module`` of the trained family).
            like: the model's own target copy, whose mode, device and dtype the copy follows.

        Raises:
            HDTypeError: ``module`` is no ``nn.Module``.
            ConfigError: the output strategy cannot generate for a call-time target, the
                module has a layer kind outside the family, or parameters that are not generated.
        """
        if not isinstance(module, nn.Module):
            raise HDTypeError(f"HyperDNN: target= must be a torch.nn.Module (got {type(module).__name__})")
        if not isinstance(self.outputs, DynamicOutput):
            raise ConfigError(
                f"HyperDNN: the output strategy {type(self.outputs).__name__.removesuffix('Output')} makes weights for "
                "the construction target's shapes only and cannot take a target at call time; build the model with "
                "outputs=hd.Implicit(...) (weights as a function of their coordinates) to serve targets of any width"
            )
        key = signature(module)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._prepare(module)
            self._cache[key] = entry
        if entry.target.training != like.training:
            entry.target.train(like.training)
        ref = next(self.outputs.parameters(), None)
        if ref is not None:
            buf = next(iter(entry.target.buffers()), None)
            if buf is not None and (buf.device != ref.device or (buf.is_floating_point() and buf.dtype != ref.dtype)):
                entry.target.to(device=ref.device, dtype=ref.dtype)
        return entry

    def _prepare(self, module: nn.Module) -> _Entry:
        copy, spec, _ = prepare_target(module, self.selector)
        own = [n for n, p in copy.named_parameters()]
        if own:
            raise ConfigError(
                f"HyperDNN: call-time target {type(module).__name__} has parameters that are not generated ({own[:3]}); "
                "a call-time target's parameters must all be generated (they would otherwise be untrained): "
                "build the model with generate='all' or pass a module whose parameters are all selected"
            )
        kinds = module_kinds(module, spec.names)
        outside = [(n, k) for n, k in kinds.items() if k not in set(self.family.values())]
        if outside:
            name, kind = outside[0]
            raise ConfigError(
                f"HyperDNN: call-time target {type(module).__name__}: module {name.rpartition('.')[0]!r} ({kind}) is "
                f"outside the family this hypernetwork was trained on (layer kinds {sorted(set(self.family.values()))}); "
                "its weights have no coordinates here: give a target made of those layer kinds"
            )
        self.outputs.check_family(spec, kinds)
        ref = next(self.outputs.parameters(), None)
        if ref is not None:
            copy.to(device=ref.device, dtype=ref.dtype)
        return _Entry(copy, spec, WeightSlots(copy, spec.names), [n for n, _ in module.named_parameters()])

    def generate(self, z: Tensor, entry: _Entry) -> dict[str, Tensor]:
        """The weights of a prepared call-time target for the condition ``z`` (``(dim,)`` or ``(G, dim)``)."""
        return self.outputs.generate(z, entry.spec)


class TargetView:
    """A HyperDNN seen through a call-time target, for :func:`hyperdnn.summary.summarize`."""

    def __init__(self, model: nn.Module, entry: _Entry) -> None:
        self.spec, self.target, self.param_order = entry.spec, entry.target, entry.param_order
        self.hypernetwork = model.hypernetwork


def pop_target(kwargs: dict[str, Any]) -> nn.Module | None:
    """Removes and returns ``kwargs["target"]`` when it is a module (a call-time target).

    A ``target`` keyword that is no module stays for the target's own forward (e.g. a
    module whose forward takes ``target=labels``).
    """
    if isinstance(kwargs.get("target"), nn.Module):
        return kwargs.pop("target")
    return None

