"""The shared LoRA hypernetwork: one small network writes every adapted layer's A and B.

For each adapted module ``i`` (layer ``l_i``, kind ``k_i``, see :mod:`.targets`)
the body reads the token ``[z, e_layer(l_i), e_kind(k_i)]`` (HyperFormer's layer
and position embeddings, Mahabadi et al. 2021; Text-to-LoRA's module and layer
embeddings, Charakorn et al. 2025) and one pair of heads per kind makes

    A_i = head_A[k_i](h_i).view(r, in)      B_i = head_B[k_i](h_i).view(out, r)

so the hypernetwork's size grows with the number of kinds (query, key, ...), not
with the number of layers. Each weight is returned as
``hd.Factored(a=B_i, b=A_i^T, base=W0, scale=alpha / r)``: the target paths
compute ``W0 x + (alpha / r) B_i (A_i x)`` without forming a matrix per sample.
``B``'s heads start at zero (PEFT's init), so the model starts exactly at the
pretrained outputs.

``decomposed=k`` (Polyhistor, Liu et al. 2022: decomposed hypernetworks and
layer-wise scaling kernels): the heads make templates ``(r, in / k)`` and
``(out / k, r)`` only, and each adapted module owns two learned scaling kernels
``s_A, s_B`` of length ``k``; ``A = T_A kron s_A^T`` and ``B = T_B kron s_B``. The
heads shrink by ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...bodies import BodyModule
from ...config import OutputConfig, checked, flag, number, positive_int
from ...errors import ConfigError
from ...factored import Factored
from ...init import hyperfan_in_
from ...outputs.base import OutputModule
from ...target import TargetSpec

__all__ = ["LoRAOutput", "LoRAOutputModule"]


def _site_of(name: str) -> tuple[int, str]:
    from .targets import _LAYER

    module = name[: -len(".weight")] if name.endswith(".weight") else name
    m = _LAYER.search(module)
    if m is None:
        return 0, module
    return int(m.group(1)), module[: m.start(1)] + "*" + module[m.end(1):]


@dataclass
class LoRAOutput(OutputConfig):
    """Generated LoRA factors for every selected ``(out, in)`` weight, by a layer- and kind-conditioned
    shared hypernetwork; each weight is ``W0 + (alpha / rank) B A``.

    Args:
        rank: ``r`` of every adapter.
        alpha: ``lora_alpha``; the update is scaled by ``alpha / rank``.
        layer_dim: width of the learned layer-index embedding.
        kind_dim: width of the learned module-kind embedding.
        decomposed: ``1`` (plain heads) or ``k > 1``: Polyhistor's templates plus
            per-module scaling kernels of length ``k`` (``k`` must divide every ``in`` and ``out``).
        zero_init: start ``B`` at zero (the pretrained model exactly, as PEFT does).
        dropout: PEFT's ``lora_dropout``: dropout on the input of the ``B A`` branch in
            training mode (``W0 x`` sees the whole input), in ``[0, 1)``.
    """

    rank: int = checked(positive_int, default=8)
    alpha: float = checked(number(low=0.0, low_open=True), default=8.0)
    layer_dim: int = checked(positive_int, default=8)
    kind_dim: int = checked(positive_int, default=8)
    decomposed: int = checked(positive_int, default=1)
    zero_init: bool = checked(flag, default=True)
    dropout: float = checked(number(0.0, 1.0, high_open=True), default=0.0)

    def build(self, spec: TargetSpec, cond_dim: int, body, initial: dict[str, Tensor]) -> "LoRAOutputModule":
        k = self.decomposed
        for p in spec.params:
            if len(p.shape) != 2:
                raise ConfigError(
                    f"LoRAOutput: {p.name!r} has shape {p.shape}; a LoRA adapts (out, in) matrices only. "
                    "Generate only the adapted Linear weights (hyperdnn.methods.lora_model selects them)"
                )
            if self.rank > min(p.shape):
                raise ConfigError(f"LoRAOutput: rank {self.rank} exceeds the matrix {p.name!r} of shape {p.shape}")
            if p.shape[0] % k or p.shape[1] % k:
                raise ConfigError(
                    f"LoRAOutput: decomposed={k} must divide both sides of {p.name!r} {p.shape}; use a common divisor"
                )
            if p.name not in initial:
                raise ConfigError(f"LoRAOutput: no pretrained value for {p.name!r} (the base W0 of the adapter)")
        return LoRAOutputModule(spec, cond_dim, body, initial, self.rank, self.alpha / self.rank,
                                self.layer_dim, self.kind_dim, k, self.zero_init, self.dropout)


class LoRAOutputModule(OutputModule):
    """Built :class:`LoRAOutput`: ``forward(z) -> {name: Factored}``.

    Attributes:
        layers: the layer index of each generated weight, in the spec's order.
        kinds: the kind names (one pair of heads each).
        bases: the pretrained weights ``W0`` (not stored in checkpoints: they come from the base model).
    """

    def __init__(self, spec: TargetSpec, cond_dim: int, body_cfg, initial: dict[str, Tensor], rank: int,
                 scale: float, layer_dim: int, kind_dim: int, decomposed: int, zero_init: bool,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout
        self.spec, self.rank, self.scale, self.k, self.zero_init = spec, rank, scale, decomposed, zero_init
        sites = [_site_of(p.name) for p in spec.params]
        self.kinds = sorted({kind for _, kind in sites}, key=[kind for _, kind in sites].index)
        layer_ids = sorted({layer for layer, _ in sites})
        self.layers = [layer for layer, _ in sites]
        self.register_buffer("layer_index", torch.tensor([layer_ids.index(layer) for layer, _ in sites]), persistent=False)
        self.register_buffer("kind_index", torch.tensor([self.kinds.index(kind) for _, kind in sites]), persistent=False)
        self.layer_embedding = nn.Parameter(torch.randn(len(layer_ids), layer_dim))
        self.kind_embedding = nn.Parameter(torch.randn(len(self.kinds), kind_dim))
        self.body: BodyModule = body_cfg.build(cond_dim + layer_dim + kind_dim)
        d = self.body.out_features
        shape_of = {kind: p.shape for p, (_, kind) in zip(spec.params, sites)}
        for p, (_, kind) in zip(spec.params, sites):
            if p.shape != shape_of[kind]:
                raise ConfigError(f"LoRAOutput: {p.name!r} has shape {p.shape} but other {kind!r} weights have {shape_of[kind]}")
        self.shapes = [shape_of[kind] for kind in self.kinds]
        self.head_a = nn.ModuleList(nn.Linear(d, rank * s[1] // decomposed) for s in self.shapes)
        self.head_b = nn.ModuleList(nn.Linear(d, s[0] // decomposed * rank) for s in self.shapes)
        if decomposed > 1:
            # Layer-wise scaling kernels (Polyhistor): one pair per adapted module.
            self.scale_a = nn.Parameter(torch.ones(len(spec.params), decomposed))
            self.scale_b = nn.Parameter(torch.ones(len(spec.params), decomposed))
        self.members = [[i for i, (_, kind) in enumerate(sites) if kind == kd] for kd in self.kinds]
        for j, idx in enumerate(self.members):
            self.register_buffer(f"members_{j}", torch.tensor(idx), persistent=False)
        for i, p in enumerate(spec.params):
            self.register_buffer(f"base_{i}", initial[p.name].detach(), persistent=False)

    def has_embeddings(self) -> bool:
        return True

    def features(self, z: Tensor) -> Tensor:
        """``(..., T, d_h)``: the body on ``[z, e_layer, e_kind]`` for each of the ``T`` adapted weights."""
        emb = torch.cat([self.layer_embedding[self.layer_index], self.kind_embedding[self.kind_index]], dim=-1)  # (T, e)
        lead = z.shape[:-1]
        tokens = torch.cat([z.unsqueeze(-2).expand(*lead, emb.shape[0], z.shape[-1]), emb.expand(*lead, *emb.shape)], -1)
        return self.body(tokens)  # (..., T, d_h)

    def factors(self, z: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """``{name: (A, B)}`` in PEFT's layout: ``A (..., r, in)``, ``B (..., out, r)``."""
        h = self.features(z)
        out: dict[str, tuple[Tensor, Tensor]] = {}
        k, r = self.k, self.rank
        for j, (shape, ha, hb) in enumerate(zip(self.shapes, self.head_a, self.head_b)):
            members = getattr(self, f"members_{j}")
            hk = h.index_select(-2, members)  # (..., T_k, d_h)
            a = ha(hk).unflatten(-1, (r, shape[1] // k))  # (..., T_k, r, in/k)
            b = hb(hk).unflatten(-1, (shape[0] // k, r))  # (..., T_k, out/k, r)
            if k > 1:
                sa = self.scale_a.index_select(0, members)  # (T_k, k)
                sb = self.scale_b.index_select(0, members)
                a = (a.unsqueeze(-1) * sa[:, None, None, :]).flatten(-2)  # (..., T_k, r, in)
                b = (b.unsqueeze(-2) * sb[:, None, :, None]).flatten(-3, -2)  # (..., T_k, out, r)
            for t, i in enumerate(self.members[j]):
                out[self.spec.params[i].name] = (a[..., t, :, :], b[..., t, :, :])
        return out

    def forward(self, z: Tensor) -> dict[str, Tensor | Factored]:
        f = self.factors(z)
        return {
            p.name: Factored(f[p.name][1], f[p.name][0].transpose(-1, -2), p.shape, getattr(self, f"base_{i}"), self.scale,
                              self.dropout)
            for i, p in enumerate(self.spec.params)
        }

    @torch.no_grad()
    def calibrate(self, probe: Tensor) -> None:
        h = self.features(probe.to(self.layer_embedding))
        for j, (shape, ha, hb) in enumerate(zip(self.shapes, self.head_a, self.head_b)):
            hk = h.index_select(-2, getattr(self, f"members_{j}"))
            # A like PEFT's kaiming-uniform(a=sqrt(5)) init: std 1 / sqrt(3 in).
            hyperfan_in_(ha, hk, (3.0 * shape[1]) ** -0.5, 0.0)
            hyperfan_in_(hb, hk, (3.0 * shape[1]) ** -0.5, 0.0)
        if self.zero_init:
            self.zero_()

    @torch.no_grad()
    def zero_(self) -> None:
        for hb in self.head_b:
            hb.weight.zero_()
            hb.bias.zero_()
