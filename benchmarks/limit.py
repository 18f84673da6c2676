"""Hand-written PyTorch implementations of each workload's math: the "limit" column.

No library, no generality: one embedding lookup, the body MLP, one head, views into the
head's output, and the target run with ``F.linear`` (static) or ``baddbmm`` (per-sample).
Every other implementation's time is reported as a ratio to these.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .spec import TargetSpec, Workload, body_mlp, mlp_target_forward
from .subject import Subject


def split_theta(theta: Tensor, target: TargetSpec) -> list[Tensor]:
    """Views of a flat theta (P,) or (B, P) in the target's shapes, no copy."""
    lead = theta.shape[:-1]
    sizes = [s for _, s in target.shapes()]
    pieces = torch.split(theta[..., : target.n_params], [int(torch.Size(s).numel()) for s in sizes], dim=-1)
    return [p.view(*lead, *s) for p, s in zip(pieces, sizes)]


class StaticFull(nn.Module):
    """Task embedding -> body -> one linear head producing all of theta (generate once)."""

    def __init__(self, wl: Workload) -> None:
        super().__init__()
        h, t = wl.hyper, wl.target
        self.target, self.task = t, h.task
        self.emb = nn.Embedding(h.num_tasks, h.task_dim)
        self.body = body_mlp(h.task_dim, h.body)
        self.head = nn.Linear(h.body[-1], t.n_params)

    def weights(self) -> list[Tensor]:
        theta = self.head(self.body(self.emb.weight[self.task]))  # (P,)
        return split_theta(theta, self.target)

    def forward(self, x: Tensor) -> Tensor:
        return mlp_target_forward(x, *self.weights())


class StaticChunked(nn.Module):
    """Chunk-wise (von Oswald et al. 2020): [task emb, chunk emb_j] -> body -> head -> chunk j."""

    def __init__(self, wl: Workload) -> None:
        super().__init__()
        h, t = wl.hyper, wl.target
        self.target, self.task = t, h.task
        n = h.n_chunks(t.n_params)
        self.emb = nn.Embedding(h.num_tasks, h.task_dim)
        self.chunk_emb = nn.Parameter(torch.randn(n, h.chunk_dim))
        self.body = body_mlp(h.task_dim + h.chunk_dim, h.body)
        self.head = nn.Linear(h.body[-1], h.chunk_size)

    def weights(self) -> list[Tensor]:
        n = self.chunk_emb.shape[0]
        e = self.emb.weight[self.task].expand(n, -1)  # (n_chunks, task_dim)
        chunks = self.head(self.body(torch.cat([e, self.chunk_emb], dim=1)))  # (n_chunks, chunk_size)
        return split_theta(chunks.view(-1), self.target)

    def forward(self, x: Tensor) -> Tensor:
        return mlp_target_forward(x, *self.weights())


class DynamicFull(nn.Module):
    """Per-sample weights: z = encoder(x) -> body -> head -> theta (B, P); target via baddbmm."""

    def __init__(self, wl: Workload) -> None:
        super().__init__()
        h, t = wl.hyper, wl.target
        self.target = t
        self.encoder = nn.Linear(t.in_dim, h.cond_dim)
        self.body = body_mlp(h.cond_dim, h.body)
        self.head = nn.Linear(h.body[-1], t.n_params)

    def forward(self, x: Tensor) -> Tensor:
        theta = self.head(self.body(self.encoder(x)))  # (B, P)
        return mlp_target_forward(x, *split_theta(theta, self.target))


class DynamicLowRank(nn.Module):
    """Per-sample low-rank weights W_b = U_b V_b (biases generated whole), applied factorised.

    The head makes, per sample, U (out, r) and V (r, in) for each weight matrix and each bias
    in full; the target is evaluated as U (V x) + b without forming W, which is the cheapest
    way to compute this math.
    """

    def __init__(self, wl: Workload) -> None:
        super().__init__()
        h, t = wl.hyper, wl.target
        self.target, self.rank = t, h.rank
        r = h.rank
        self.sizes = [t.hidden * r, r * t.in_dim, t.hidden, t.out_dim * r, r * t.hidden, t.out_dim]
        self.encoder = nn.Linear(t.in_dim, h.cond_dim)
        self.body = body_mlp(h.cond_dim, h.body)
        self.head = nn.Linear(h.body[-1], sum(self.sizes))

    def forward(self, x: Tensor) -> Tensor:
        t, r = self.target, self.rank
        out = self.head(self.body(self.encoder(x)))  # (B, sum(sizes))
        B = x.shape[0]
        u1, v1, b1, u2, v2, b2 = torch.split(out, self.sizes, dim=1)
        u1, v1 = u1.view(B, t.hidden, r), v1.view(B, r, t.in_dim)
        u2, v2 = u2.view(B, t.out_dim, r), v2.view(B, r, t.hidden)
        h = torch.baddbmm(b1.unsqueeze(2), u1, torch.bmm(v1, x.unsqueeze(2)))  # (B, hidden, 1)
        return torch.baddbmm(b2.unsqueeze(2), u2, torch.bmm(v2, torch.relu(h))).squeeze(2)


LIMITS = {
    "static_full": StaticFull,
    "static_chunked": StaticChunked,
    "dynamic_full": DynamicFull,
    "dynamic_lowrank": DynamicLowRank,
}


def build(wl: Workload) -> Subject:
    """The limit implementation of a workload."""
    mod = LIMITS[wl.key](wl)
    loop = None
    if wl.dynamic:
        loop = lambda x: torch.cat([mod(x[i : i + 1]) for i in range(x.shape[0])])  # noqa: E731
    return Subject("limit", mod, mod.forward, loop, note="hand-written PyTorch")
