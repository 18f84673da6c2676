"""pFedHN's generalisation to novel clients: a client that joins after training gets only its
embedding trained, through the same exchange (weights out, weight change back), with the
hypernetwork frozen. pFedHN's authors describe the experiment (Section 5.3) but released no
code for it (github.com/AvivSham/pFedHN, issue 8); this follows the paper's description.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .pfedhn import PFedHN, pfedhn_local_update

__all__ = ["tune_novel_client"]


def tune_novel_client(server: PFedHN, client: int, target_fn: Callable[[], nn.Module], x: Tensor, y: Tensor, *,
                      rounds: int = 50, inner: dict | None = None, generator: torch.Generator | None = None) -> list[float]:
    """Train novel client ``client``'s embedding for ``rounds`` exchanges, the hypernetwork fixed.

    Each exchange is Algorithm 1's client step (:func:`pfedhn_local_update` from the client's
    generated weights) followed by :meth:`PFedHN.update` with ``embedding_only=True``.

    Args:
        server: the trained :class:`PFedHN`; ``client`` must be an embedding row that
            training never sampled.
        client: the novel client's id.
        target_fn: makes the target network.
        x: ``(n, ...)`` the client's training inputs; y: ``(n,)`` labels.
        rounds: exchanges.
        inner: keyword arguments of :func:`pfedhn_local_update` (steps, lr, ...).
        generator: the random source of the minibatches.

    Returns:
        the client's mean inner-loop loss per exchange.
    """
    server.reset_embedding_optimizer()
    losses = []
    net = target_fn()
    for _ in range(rounds):
        delta, loss = pfedhn_local_update(net, server.weights_for(client), x, y, generator=generator, **(inner or {}))
        server.update(client, delta, embedding_only=True)
        losses.append(loss)
    return losses
