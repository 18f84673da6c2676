"""Spaces of architectures to train a graph hypernetwork on, and to hold out from it.

:class:`MnistArch` describes an MLP, a plain CNN or a ResNet-style CNN for 28x28
images (depth, width, kernel size, normalisation, skip connections);
:class:`MnistArchSpace` draws them from ranges. :class:`CharGPTArch` describes a tiny
GPT-2-style transformer for character-level language modelling (depth, width, heads),
:class:`CharGPTSpace` draws them. Held-out sets are spaces of their own (e.g. deeper
and wider than any training one), so that held-out architectures are never drawn in
training by construction. Every model built here is traceable by ``torch.fx``.
(GHN-2 trains on DARTS-style cells, DeepNets-1M; these spaces are small and CPU-sized.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError

FAMILIES = ("mlp", "cnn", "resnet")
NORMS = ("none", "bn", "ln")


@dataclass(frozen=True)
class MnistArch:
    """One MNIST classifier architecture.

    Attributes:
        family: 'mlp' (hidden Linear layers), 'cnn' (3x3/5x5 convs) or 'resnet' (convs with skip adds).
        depth: hidden layers (mlp) or conv layers after the stem (cnn/resnet).
        width: hidden units or channels.
        kernel: conv kernel size (odd; ignored for mlp).
        norm: 'none', 'bn' (BatchNorm) or 'ln' (LayerNorm for mlp, GroupNorm(1) for convs).
        skip: residual adds around the hidden layers of an mlp (resnet always has them).
    """

    family: str
    depth: int
    width: int
    kernel: int = 3
    norm: str = "none"
    skip: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES or self.norm not in NORMS:
            raise ConfigError(f"MnistArch: family must be one of {FAMILIES} and norm one of {NORMS} "
                              f"(got {self.family!r}, {self.norm!r})")
        if self.depth < 1 or self.width < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"MnistArch: depth, width >= 1 and an odd kernel are required "
                              f"(got depth={self.depth}, width={self.width}, kernel={self.kernel})")

    def build(self) -> nn.Module:
        """The model with PyTorch's default initialisation: ``(B, 1, 28, 28) -> (B, 10)``."""
        return MnistNet(self)

    def __str__(self) -> str:
        k = "" if self.family == "mlp" else f"k{self.kernel}-"
        return f"{self.family}-d{self.depth}-w{self.width}-{k}{self.norm}{'-skip' if self.skip else ''}"


def _norm(kind: str, width: int, conv: bool) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)
    if kind == "ln":
        return nn.GroupNorm(1, width) if conv else nn.LayerNorm(width)
    return nn.Identity()


