"""The method object: a LoRA-writing hypernetwork with PEFT export, merge and reconstruction training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError, HDTypeError
from ...hyperdnn import HyperDNN
from .output import LoRAOutputModule
from .peft_io import PeftAdapter, generated_factors, merged_model, peft_model_from, save_peft_adapter
from .targets import LoraSite, LoraTargets, find_sites

__all__ = ["HyperLoRA", "LoRAStep"]


@dataclass(frozen=True)
class LoRAStep:
    """What :meth:`HyperLoRA.reconstruction_loss` measured (detached).

    Attributes:
        loss: mean absolute error of ``(alpha / r) B A`` over the adapters' elements.
        adapters: how many adapters were compared.
    """

    loss: Tensor
    adapters: int


class HyperLoRA:
    """A hypernetwork that writes LoRA adapters for a frozen pretrained model, in PEFT's format.

    ``y = base(x; W0 + (alpha / r) B(c) A(c))`` for every adapted module, ``A, B``
    made by one shared hypernetwork from the condition ``c`` and the module's layer and
    kind (HyperFormer, Mahabadi et al. ACL 2021; Text-to-LoRA, Charakorn et al. ICML 2025).

    Args:
        model: a HyperDNN from :func:`lora_model` (its output strategy is :class:`LoRAOutput`).
        base: the pretrained model it was built on (exports and merges copy it).
        targets: the selection the model was built with.

    Entry points: :meth:`reconstruction_loss` (Text-to-LoRA's reconstruction training
    against PEFT adapters), the task loss is the user's own (``model(x, task=t)``);
    :meth:`export` (a PEFT adapter directory), :meth:`merged` (a plain merged copy),
    :meth:`peft_model` (an in-memory ``PeftModel``).

    Example:
        >>> model = lora_model(bert, targets, inputs=hd.TaskEmbedding(3, 16))
        >>> hl = HyperLoRA(model, bert, targets)
        >>> hl.export("adapters/task2", task=2)     # PeftModel.from_pretrained(bert, ...) loads it
    """

    def __init__(self, model: HyperDNN, base: nn.Module, targets: LoraTargets) -> None:
        if not isinstance(model, HyperDNN):
            raise HDTypeError(f"HyperLoRA: model must be a HyperDNN from lora_model (got {type(model).__name__})")
        if not isinstance(model.hypernetwork.outputs, LoRAOutputModule):
            raise ConfigError(
                f"HyperLoRA: the model's output strategy is {type(model.hypernetwork.outputs).__name__}; build it with "
                "hyperdnn.methods.lora_model (output LoRAOutput)"
            )
        if not isinstance(targets, LoraTargets):
            raise HDTypeError(f"HyperLoRA: targets must be a LoraTargets (got {type(targets).__name__})")
        self.model, self.base, self.targets = model, base, targets
        self.sites: list[LoraSite] = find_sites(base, targets)
        missing = sorted({s.weight for s in self.sites} - set(model.spec.names))
        if missing:
            raise ConfigError(f"HyperLoRA: the model does not generate {missing[:3]}; build it from the same targets")

    def adapter(self, **conditions: Any) -> dict[str, tuple[Tensor, Tensor]]:
        """``{module: (A (r, in), B (out, r))}`` for one condition (differentiable)."""
        return generated_factors(self.model, **conditions)

    def reconstruction_loss(self, adapter: PeftAdapter, **conditions: Any) -> tuple[Tensor, LoRAStep]:
        """Mean absolute error between the generated and a given adapter's updates ``(alpha / r) B A``.

        The update, not the factors, is compared: ``B A`` is unique where ``(A, B)`` is not.

        Args:
            adapter: a PEFT adapter (:func:`load_peft_adapter`) over the same modules.
            **conditions: the condition that should reproduce it (``task=3``).

        Returns:
            ``(loss, LoRAStep)``: the differentiable loss and its detached record.
        """
        mine = self.adapter(**conditions)
        missing = sorted(set(adapter.factors) - set(mine))
        if missing:
            raise ConfigError(f"HyperLoRA.reconstruction_loss: the adapter holds modules this model does not adapt: {missing[:3]}")
        total, count = 0.0, 0
        for m in adapter.factors:
            a, b = mine[m]
            delta = self.targets.scale * (b @ a)  # (out, in)
            target = adapter.delta(m).to(delta)
            total = total + (delta - target).abs().sum()
            count += delta.numel()
        loss = total / count
        return loss, LoRAStep(loss.detach(), len(adapter.factors))

    def peft_model(self, **conditions: Any) -> Any:
        """A ``peft.PeftModel`` on a copy of the base holding the adapter for ``conditions``."""
        return peft_model_from(self.model, self.base, self.targets, **conditions)

    def export(self, path: str | Path, **conditions: Any) -> Path:
        """Writes the adapter for ``conditions`` as a PEFT directory; returns its path."""
        out = save_peft_adapter(self.model, self.base, self.targets, path, **conditions)
        return out[0] if isinstance(out, tuple) else out  # merged=False: the path alone

    def merged(self, **conditions: Any) -> nn.Module:
        """A plain copy of the base with the adapter for ``conditions`` merged in (PEFT's ``merge_and_unload``)."""
        return merged_model(self.model, self.base, self.targets, **conditions)

    @torch.no_grad()
    def parameter_counts(self) -> dict[str, int]:
        """Trainable numbers: the hypernetwork, the fully trained modules, and one PEFT LoRA of these targets."""
        hyper = sum(p.numel() for p in self.model.hypernetwork.parameters() if p.requires_grad)
        own = sum(p.numel() for p in self.model.target.parameters() if p.requires_grad)
        lora = sum(self.targets.r * (s.shape[0] + s.shape[1]) for s in self.sites)
        return {"hypernetwork": hyper, "trained_in_full": own, "one_peft_lora": lora}

    def state_dict(self) -> dict[str, Any]:
        """Nothing between steps: the model and its optimizer save themselves."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Accepts the empty state of :meth:`state_dict`."""
        if state:
            raise ConfigError(f"HyperLoRA.load_state_dict: expected an empty state (got keys {sorted(state)[:3]})")
