"""GHN-2's gated graph network: a forward and a backward sweep over the graph, GRU updates.

For node ``v`` in topological order (forward sweep; reverse order in the backward sweep)

    m_v = sum_{u -> v, s = 1} MLP(h_u) + sum_{u -> v, 1 <= s <= s_max} MLP_sp(h_u) / s
    h_v = GRUCell(m_v, h_v)

where ``u -> v`` are the predecessors of ``v`` (successors in the backward sweep) and
``s`` the shortest-path distance (Knyazev et al. 2021, eq. 3-4; ppuda's
``ghn/gatedgnn.py``, whose ``masks_all`` includes the 1-hop edges in the virtual sum).
Without virtual edges only the first sum is used.

ppuda walks the nodes one at a time. Here the nodes are grouped by *level* (the
longest path from a source in the forward sweep, to a sink in the backward one):
every edge goes from a lower level to a higher one, so when a level is processed all
the nodes it reads are already updated, as in the one-at-a-time walk, and the result
is the same (``tests/test_ghn.py`` checks it against a node-by-node loop) with one GRU
call per level instead of per node. Several graphs are batched as one disjoint graph.
Plain torch (``index_add_``): a graph library would only add a dependency for a
two-line scatter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Sweep:
    """The precomputed schedule of one sweep: per level, the nodes it updates and the edges into them.

    Each level is ``(nodes, src, dst_local, inv_dist, one_hop)``: ``nodes`` (n,) global ids,
    ``src`` (e,) global ids of the message senders, ``dst_local`` (e,) positions in ``nodes``,
    ``inv_dist`` (e, 1) ``1 / s``, ``one_hop`` (e,) bool.
    """

    levels: tuple[tuple[Tensor, Tensor, Tensor, Tensor, Tensor], ...]


def _levels(n: int, edges: list[tuple[int, int]]) -> list[int]:
    """Longest path from a source to each node (edges go from lower to higher node id)."""
    level = [0] * n
    for s, d in sorted(edges, key=lambda e: e[1]):
        level[d] = max(level[d], level[s] + 1)
    return level


def schedule(n: int, edges: list[tuple[int, int, int]]) -> tuple[Sweep, Sweep]:
    """The forward and backward sweeps over a (batched) graph.

    Args:
        n: number of nodes, numbered topologically (every edge has ``src < dst``).
        edges: ``(src, dst, s)`` with ``s`` the shortest-path distance (1 for real edges).

    Returns:
        ``(forward, backward)`` schedules for :class:`GatedGNN`.
    """
    sweeps = []
    for backward in (False, True):
        directed = [(d, s, k) if backward else (s, d, k) for s, d, k in edges]
        # In the backward sweep node ids run the other way; flip them to reuse the forward rule.
        flip = (lambda i: n - 1 - i) if backward else (lambda i: i)
        level = _levels(n, [(flip(s), flip(d)) for s, d, k in directed if k == 1])
        by_level: dict[int, list[int]] = {}
        for v in range(n):
            by_level.setdefault(level[flip(v)], []).append(v)
        incoming: dict[int, list[tuple[int, int]]] = {}
        for s, d, k in directed:
            incoming.setdefault(d, []).append((s, k))
        out = []
        for lv in sorted(by_level):
            nodes = by_level[lv]
            src, dst, inv, hop = [], [], [], []
            for j, v in enumerate(nodes):
                for s, k in incoming.get(v, []):
                    src.append(s)
                    dst.append(j)
                    inv.append(1.0 / k)
                    hop.append(k == 1)
            out.append((torch.tensor(nodes), torch.tensor(src, dtype=torch.long), torch.tensor(dst, dtype=torch.long),
                        torch.tensor(inv).view(-1, 1), torch.tensor(hop, dtype=torch.bool)))
        sweeps.append(Sweep(tuple(out)))
    return sweeps[0], sweeps[1]


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    # ppuda's MLP(in, hid=(h, dim)) with ReLU after every layer (last_activation='same').
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.ReLU())


class GatedGNN(nn.Module):
    """GHN-2's gated graph network.

    Args:
        dim: node feature width ``C``.
        virtual_edges: add the ``MLP_sp`` messages over virtual edges (GHN-2) or not (GHN-1).
        steps: forward+backward sweeps ``T`` (GHN-2: 1).

    Shapes: ``forward(h (N, C), sweeps) -> (N, C)``.
    """

    def __init__(self, dim: int, *, virtual_edges: bool = True, steps: int = 1) -> None:
        super().__init__()
        self.virtual = virtual_edges
        self.steps = steps
        self.mlp = _mlp(dim, dim // 2 if virtual_edges else dim)
        self.mlp_sp = _mlp(dim, dim // 2) if virtual_edges else None
        self.gru = nn.GRUCell(dim, dim)

    def forward(self, h: Tensor, sweeps: tuple[Sweep, Sweep]) -> Tensor:
        for _ in range(self.steps):
            for sweep in sweeps:
                for nodes, src, dst, inv, hop in sweep.levels:
                    m = h.new_zeros(len(nodes), h.shape[1])  # (n, C)
                    if len(src):
                        hs = h[src]  # (e, C)
                        if hop.any():
                            m = m.index_add(0, dst[hop], self.mlp(hs[hop]))
                        if self.mlp_sp is not None:
                            m = m.index_add(0, dst, self.mlp_sp(hs) * inv.to(hs))
                    h = h.index_copy(0, nodes, self.gru(m, h[nodes]))
        return h