class MnistNet(nn.Module):
    """The classifier an :class:`MnistArch` describes.

    mlp: flatten -> [Linear, norm, ReLU] x depth (skip adds after the first) -> Linear(10).
    cnn/resnet: stem conv (stride 2), norm, ReLU, 2x2 max-pool (7x7 maps) -> [conv, norm, ReLU] x depth
    (resnet: ``x + ReLU(norm(conv(x)))``) -> global average pool -> Linear(10).
    """

    def __init__(self, arch: MnistArch) -> None:
        super().__init__()
        self.arch = arch
        w, conv = arch.width, arch.family != "mlp"
        self.skip = arch.skip or arch.family == "resnet"
        if conv:
            self.stem = nn.Conv2d(1, w, arch.kernel, stride=2, padding=arch.kernel // 2)
            self.layers = nn.ModuleList(nn.Conv2d(w, w, arch.kernel, padding=arch.kernel // 2) for _ in range(arch.depth))
        else:
            self.stem = nn.Linear(28 * 28, w)
            self.layers = nn.ModuleList(nn.Linear(w, w) for _ in range(arch.depth - 1))
        self.stem_norm = _norm(arch.norm, w, conv)
        self.norms = nn.ModuleList(_norm(arch.norm, w, conv) for _ in self.layers)
        self.head = nn.Linear(w, 10)

    def forward(self, x: Tensor) -> Tensor:
        conv = self.arch.family != "mlp"
        h = F.relu(self.stem_norm(self.stem(x if conv else x.flatten(1))))  # (B, w, 14, 14) or (B, w)
        if conv:
            h = F.max_pool2d(h, 2)  # (B, w, 7, 7)
        for layer, norm in zip(self.layers, self.norms):
            y = F.relu(norm(layer(h)))
            h = h + y if self.skip else y
        if conv:
            h = h.mean((2, 3))  # (B, w)
        return self.head(h)


@dataclass(frozen=True)
class MnistArchSpace:
    """A box of :class:`MnistArch` values, drawn uniformly per attribute.

    Attributes:
        families, depths, widths, kernels, norms: the choices.
        skip_prob: probability of skip adds in an mlp.
    """

    families: tuple[str, ...] = FAMILIES
    depths: tuple[int, ...] = (1, 2, 3, 4)
    widths: tuple[int, ...] = (16, 24, 32, 48)
    kernels: tuple[int, ...] = (3, 5)
    norms: tuple[str, ...] = NORMS
    skip_prob: float = 0.5

    def sample(self, gen: torch.Generator) -> MnistArch:
        """One architecture; all randomness from ``gen``."""
        def pick(xs: tuple) -> object:
            return xs[int(torch.randint(len(xs), (1,), generator=gen))]

        family, depth, width, kernel, norm = (pick(self.families), pick(self.depths), pick(self.widths),
                                              pick(self.kernels), pick(self.norms))
        skip = bool(torch.rand((), generator=gen) < self.skip_prob)
        return MnistArch(str(family), int(depth), int(width), int(kernel), str(norm), skip and family == "mlp")

    def contains(self, arch: MnistArch) -> bool:
        return (arch.family in self.families and arch.depth in self.depths and arch.width in self.widths
                and (arch.family == "mlp" or arch.kernel in self.kernels) and arch.norm in self.norms)


# ----- tiny GPT-2-style transformers for character-level language modelling -----


@dataclass(frozen=True)
class CharGPTArch:
    """A tiny GPT-2-style decoder-only transformer.

    Attributes:
        layers: transformer blocks.
        width: embedding width ``d`` (a multiple of ``heads``).
        heads: attention heads.
        vocab: vocabulary size.
        context: longest sequence (learned positional table).
    """

    layers: int
    width: int
    heads: int
    vocab: int
    context: int = 64

    def __post_init__(self) -> None:
        if min(self.layers, self.width, self.heads, self.vocab, self.context) < 1 or self.width % self.heads:
            raise ConfigError(f"CharGPTArch: positive sizes and width divisible by heads are required (got {self})")

    def build(self) -> nn.Module:
        """``(B, T) int64 -> (B, T, vocab)`` logits, PyTorch's default initialisation."""
        return CharGPT(self)

    def __str__(self) -> str:
        return f"gpt-l{self.layers}-d{self.width}-h{self.heads}"


class Block(nn.Module):
    """Pre-norm block: ``x + proj(attn(ln1(x)))``, then ``x + fc2(gelu(fc1(ln2(x))))`` (GPT-2's order)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, H, T, d/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class CharGPT(nn.Module):
    """The model a :class:`CharGPTArch` describes."""

    def __init__(self, arch: CharGPTArch) -> None:
        super().__init__()
        self.arch = arch
        self.tok = nn.Embedding(arch.vocab, arch.width)
        self.pos = nn.Embedding(arch.context, arch.width)
        self.blocks = nn.ModuleList(Block(arch.width, arch.heads) for _ in range(arch.layers))
        self.ln = nn.LayerNorm(arch.width)
        self.head = nn.Linear(arch.width, arch.vocab)

    def forward(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


@dataclass(frozen=True)
class CharGPTSpace:
    """A box of :class:`CharGPTArch` values (heads drawn among those dividing the width)."""

    vocab: int
    layers: tuple[int, ...] = (1, 2)
    widths: tuple[int, ...] = (32, 48)
    heads: tuple[int, ...] = (1, 2, 4)
    context: int = 64

    def sample(self, gen: torch.Generator) -> CharGPTArch:
        def pick(xs: tuple) -> int:
            return int(xs[int(torch.randint(len(xs), (1,), generator=gen))])

        width = pick(self.widths)
        heads = pick(tuple(h for h in self.heads if width % h == 0) or (1,))
        return CharGPTArch(pick(self.layers), width, heads, self.vocab, self.context)


def bits_per_char(logits: Tensor, targets: Tensor) -> float:
    """Mean cross-entropy in bits: ``logits (B, T, V)``, ``targets (B, T)``."""
    return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten()) / math.log(2))
