"""NeuMeta's first smoothness device: reorder the hidden channels of a trained network.

A hidden channel of a chain ``... -> layer l -> layer l+1 -> ...`` is the
``c``-th output of layer ``l`` (its kernel row and bias) and the ``c``-th input
of layer ``l+1``. Permuting all three together leaves the network's function
unchanged; NeuMeta picks, per hidden layer, the order that makes neighbouring
channels similar, so that the weights vary smoothly with the coordinate
``o / n_out`` an implicit hypernetwork learns. That order is a shortest
Hamiltonian path through the channels under the L1 distance of their
concatenated weights (Yang & Wang 2024, section 4.1; ``smooth/permute.py``
lines 60-83 and 123-139 of Adamdad/neumeta at 1a2f4a0, which solve it with
``fast_tsp`` after adding a dummy city at distance 0 from all).

Here the path is found with a stated heuristic instead of a TSP solver: the
nearest-neighbour path from every start channel, the shortest of them, then
2-opt moves (reverse a stretch of the path) until none shortens it.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from hyperdnn.errors import ConfigError

Group = list[tuple[str, int]]


def chain_groups(module: nn.Module) -> list[Group]:
    """The hidden channel groups of a chain of ``nn.Conv*d`` / ``nn.Linear`` layers, in module order.

    Two consecutive layers ``l``, ``l+1`` with ``out(l) == in(l+1)`` share a hidden
    dimension: ``[(l.weight, 0), (l.bias, 0), (l+1.weight, 1)]`` (the bias when present).
    The network's input and output channels are in no group (they stay in place).
    """
    layers = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    groups = []
    for (name_a, a), (name_b, b) in zip(layers, layers[1:]):
        if a.weight.shape[0] != b.weight.shape[1] or getattr(b, "groups", 1) != 1:
            continue
        group: Group = [(f"{name_a}.weight", 0)]
        if a.bias is not None:
            group.append((f"{name_a}.bias", 0))
        group.append((f"{name_b}.weight", 1))
        groups.append(group)
    return groups


def path_length(dist: Tensor, order: list[int]) -> float:
    """Length of the open path ``order`` under the distance matrix ``dist``."""
    return float(sum(float(dist[a, b]) for a, b in zip(order, order[1:])))


def shortest_path_order(features: Tensor) -> list[int]:
    """A short Hamiltonian path through the rows of ``features`` ``(n, d)`` under the L1 distance.

    Nearest neighbour from every start, the shortest kept, then 2-opt until no move helps.
    """
    n = features.shape[0]
    if n <= 2:
        return list(range(n))
    features = features.detach().double()
    dist = torch.cdist(features, features, p=1)  # (n, n)
    d = dist.tolist()
    best, best_len = None, float("inf")
    for start in range(n):
        order, seen = [start], {start}
        for _ in range(n - 1):
            row = d[order[-1]]
            nxt = min((j for j in range(n) if j not in seen), key=row.__getitem__)
            order.append(nxt)
            seen.add(nxt)
        length = sum(d[a][b] for a, b in zip(order, order[1:]))
        if length < best_len:
            best, best_len = order, length
    order = best
    improved = True
    while improved:
        improved = False
        for i in range(n - 1):
            for j in range(i + 1, n):
                # Reversing order[i..j] changes the edges (i-1, i) and (j, j+1) only.
                before = (d[order[i - 1]][order[i]] if i > 0 else 0.0) + (d[order[j]][order[j + 1]] if j < n - 1 else 0.0)
                after = (d[order[i - 1]][order[j]] if i > 0 else 0.0) + (d[order[i]][order[j + 1]] if j < n - 1 else 0.0)
                if after < before - 1e-12:
                    order[i : j + 1] = order[i : j + 1][::-1]
                    improved = True
    return order


@torch.no_grad()
def smooth_permutation(module: nn.Module, groups: list[Group] | None = None) -> nn.Module:
    """A copy of ``module`` whose hidden channels are reordered along a short Hamiltonian path.

    Args:
        module: a trained network (not modified).
        groups: the channel groups, each a list of ``(parameter name, dim)`` that index the
            same channels; default :func:`chain_groups` (a chain of Conv/Linear layers).

    Returns:
        The permuted copy; it computes the same function as ``module``.
    """
    groups = chain_groups(module) if groups is None else groups
    out = copy.deepcopy(module)
    params = dict(out.named_parameters())
    for group in groups:
        missing = [n for n, _ in group if n not in params]
        if missing:
            raise ConfigError(f"smooth_permutation: the module has no parameter {missing[0]!r} (group {group})")
        sizes = {params[n].shape[dim] for n, dim in group}
        if len(sizes) != 1:
            raise ConfigError(f"smooth_permutation: group {group} indexes channels of different counts {sorted(sizes)}")
        cities = torch.cat([params[n].movedim(dim, 0).reshape(params[n].shape[dim], -1) for n, dim in group], dim=1)  # (channels, features)
        order = torch.tensor(shortest_path_order(cities))
        for n, dim in group:
            params[n].copy_(params[n].index_select(dim, order))
    return out


def total_variation(module: nn.Module) -> float:
    """Mean over parameters of the summed absolute differences of neighbours along dims 0 and 1
    (NeuMeta's smoothness measure, ``smooth/permute.py`` lines 9-58)."""
    total, count = 0.0, 0
    for p in module.parameters():
        p = p.detach()
        tv = (p[1:] - p[:-1]).abs().sum() if p.dim() >= 1 else p.new_zeros(())
        if p.dim() >= 2:
            tv = tv + (p[:, 1:] - p[:, :-1]).abs().sum()
        total += float(tv)
        count += 1
    return total / max(count, 1)
