"""The target side: which parameters are generated, and running the target with them.

The user's module is never modified. :func:`prepare_target` makes a private copy
in which every generated parameter is replaced by an empty, non-persistent
buffer (so it is neither trained as an ordinary parameter nor stored twice);
the generated tensors are put in those slots for each call by
:class:`~hyperdnn.weight_slots.WeightSlots`, the one mechanism every path
(one weight set, per-sample weight sets, ensembles) runs through.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, ShapeError
from .factored import Factored
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
    return target, TargetSpec(tuple(specs), tuple(means), tuple(stds)), initial


def check_weights(spec: TargetSpec, theta: dict[str, Any]) -> int | None:
    """Checks that ``theta`` holds exactly the generated parameters with the right shapes
    (dense tensors, or ``Factored`` values of the parameter's shape).

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
        if isinstance(t, Factored):
            if tuple(t.shape) != p.shape:
                raise ShapeError(f"HyperDNN: factored weight {p.name!r} has shape {t.shape}; expected {p.shape}")
            b = t.groups
        elif not isinstance(t, Tensor):
            raise ShapeError(f"HyperDNN: weight {p.name!r} is a {type(t).__name__}; expected a tensor or hd.Factored")
        elif tuple(t.shape) == p.shape:
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
