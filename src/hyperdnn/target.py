"""The target side: which parameters are generated, and running the target with them.

The user's module is never modified. :func:`prepare_target` makes a private copy
in which every generated parameter is replaced by an empty, non-persistent
buffer (so it is neither trained as an ordinary parameter nor stored twice);
the generated tensors are passed in at call time by :class:`StaticCaller` (one
weight set; ``functional_call`` semantics, filled and emptied in ``try``/``finally``)
or through the batched path of
:mod:`hyperdnn.batched` (one weight set per sample or per ensemble member).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, ShapeError
from .selection import Selector, select


@dataclass(frozen=True)
class ParamSpec:
    """One generated target parameter: its name in the target and its shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class TargetSpec:
    """The generated part of a target: parameter specs in module order.

    Attributes:
        params: the generated parameters, in the target's order.
        init_mean: mean of each parameter's initial value in the user's module.
        init_std: standard deviation of each parameter's initial value.
    """

    params: tuple[ParamSpec, ...]
    init_mean: tuple[float, ...]
    init_std: tuple[float, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def numel(self) -> int:
        return sum(p.numel for p in self.params)

    def to_json(self) -> dict[str, Any]:
        return {"params": [[p.name, list(p.shape)] for p in self.params]}

    def with_init(self, scheme: str) -> "TargetSpec":
        """The spec with the scale the generated weights should start at.

        Args:
            scheme: ``"target"`` keeps the target's own init statistics; ``"hyperfan-in"``
                and ``"hyperfan-out"`` (Chang et al. 2020) give every matrix or kernel
                ``Var = 1 / fan_in`` or ``1 / fan_out`` and mean 0 (vectors keep their statistics).
        """
        if scheme == "target":
            return self
        if scheme not in ("hyperfan-in", "hyperfan-out"):
            raise ConfigError(f"HyperDNN: init must be 'target', 'hyperfan-in' or 'hyperfan-out' (got {scheme!r})")
        stds, means = list(self.init_std), list(self.init_mean)
        for i, p in enumerate(self.params):
            if len(p.shape) >= 2:
                receptive = math.prod(p.shape[2:])
                fan = p.shape[1] * receptive if scheme == "hyperfan-in" else p.shape[0] * receptive
                stds[i], means[i] = 1.0 / math.sqrt(fan), 0.0
        return TargetSpec(self.params, tuple(means), tuple(stds))


def _stats(t: Tensor) -> tuple[float, float]:
    if t.numel() == 0:
        return 0.0, 0.0
    if t.is_meta:
        # No values (a target built from shapes alone): assume PyTorch's default
        # kaiming-uniform init for matrices, zeros for vectors.
        fan_in = math.prod(t.shape[1:]) if t.dim() >= 2 else 0
        return 0.0, (1.0 / math.sqrt(3 * fan_in)) if fan_in else 0.0
    t = t.detach().float()
    std = t.std().item() if t.numel() > 1 else 0.0
    return t.mean().item(), std


def prepare_target(
    module: nn.Module, generate: Selector = "all", freeze: Selector = None
) -> tuple[nn.Module, TargetSpec, dict[str, Tensor]]:
    """Copies ``module`` and turns the selected parameters into generated slots.

    Args:
        module: any ``nn.Module``; it is left untouched.
        generate: which parameters the hypernetwork makes (see :mod:`hyperdnn.selection`).
        freeze: which of the remaining parameters are frozen (``requires_grad=False``).

    Returns:
        ``(copy, spec, initial)``: the private target copy, the spec of the generated
        parameters and a mapping name -> the user's initial tensor (not copied).

    Raises:
        ConfigError: nothing selected, or a parameter both generated and frozen.
        HDTypeError: a selector of the wrong type.
    """
    if not isinstance(module, nn.Module):
        from .errors import HDTypeError

        raise HDTypeError(f"HyperDNN: target must be a torch.nn.Module (got {type(module).__name__})")
    gen_names = select(module, generate, "generate")
    if not gen_names:
        raise ConfigError("HyperDNN: generate selects no parameter of the target; nothing to generate")
    frozen = select(module, freeze, "freeze")
    both = sorted(set(gen_names) & set(frozen))
    if both:
        raise ConfigError(f"HyperDNN: parameters both generated and frozen: {both}")

    params = dict(module.named_parameters())
    initial = {n: params[n] for n in gen_names}
    gen_ids = {id(params[n]) for n in gen_names}
    # The memo makes deepcopy put an empty placeholder where a generated parameter was,
    # so a large target is never copied in full.
    memo: dict[int, Any] = {}
    placeholders: dict[int, Tensor] = {}
    for n in gen_names:
        p = params[n]
        ph = torch.empty(0, dtype=p.dtype, device=p.device if not p.is_meta else "cpu")
        placeholders[id(p)] = ph
        memo[id(p)] = ph
    target = copy.deepcopy(module, memo)

    ph_ids = {id(ph) for ph in placeholders.values()}
    # Every name under which a generated tensor is reachable (tied weights included).
    for mod_name, mod in target.named_modules(remove_duplicate=False):
        for attr, value in list(mod._parameters.items()):
            if value is None or id(value) not in ph_ids:
                continue
            del mod._parameters[attr]
            mod.register_buffer(attr, value, persistent=False)
            setattr(mod, attr, value)  # lets nn.RNNBase refresh its flat weight list
    for n in frozen:
        target.get_parameter(n).requires_grad_(False)

    specs, means, stds = [], [], []
    for n in gen_names:
        specs.append(ParamSpec(n, tuple(params[n].shape)))
        m, s = _stats(params[n])
        means.append(m)
        stds.append(s)
    del gen_ids
    return target, TargetSpec(tuple(specs), tuple(means), tuple(stds)), initial


def check_weights(spec: TargetSpec, theta: dict[str, Tensor]) -> int | None:
    """Checks that ``theta`` holds exactly the generated parameters with the right shapes.

    Returns:
        ``None`` for one weight set, or the size of the leading batch dimension.

    Raises:
        ShapeError: a missing or unknown name, a wrong shape, or inconsistent batch sizes.
    """
    names = set(spec.names)
    given = set(theta)
    if names != given:
        missing, extra = sorted(names - given), sorted(given - names)
        raise ShapeError(f"HyperDNN: weights do not match the generated parameters: missing {missing}, unknown {extra}")
    batch: int | None = None
    for i, p in enumerate(spec.params):
        t = theta[p.name]
        if tuple(t.shape) == p.shape:
            b = None
        elif tuple(t.shape[1:]) == p.shape:
            b = t.shape[0]
        else:
            raise ShapeError(
                f"HyperDNN: weight {p.name!r} has shape {tuple(t.shape)}; expected {p.shape} "
                f"or (batch, *{p.shape})"
            )
        if i == 0:
            batch = b
        elif b != batch:
            raise ShapeError(
                f"HyperDNN: weight {p.name!r} has batch {b} but {spec.params[0].name!r} has batch {batch}"
            )
    return batch


class StaticCaller:
    """Runs the prepared target with one weight set, as ``functional_call`` does, but faster.

    The generated slots are buffers of HyperDNN's private copy of the target, so
    they can be filled for the duration of the call and emptied in ``finally``;
    this skips ``functional_call``'s general name resolution, which costs more than
    a small target's whole forward pass. Tied names are filled together, and
    ``nn.RNNBase``'s own list of weights is kept in step.
    """

    def __init__(self, target: nn.Module, names: list[str]) -> None:
        self.target = target
        wanted = set(names)
        first: dict[int, str] = {}
        self.slots: dict[str, list[tuple[nn.Module, str]]] = {n: [] for n in names}
        #: name -> the other names under which the same (tied) tensor is reachable
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

    def __call__(self, theta: dict[str, Tensor], args: tuple, kwargs: dict) -> Any:
        # The empty placeholders are read at each call, so .to()/.double() on the model are followed.
        saved = [(mod, attr, mod._buffers[attr]) for slots in self.slots.values() for mod, attr in slots]
        try:
            for name, slots in self.slots.items():
                t = theta[name]
                for mod, attr in slots:
                    mod._buffers[attr] = t
            for mod, i, name in self.rnn:
                mod._flat_weights[i] = theta[name]
            return self.target(*args, **kwargs)
        finally:
            for mod, attr, empty in saved:
                mod._buffers[attr] = empty
            for mod, i, name in self.rnn:
                first_mod, first_attr = self.slots[name][0]
                mod._flat_weights[i] = first_mod._buffers[first_attr]
