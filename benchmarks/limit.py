"""Hand-written PyTorch implementations of each workload's math: the "limit" column.

No library, no generality: one embedding lookup, the body MLP, one head, views into the
head's output, and the target run with ``F.linear`` (static) or ``baddbmm`` (per-sample).
Every other implementation's time is reported as a ratio to these.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .spec import TargetSpec, Workload, body_mlp, mlp_target_forward
from .subject import Subject, Unavailable


def split_theta(theta: Tensor, target: TargetSpec) -> list[Tensor]:
    """Views of a flat theta (P,) or (B, P) in the target's shapes, no copy."""
    lead = theta.shape[:-1]
    shapes = [s for _, s in target.shapes()]
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    extra = theta.shape[-1] - target.n_params  # the unused tail of the last chunk
    # one split (its backward is one cat), no slice (whose backward zero-fills a full-size tensor)
    pieces = torch.split(theta, sizes + [extra] if extra else sizes, dim=-1)
    return [p.view(*lead, *s) for p, s in zip(pieces, shapes)]


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
    """Per-sample low-rank weights W_b = A_b B_b^T (biases generated whole), applied factorised.

    The head makes, per sample, A (out, r) and B (in, r) for each weight matrix whose smaller
    side is at least r (a smaller matrix is generated whole, as hyperdnn's
    ``LowRank(on_small="full")``) and each bias in full. The target is evaluated as
    A (B^T x) + b without forming W: the cheapest way to compute this math.

    Args:
        wl: the workload.
        dense: form W_b = A_b B_b^T and run the target with it (to show what forming W costs).
    """

    def __init__(self, wl: Workload, dense: bool = False) -> None:
        super().__init__()
        h, t = wl.hyper, wl.target
        self.target, self.rank, self.dense = t, h.rank, dense
        self.factored = [len(s) == 2 and h.rank <= min(s) for _, s in t.shapes()]
        self.sizes = [h.rank * sum(s) if f else int(torch.Size(s).numel()) for (_, s), f in zip(t.shapes(), self.factored)]
        self.encoder = nn.Linear(t.in_dim, h.cond_dim)
        self.body = body_mlp(h.cond_dim, h.body)
        self.head = nn.Linear(h.body[-1], sum(self.sizes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.body(self.encoder(x)))  # (B, sum(sizes))
        B, r = x.shape[0], self.rank
        parts = []
        for (_, s), f, y in zip(self.target.shapes(), self.factored, torch.split(out, self.sizes, dim=1)):
            if f:
                a = y[:, : s[0] * r].view(B, s[0], r)  # (B, out, r)
                b = y[:, s[0] * r :].view(B, s[1], r)  # (B, in, r)
                parts.append(torch.bmm(a, b.transpose(1, 2)) if self.dense else (a, b))
            else:
                parts.append(y.view(B, *s))
        if self.dense:
            return mlp_target_forward(x, *parts)
        w1, b1, w2, b2 = parts
        h = self._apply(w1, x) + b1  # (B, hidden)
        return self._apply(w2, torch.relu(h)) + b2  # (B, out)

    @staticmethod
    def _apply(w: Tensor | tuple[Tensor, Tensor], x: Tensor) -> Tensor:
        """W_b x_b for W given whole (B, out, in) or as factors (A, B)."""
        if isinstance(w, tuple):
            a, b = w
            return torch.bmm(a, torch.bmm(x.unsqueeze(1), b).transpose(1, 2)).squeeze(2)  # (B, out)
        return torch.bmm(w, x.unsqueeze(2)).squeeze(2)


LIMITS = {
    "static_full": StaticFull,
    "static_chunked": StaticChunked,
    "dynamic_full": DynamicFull,
    "dynamic_lowrank": DynamicLowRank,
}


def build(wl: Workload) -> Subject:
    """The limit implementation of a workload."""
    return _subject("limit", LIMITS[wl.key](wl), wl, "hand-written PyTorch")


def build_dense_lowrank(wl: Workload) -> Subject:
    """Workload 3 only: the hand-written low-rank math with W = A B^T formed per sample."""
    if wl.key != "dynamic_lowrank":
        raise Unavailable("n/a", "only for low-rank outputs")
    return _subject("limit-dense", DynamicLowRank(wl, dense=True), wl, "hand-written, forms W = A B^T per sample")


def build_plain_target(wl: Workload) -> Subject:
    """Static workloads only: the target trained directly, no hypernetwork (for scale)."""
    if wl.dynamic:
        raise Unavailable("n/a", "only for static workloads")
    mod = wl.target.module()
    return Subject("plain target", mod, mod.forward, note="no hypernetwork: the target's own weights (context, not a competitor)")


def _subject(name: str, mod: nn.Module, wl: Workload, note: str) -> Subject:
    loop = None
    if wl.dynamic:
        loop = lambda x: torch.cat([mod(x[i : i + 1]) for i in range(x.shape[0])])  # noqa: E731
    return Subject(name, mod, mod.forward, loop, note=note)
