"""PEFT both ways: a generated adapter saved as a PEFT LoRA directory, merged, or read back.

Built on ``peft`` itself (``get_peft_model``, ``set_peft_model_state_dict``,
``save_pretrained``, ``merge_and_unload``, ``load_peft_weights``): the files are
whatever PEFT writes, so ``peft.PeftModel.from_pretrained(base, path)`` loads them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import CheckpointError, ConfigError, ShapeError
from ...factored import Factored
from ...hyperdnn import HyperDNN
from .targets import LoraTargets

__all__ = ["PeftAdapter", "generated_factors", "load_peft_adapter", "merged_model", "peft_model_from", "save_peft_adapter"]

_PREFIX = "base_model.model."


@dataclass(frozen=True)
class PeftAdapter:
    """A LoRA adapter in PEFT's layout.

    Attributes:
        targets: its rank, alpha, dropout and module list.
        factors: ``{module name: (A (r, in), B (out, r))}``.
        extra: other saved tensors (``modules_to_save``), by PEFT's key.
    """

    targets: LoraTargets
    factors: dict[str, tuple[Tensor, Tensor]]
    extra: dict[str, Tensor]

    def delta(self, module: str) -> Tensor:
        """``(alpha / r) B A``, the update of one module's weight, ``(out, in)``."""
        a, b = self.factors[module]
        return self.targets.scale * (b @ a)


def generated_factors(model: HyperDNN, **conditions: Any) -> dict[str, tuple[Tensor, Tensor]]:
    """``{module: (A, B)}`` the model generates for one condition (PEFT layout, differentiable)."""
    theta = model.weights(dense=False, **conditions)
    out = {}
    for name, f in theta.items():
        if not isinstance(f, Factored):
            raise ConfigError(f"save_peft_adapter: {name!r} is not a factored LoRA weight; build the model with lora_model")
        if f.groups is not None:
            raise ShapeError(
                f"save_peft_adapter: the condition gives {f.groups} adapters; export one condition at a time "
                "(e.g. task=3, not a batch of tasks)"
            )
        out[name[: -len(".weight")]] = (f.b.transpose(0, 1), f.a)
    return out


def peft_model_from(model: HyperDNN, base: nn.Module, targets: LoraTargets, **conditions: Any) -> Any:
    """A ``peft.PeftModel`` on a copy of ``base`` holding the adapter generated for ``conditions``.

    The copy also takes the HyperDNN's trained ``modules_to_save`` (e.g. a classifier head).
    """
    from peft import get_peft_model, set_peft_model_state_dict

    with torch.no_grad():
        factors = {m: (a.detach().clone(), b.detach().clone()) for m, (a, b) in generated_factors(model, **conditions).items()}
    plain = copy.deepcopy(base)
    own = {n: p.detach() for n, p in model.target.named_parameters()}
    plain.load_state_dict(own, strict=False)
    cfg = LoraTargets(target_modules=tuple(factors), r=targets.r, lora_alpha=targets.lora_alpha,
                      lora_dropout=targets.lora_dropout, modules_to_save=targets.modules_to_save).peft_config()
    peft_model = get_peft_model(plain, cfg)
    state = {}
    for m, (a, b) in factors.items():
        state[f"{_PREFIX}{m}.lora_A.weight"] = a
        state[f"{_PREFIX}{m}.lora_B.weight"] = b
    for n, p in own.items():
        # PEFT reads the fully trained modules from the same state, under their plain names.
        if any(n.startswith(m + ".") or f".{m}." in f".{n}" for m in targets.modules_to_save or ()):
            state[f"{_PREFIX}{n}"] = p.clone()
    result = set_peft_model_state_dict(peft_model, state)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise CheckpointError(f"save_peft_adapter: PEFT did not take the keys {unexpected[:3]}")
    peft_model.eval()
    return peft_model


def save_peft_adapter(model: HyperDNN, base: nn.Module, targets: LoraTargets, path: str | Path,
                      *, merged: bool = False, **conditions: Any) -> Path | tuple[Path, nn.Module]:
    """Saves the adapter generated for ``conditions`` as a PEFT LoRA directory.

    Args:
        model: a HyperDNN from :func:`lora_model`.
        base: the pretrained model it was built on (the adapter's base).
        targets: the selection the model was built with.
        path: the directory to write (``adapter_config.json``, ``adapter_model.safetensors``).
        merged: also return a plain copy of ``base`` with the adapter merged in.
        **conditions: the condition, e.g. ``task=3`` or ``condition=embedding``.

    Returns:
        The path, or ``(path, merged_model)`` with ``merged=True``.
    """
    peft_model = peft_model_from(model, base, targets, **conditions)
    path = Path(path)
    peft_model.save_pretrained(str(path))
    if merged:
        return path, peft_model.merge_and_unload()
    return path


def merged_model(model: HyperDNN, base: nn.Module, targets: LoraTargets, **conditions: Any) -> nn.Module:
    """A plain copy of ``base`` with the adapter for ``conditions`` merged into its weights (PEFT's merge)."""
    return peft_model_from(model, base, targets, **conditions).merge_and_unload()


def load_peft_adapter(path: str | Path) -> PeftAdapter:
    """Reads a PEFT LoRA adapter directory (for training a hypernetwork to reconstruct it).

    Raises:
        CheckpointError: not a LoRA adapter directory, or its weights do not pair up.
    """
    from peft import PeftConfig
    from peft.utils import load_peft_weights

    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise CheckpointError(f"load_peft_adapter: {str(path)!r} holds no adapter_config.json (a PEFT adapter directory)")
    cfg = PeftConfig.from_pretrained(str(path))
    if getattr(cfg, "peft_type", None) is None or str(cfg.peft_type.value if hasattr(cfg.peft_type, "value") else cfg.peft_type) != "LORA":
        raise CheckpointError(f"load_peft_adapter: {str(path)!r} is a {cfg.peft_type} adapter, not LORA")
    weights = load_peft_weights(str(path), device="cpu")
    a_parts: dict[str, Tensor] = {}
    b_parts: dict[str, Tensor] = {}
    extra: dict[str, Tensor] = {}
    for key, t in weights.items():
        name = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
        if name.endswith(".lora_A.weight"):
            a_parts[name[: -len(".lora_A.weight")]] = t
        elif name.endswith(".lora_B.weight"):
            b_parts[name[: -len(".lora_B.weight")]] = t
        else:
            extra[key] = t
    if set(a_parts) != set(b_parts) or not a_parts:
        raise CheckpointError(f"load_peft_adapter: {str(path)!r}: lora_A and lora_B weights do not pair up")
    tm = cfg.target_modules
    targets = LoraTargets(
        target_modules=tm if isinstance(tm, str) else tuple(sorted(tm)), r=cfg.r, lora_alpha=float(cfg.lora_alpha),
        lora_dropout=float(cfg.lora_dropout),
        modules_to_save=tuple(cfg.modules_to_save) if cfg.modules_to_save else None,
    )
    return PeftAdapter(targets, {m: (a_parts[m], b_parts[m]) for m in a_parts}, extra)
