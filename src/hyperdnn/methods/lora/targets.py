"""Which modules of a pretrained model get a LoRA, chosen as PEFT chooses them.

``target_modules`` is a list of names (a module matches when its full name equals
one or ends with ``"." + name``, e.g. ``"query"``) or one string read as a regular
expression over full names; ``exclude_modules`` removes names the same way. The
match itself is PEFT's own (``peft.tuners.tuners_utils.check_target_module_exists``),
so a config means here exactly what it means in ``peft.LoraConfig``.

Each adapted module is a :class:`LoraSite`: its name, its layer index (the first
integer in its name, PEFT's ``layers_to_transform`` rule) and its *kind* (the name
with the layer index replaced by ``*``), which the shared hypernetwork reads as
its layer and position embeddings (HyperFormer, Mahabadi et al. 2021).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from torch import nn

from ...config import Config, checked, number, positive_int
from ...errors import ConfigError, HDTypeError

__all__ = ["LoraSite", "LoraTargets", "find_sites"]

_LAYER = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def _names(part: str, name: str, value: object) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(
        f"{part}: {name} must be a list of module names (e.g. ['query', 'value']) or one regular "
        f"expression string (got {value!r})"
    )


def _optional_names(part: str, name: str, value: object) -> object:
    return None if value is None else _names(part, name, value)


@dataclass
class LoraTargets(Config):
    """The LoRA part of a ``peft.LoraConfig``: where, which rank, which scale.

    Each adapted ``nn.Linear`` computes ``W0 x + (lora_alpha / r) * B (A x)`` with
    ``A: (r, in)`` and ``B: (out, r)`` (Hu et al. 2021, PEFT's layout).

    Args:
        target_modules: module names or suffixes (``("query", "value")``), or one
            regular expression matched against full module names.
        r: the rank (> 0).
        lora_alpha: the scale numerator; the update is scaled by ``lora_alpha / r``.
        lora_dropout: dropout on the LoRA branch's input in training mode (the base
            ``W0 x`` sees the whole input), as PEFT applies it; exported to PEFT.
        exclude_modules: names or a regular expression removed from the match.
        modules_to_save: modules trained in full beside the LoRA (e.g. a new
            classifier head), saved with the adapter as PEFT does.

    Example:
        >>> LoraTargets(target_modules=("query", "value"), r=8, lora_alpha=16).scale
        2.0
    """

    target_modules: str | tuple[str, ...] = checked(_names, default=("query", "value"))
    r: int = checked(positive_int, default=8)
    lora_alpha: float = checked(number(low=0.0, low_open=True), default=8.0)
    lora_dropout: float = checked(number(0.0, 1.0), default=0.0)
    exclude_modules: str | tuple[str, ...] | None = checked(_optional_names, default=None)
    modules_to_save: tuple[str, ...] | None = checked(_optional_names, default=None)

    @property
    def scale(self) -> float:
        """``lora_alpha / r``, the factor of ``B A``."""
        return self.lora_alpha / self.r

    def peft_config(self, **extra: object):
        """This selection as a ``peft.LoraConfig`` (extra keywords go to it, e.g. ``task_type``)."""
        from peft import LoraConfig

        tm = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        ex = self.exclude_modules if isinstance(self.exclude_modules, (str, type(None))) else list(self.exclude_modules)
        return LoraConfig(
            r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout, target_modules=tm,
            exclude_modules=ex, modules_to_save=_as_list(self.modules_to_save),
            bias="none", **extra,
        )


@dataclass(frozen=True)
class LoraSite:
    """One adapted module.

    Attributes:
        module: its full name in the base model (``"encoder.layer.3.attention.self.query"``).
        layer: the first integer in the name (0 when there is none).
        kind: the name with that integer replaced by ``*`` (one kind per role in a block).
        shape: the weight's shape ``(out, in)``.
    """

    module: str
    layer: int
    kind: str
    shape: tuple[int, int]

    @property
    def weight(self) -> str:
        """The name of the adapted parameter."""
        return f"{self.module}.weight"


def find_sites(model: nn.Module, targets: LoraTargets) -> list[LoraSite]:
    """The modules of ``model`` that ``targets`` adapts, in module order.

    Args:
        model: the pretrained model (left untouched).
        targets: the selection.

    Returns:
        One :class:`LoraSite` per adapted ``nn.Linear``.

    Raises:
        ConfigError: a name that matches no module (the message lists the nearest
            module names), or a match that is not an ``nn.Linear``.
    """
    from peft.tuners.tuners_utils import check_target_module_exists

    if not isinstance(model, nn.Module):
        raise HDTypeError(f"find_sites: model must be a torch.nn.Module (got {type(model).__name__})")
    config = targets.peft_config()
    names = [n for n, _ in model.named_modules() if n]
    modules = dict(model.named_modules())
    hits = [n for n in names if check_target_module_exists(config, n)]
    if isinstance(targets.target_modules, tuple):
        for t in targets.target_modules:
            if not any(n == t or n.endswith("." + t) for n in names):
                raise ConfigError(_no_match(t, names))
    if not hits:
        raise ConfigError(_no_match(str(targets.target_modules), names))
    sites = []
    for n in hits:
        mod = modules[n]
        if not isinstance(mod, nn.Linear):
            raise ConfigError(
                f"LoraTargets: target_modules matches {n!r}, a {type(mod).__name__}; only nn.Linear layers "
                "get a generated LoRA here. Name the Linear layers (e.g. their last name component), or exclude "
                f"it with exclude_modules=[{n!r}]"
            )
        m = _LAYER.search(n)
        layer = int(m.group(1)) if m else 0
        kind = n[: m.start(1)] + "*" + n[m.end(1):] if m else n
        sites.append(LoraSite(n, layer, kind, (mod.out_features, mod.in_features)))
    return sites


def _as_list(value: str | tuple[str, ...] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _no_match(wanted: str, names: list[str]) -> str:
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    near = difflib.get_close_matches(wanted.rsplit(".", 1)[-1], short, n=5, cutoff=0.4)
    near_full = difflib.get_close_matches(wanted, names, n=3, cutoff=0.4)
    hint = ", ".join(repr(x) for x in dict.fromkeys(near + near_full)) or "none close"
    return (
        f"LoraTargets: target_modules={wanted!r} matches no module of the model; the nearest module names "
        f"are {hint} (the model's module names end in: {', '.join(short[:20])}"
        f"{', ...' if len(short) > 20 else ''}). Use one of them, as peft.LoraConfig would"
    )
