"""Wrapping a frozen pretrained model: a HyperDNN whose only generated weights are the adapted ones."""

from __future__ import annotations

from typing import Any

from torch import nn

from ...bodies import MLP
from ...errors import ConfigError
from ...hyperdnn import HyperDNN
from .output import LoRAOutput
from .targets import LoraTargets, find_sites

__all__ = ["lora_model"]


def lora_model(
    base: nn.Module,
    targets: LoraTargets,
    *,
    inputs: Any = None,
    body: Any = None,
    layer_dim: int = 8,
    kind_dim: int = 8,
    decomposed: int = 1,
    zero_init: bool = True,
) -> HyperDNN:
    """A HyperDNN that writes a LoRA for every module ``targets`` selects in ``base``.

    The base model's own weights stay frozen (the generated ones become ``W0 + (alpha / r) B A``);
    the modules in ``targets.modules_to_save`` (e.g. a new classifier head) are trained in full.

    Args:
        base: a pretrained model (HuggingFace or any ``nn.Module``); left untouched.
        targets: which modules, rank, alpha (PEFT's meaning).
        inputs: the condition: ``hd.TaskEmbedding`` (HyperFormer), ``hd.External`` fed with
            :class:`SentenceEncoder` embeddings of task descriptions (Text-to-LoRA), a
            ``hd.DataEncoder`` (one adapter per sample), or None.
        body: the shared body over ``[z, layer, kind]`` tokens (default ``MLP(hidden=(64,))``).
        layer_dim: width of the learned layer-index embedding.
        kind_dim: width of the learned module-kind embedding.
        decomposed: Polyhistor's template factor (1: plain heads), see :class:`LoRAOutput`.
        zero_init: start exactly at the pretrained model (``B = 0``).

    Returns:
        The ``HyperDNN``; call it as the base model (``model(input_ids, task=t, attention_mask=m)``).

    Example:
        >>> model = lora_model(bert, LoraTargets(("query", "value"), r=8, lora_alpha=16),
        ...                    inputs=hd.TaskEmbedding(num_tasks=4, dim=16))
    """
    sites = find_sites(base, targets)
    generated = {s.weight for s in sites}
    saved = tuple(targets.modules_to_save or ())
    names = [n for n, _ in base.named_parameters()]
    for m in saved:
        if not any(_in_module(n, m) for n in names):
            raise ConfigError(f"lora_model: modules_to_save names {m!r}, which holds no parameter of the model")

    def frozen(name: str, _p) -> bool:
        return name not in generated and not any(_in_module(name, m) for m in saved)

    outputs = LoRAOutput(rank=targets.r, alpha=targets.lora_alpha, layer_dim=layer_dim, kind_dim=kind_dim,
                         decomposed=decomposed, zero_init=zero_init, dropout=targets.lora_dropout)
    return HyperDNN(base, inputs=inputs, outputs=outputs, body=body if body is not None else MLP(hidden=(64,)),
                    generate=sorted(generated, key=names.index), freeze=frozen)


def _in_module(param: str, module: str) -> bool:
    """Whether ``param`` lies in a module named ``module`` (full name or last components, as PEFT matches)."""
    owner = param.rsplit(".", 1)[0] if "." in param else ""
    return owner == module or owner.endswith("." + module) or owner.startswith(module + ".") or f".{module}." in f".{owner}."
