"""Non-IID splits of a labelled data set across clients: pathological (a few classes per client)
and Dirichlet.

Both partitioners first draw a *share matrix* ``S`` of shape ``(clients, classes)``:
``S[i, k]`` is the fraction of class ``k``'s examples that client ``i`` receives (each
column sums to at most 1). :func:`split_by_shares` then cuts every class of a label vector
by those fractions. Using the same ``S`` for the training and the test labels gives each
client a test set drawn from its own distribution, which is what personalised accuracy
is measured on (pFedHN's code does the same: ``gen_data_split`` is applied to train, val
and test with one ``class_partitions``).

flwr-datasets has Dirichlet and pathological partitioners too, but they split one
HuggingFace ``Dataset`` at a time and cannot reuse a client's class mix on a second split,
so the test sets would not match; hence these few lines.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["class_counts", "dirichlet_shares", "pathological_shares", "split_by_shares"]


def _check_counts(part: str, num_clients: int, num_classes: int) -> None:
    for name, v in (("num_clients", num_clients), ("num_classes", num_classes)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{part}: {name} must be a positive int (got {v!r})")


def pathological_shares(num_clients: int, num_classes: int = 10, classes_per_client: int = 2, *,
                        generator: torch.Generator | None = None, low: float = 0.4, high: float = 0.6) -> Tensor:
    """pFedHN's pathological split: each client holds ``classes_per_client`` distinct classes.

    Following ``gen_classes_per_node`` in the pFedHN code (github.com/AvivSham/pFedHN,
    ``experiments/dataset.py``): every class is cut into ``classes_per_client * num_clients
    // num_classes + 1`` slots whose sizes are uniform draws in ``[low, high]`` normalised to
    sum to 1; each client in turn takes a slot of a class with the most free slots (ties
    broken at random). Unlike that code, a client never takes two slots of one class.

    Args:
        num_clients: number of clients ``N``.
        num_classes: number of classes ``K`` (10 for MNIST).
        classes_per_client: classes per client, ``1 <= c <= K`` (pFedHN: 2 for CIFAR-10).
        generator: the random source (None: the global one).
        low: smallest unnormalised slot size (pFedHN: 0.4).
        high: largest unnormalised slot size (pFedHN: 0.6).

    Returns:
        ``(N, K)`` float64 shares; row ``i`` has exactly ``c`` non-zero entries.
    """
    part = "pathological_shares"
    _check_counts(part, num_clients, num_classes)
    if not isinstance(classes_per_client, int) or not 1 <= classes_per_client <= num_classes:
        raise ConfigError(f"{part}: classes_per_client must be an int in 1..{num_classes} (got {classes_per_client!r})")
    if not 0 < low <= high:
        raise ConfigError(f"{part}: need 0 < low <= high (got low={low}, high={high})")
    slots = classes_per_client * num_clients // num_classes + 1
    sizes = low + (high - low) * torch.rand(num_classes, slots, generator=generator, dtype=torch.float64)
    sizes = sizes / sizes.sum(1, keepdim=True)  # (K, slots): one class's slots sum to 1
    free = torch.full((num_classes,), slots)
    shares = torch.zeros(num_clients, num_classes, dtype=torch.float64)
    for i in range(num_clients):
        taken: list[int] = []
        for _ in range(classes_per_client):
            counts = free.clone()
            counts[taken] = -1  # a client's classes are distinct
            best = (counts == counts.max()).nonzero().flatten()
            k = int(best[torch.randint(len(best), (1,), generator=generator)])
            free[k] -= 1
            shares[i, k] = sizes[k, free[k]]  # the slot's share of class k (pFedHN pops from the end)
            taken.append(k)
    return shares


def dirichlet_shares(num_clients: int, num_classes: int = 10, alpha: float = 0.5, *,
                     generator: torch.Generator | None = None) -> Tensor:
    """Dirichlet split: class ``k`` is divided among the clients by ``p_k ~ Dir(alpha * 1_N)``.

    Small ``alpha`` (0.1) gives each client few classes; large ``alpha`` tends to IID
    (Hsu, Qi and Brown 2019, "Measuring the effects of non-identical data distribution").

    Args:
        num_clients: number of clients ``N``.
        num_classes: number of classes ``K``.
        alpha: concentration, ``> 0``.
        generator: the random source (None: the global one).

    Returns:
        ``(N, K)`` float64 shares; every column sums to 1.
    """
    part = "dirichlet_shares"
    _check_counts(part, num_clients, num_classes)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise ConfigError(f"{part}: alpha must be a number > 0 (got {alpha!r})")
    # Dir(alpha) as normalised Gamma(alpha, 1) draws (torch.distributions takes no generator)
    gen = generator if generator is not None else torch.default_generator
    g = _gamma(float(alpha), (num_classes, num_clients), gen).clamp_min(1e-300)  # (K, N)
    return (g / g.sum(1, keepdim=True)).T.contiguous()  # (N, K)


def _gamma(alpha: float, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Gamma(alpha, 1) draws from a generator (Marsaglia and Tsang; alpha < 1 by the boost u^(1/alpha))."""
    a = alpha + 1.0 if alpha < 1 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(shape, dtype=torch.float64).flatten()
    todo = torch.arange(out.numel())
    while len(todo):
        x = torch.randn(len(todo), generator=generator, dtype=torch.float64)
        v = (1 + c * x) ** 3
        u = torch.rand(len(todo), generator=generator, dtype=torch.float64)
        ok = (v > 0) & (torch.log(u) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if alpha < 1:
        u = torch.rand(out.numel(), generator=generator, dtype=torch.float64)
        out = out * u ** (1.0 / alpha)
    return out.view(shape)


def split_by_shares(labels: Tensor, shares: Tensor, *, generator: torch.Generator | None = None) -> list[Tensor]:
    """Indices of each client's examples: class ``k``'s examples, in a random order, cut into
    consecutive runs of ``floor(S[i, k] * n_k)`` for clients ``i = 0, 1, ...``.

    Args:
        labels: ``(M,)`` integer labels in ``0..K-1``.
        shares: ``(N, K)`` from :func:`pathological_shares` or :func:`dirichlet_shares`.
        generator: the random source of the order within each class.

    Returns:
        ``N`` int64 index tensors into ``labels`` (disjoint; some examples may be unused).
    """
    if labels.dim() != 1 or labels.dtype.is_floating_point:
        raise ShapeError(f"split_by_shares: labels must be a 1-d integer tensor (got {labels.dtype} of shape {tuple(labels.shape)})")
    if shares.dim() != 2 or (shares < 0).any() or (shares.sum(0) > 1 + 1e-9).any():
        raise ConfigError("split_by_shares: shares must be a (clients, classes) matrix of non-negative fractions whose columns sum to at most 1")
    if len(labels) and int(labels.max()) >= shares.shape[1]:
        raise ConfigError(f"split_by_shares: label {int(labels.max())} has no column in shares of {shares.shape[1]} classes")
    parts: list[list[Tensor]] = [[] for _ in range(shares.shape[0])]
    for k in range(shares.shape[1]):
        idx = (labels == k).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        start = 0
        for i in range(shares.shape[0]):
            n = int(shares[i, k].item() * len(idx))
            parts[i].append(idx[start : start + n])
            start += n
    return [torch.cat(p).sort().values for p in parts]


def class_counts(labels: Tensor, parts: list[Tensor], num_classes: int = 10) -> Tensor:
    """``(N, K)`` int64: how many examples of each class each client holds."""
    return torch.stack([torch.bincount(labels[p], minlength=num_classes) for p in parts])
