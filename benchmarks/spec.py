"""The workload specifications shared by every implementation (limit, hyperdnn, peers)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class TargetSpec:
    """The target MLP in -> hidden -> out with a ReLU in between (784-100-10 by default).

    Args:
        in_dim: int = 784, input features.
        hidden: int = 100, hidden units.
        out_dim: int = 10, classes.
    """

    in_dim: int = 784
    hidden: int = 100
    out_dim: int = 10

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Parameter names and shapes in the order of ``nn.Sequential(Linear, ReLU, Linear)``."""
        return [
            ("0.weight", (self.hidden, self.in_dim)),
            ("0.bias", (self.hidden,)),
            ("2.weight", (self.out_dim, self.hidden)),
            ("2.bias", (self.out_dim,)),
        ]

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for _, s in self.shapes())

    def module(self) -> nn.Sequential:
        """A fresh ordinary target module with these shapes."""
        return nn.Sequential(nn.Linear(self.in_dim, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.out_dim))


@dataclass(frozen=True)
class HyperSpec:
    """The hypernetwork side: conditioning, body and output strategy sizes.

    Args:
        num_tasks: int = 5, task embeddings (static workloads).
        task_dim: int = 8, task embedding size.
        body: tuple[int, ...] = (100, 100), hidden widths of the body MLP (ReLU after each).
        chunk_size: int = 4000, chunk-wise output: values per chunk.
        chunk_dim: int = 8, chunk-wise output: chunk embedding size.
        cond_dim: int = 8, dynamic workloads: size of encoder(x).
        rank: int = 4, low-rank outputs: rank of each generated matrix.
        task: int = 3, the task used in static workloads.
    """

    num_tasks: int = 5
    task_dim: int = 8
    body: tuple[int, ...] = (100, 100)
    chunk_size: int = 4000
    chunk_dim: int = 8
    cond_dim: int = 8
    rank: int = 4
    task: int = 3

    def n_chunks(self, n_params: int) -> int:
        return math.ceil(n_params / self.chunk_size)


def body_mlp(in_dim: int, widths: tuple[int, ...]) -> nn.Sequential:
    """The hypernetwork body: Linear + ReLU for each width."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(in_dim, w), nn.ReLU()]
        in_dim = w
    return nn.Sequential(*layers)


def mlp_target_forward(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """The target MLP with given weights; a leading batch dim on the weights means per-sample weights.

    Args:
        x: (B, in_dim).
        w1: (hidden, in) or (B, hidden, in); b1: (hidden,) or (B, hidden); likewise w2, b2.
    Returns:
        logits (B, out_dim).
    """
    if w1.dim() == 2:
        return torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, w1, b1)), w2, b2)
    # W x as (B, out, in) @ (B, in, 1) with x given as the transpose of (B, 1, in) and the bias
    # added after: on CPU this stride pattern takes MKL's fast path, about 6x faster than
    # x.unsqueeze(2) or baddbmm with a broadcast bias for the same product (measured, torch 2.13)
    h = torch.bmm(w1, x.unsqueeze(1).transpose(1, 2)).squeeze(2) + b1  # (B, hidden)
    return torch.bmm(w2, torch.relu(h).unsqueeze(1).transpose(1, 2)).squeeze(2) + b2  # (B, out)


@dataclass
class Workload:
    """One benchmark workload: its name, the target, the hypernetwork sizes and the batch.

    Args:
        key: str, the strategy key every builder understands
            ("static_full", "static_chunked", "dynamic_full", "dynamic_lowrank").
        target: TargetSpec.
        hyper: HyperSpec.
        batch: int = 128.
    """

    key: str
    target: TargetSpec = field(default_factory=TargetSpec)
    hyper: HyperSpec = field(default_factory=HyperSpec)
    batch: int = 128

    @property
    def dynamic(self) -> bool:
        return self.key.startswith("dynamic")


def gpt2_small_shapes(
    vocab: int = 50257, positions: int = 1024, dim: int = 768, layers: int = 12
) -> list[tuple[str, tuple[int, ...]]]:
    """Parameter names and shapes of GPT-2 small (124,439,808 numbers; lm_head tied to wte).

    ``nn.Linear`` layout (out, in) for the projections; GPT-2's Conv1D stores the transpose,
    which has the same count.
    """
    shapes: list[tuple[str, tuple[int, ...]]] = [("wte.weight", (vocab, dim)), ("wpe.weight", (positions, dim))]
    for i in range(layers):
        p = f"h.{i}."
        shapes += [
            (p + "ln_1.weight", (dim,)), (p + "ln_1.bias", (dim,)),
            (p + "attn.c_attn.weight", (3 * dim, dim)), (p + "attn.c_attn.bias", (3 * dim,)),
            (p + "attn.c_proj.weight", (dim, dim)), (p + "attn.c_proj.bias", (dim,)),
            (p + "ln_2.weight", (dim,)), (p + "ln_2.bias", (dim,)),
            (p + "mlp.c_fc.weight", (4 * dim, dim)), (p + "mlp.c_fc.bias", (4 * dim,)),
            (p + "mlp.c_proj.weight", (dim, 4 * dim)), (p + "mlp.c_proj.bias", (dim,)),
        ]
    shapes += [("ln_f.weight", (dim,)), ("ln_f.bias", (dim,))]
    return shapes


class _Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.c_attn, self.attn.c_proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Module()
        self.mlp.c_fc, self.mlp.c_proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)


class GPT2Shapes(nn.Module):
    """A module with GPT-2 small's parameter names and shapes (no forward: only theta is generated).

    Build it under ``torch.device("meta")`` to hold no memory.
    """

    def __init__(self, vocab: int = 50257, positions: int = 1024, dim: int = 768, layers: int = 12) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(positions, dim)
        self.h = nn.ModuleList(_Block(dim) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
