"""HyperFL's client side: a private client embedding and a shared hypernetwork generate the
feature extractor; the classifier stays private; only the hypernetwork is shared.

Guo, Zeng, Chen, Zhang, Ren, Zhou and Qu, "A New Federated Learning Framework Against
Gradient Inversion Attacks", AAAI 2025. Design and defaults from the authors' code
(github.com/Pengxin-Guo/HyperFL, ``cnn/methods/hyperfl.py``, ``cnn/models/cnn.py``,
``cnn/options.py``): embedding dimension 64, a hypernetwork with one hidden layer of 128
(ReLU) and one linear head per generated tensor; each round a client first trains its
classifier for one epoch (SGD lr 0.1, momentum 0.5, weight decay 5e-4) with the generated
extractor fixed, then the hypernetwork and its embedding for ``local_epochs`` epochs (SGD lr
0.02, momentum 0.5, weight decay 5e-4, each clipped at norm 50); the server averages the
hypernetworks weighted by the clients' numbers of examples (FedAvg).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.conditioning import TaskEmbedding
from hyperdnn.hyperdnn import HyperDNN

from .local import accuracy

__all__ = ["hyperfl_local_training", "hyperfl_model", "private_state", "shared_state"]

SHARED_PREFIX = "hypernetwork.outputs."


def hyperfl_model(target: nn.Module, generate: Any, *, embed_dim: int = 64, hidden: int = 128) -> HyperDNN:
    """One HyperFL client's model: ``model(x, client=0)``.

    Args:
        target: the client's network.
        generate: which parameters form the feature extractor (generated), e.g.
            ``FederatedLeNet.FEATURE_EXTRACTOR``; the rest (the classifier) are ordinary
            private parameters.
        embed_dim: the private embedding's width (64).
        hidden: the hypernetwork's hidden width (128).
    """
    import hyperdnn as hd

    return HyperDNN(target, inputs=TaskEmbedding(1, embed_dim, name="client"), outputs=hd.MultiHead(),
                    body=hd.MLP(hidden=(hidden,)), generate=generate)


def shared_state(model: HyperDNN) -> dict[str, Tensor]:
    """The hypernetwork's parameters (body and heads): the only thing a HyperFL client sends."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(SHARED_PREFIX)}


def private_state(model: HyperDNN) -> dict[str, Tensor]:
    """Everything else: the client embedding and the classifier (never sent)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(SHARED_PREFIX)}


def hyperfl_local_training(model: HyperDNN, x: Tensor, y: Tensor, *, local_epochs: int = 5, batch_size: int = 50,
                           lr: float = 0.02, lr_classifier: float = 0.1, momentum: float = 0.5,
                           weight_decay: float = 5e-4, clip: float = 50.0, max_steps: int | None = None,
                           generator: torch.Generator | None = None) -> float:
    """One round of a HyperFL client (in place): one epoch of the classifier, then
    ``local_epochs`` epochs of the hypernetwork and the embedding.

    Args:
        model: from :func:`hyperfl_model`, holding the received hypernetwork.
        x: ``(n, ...)`` local inputs; y: ``(n,)`` labels.
        local_epochs: epochs of the hypernetwork and embedding (authors: 5).
        batch_size: minibatch size (50).
        lr: the hypernetwork's and embedding's SGD learning rate (0.02).
        lr_classifier: the classifier's SGD learning rate (0.1).
        momentum: SGD momentum of both phases (0.5).
        weight_decay: SGD weight decay of both phases (5e-4).
        clip: max gradient norm, applied to the hypernetwork and to the embedding separately (50).
        max_steps: cap on the minibatches of each epoch (None: a full pass), to scale runs down.
        generator: the random source of the epoch orders.

    Returns:
        the mean loss of the hypernetwork phase.
    """
    model.train()
    shared = [p for n, p in model.named_parameters() if n.startswith(SHARED_PREFIX)]
    embedding = list(model.hypernetwork.inputs.parameters())
    classifier = [p for n, p in model.named_parameters() if n.startswith("target.")]

    def epoch(params: list[nn.Parameter], opt: torch.optim.Optimizer, groups: list[list[nn.Parameter]]) -> list[float]:
        order = torch.randperm(len(x), generator=generator)
        n = len(x) // batch_size if len(x) >= batch_size else 1
        n = n if max_steps is None else min(n, max_steps)
        losses = []
        for i in range(n):
            idx = order[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(model(x[idx], client=0), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for g in groups:
                nn.utils.clip_grad_norm_(g, clip)
            opt.step()
            losses.append(loss.item())
        return losses

    for p in shared + embedding:
        p.requires_grad_(False)  # phase 1: the generated extractor is fixed
    epoch(classifier, torch.optim.SGD(classifier, lr=lr_classifier, momentum=momentum, weight_decay=weight_decay), [])
    for p in shared + embedding:
        p.requires_grad_(True)
    for p in classifier:
        p.requires_grad_(False)
    opt = torch.optim.SGD([{"params": shared}, {"params": embedding}], lr=lr, momentum=momentum, weight_decay=weight_decay)
    losses: list[float] = []
    try:
        for _ in range(local_epochs):
            losses += epoch(shared + embedding, opt, [shared, embedding])
    finally:
        for p in classifier:
            p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    return sum(losses) / max(1, len(losses)) if losses else math.nan


@torch.no_grad()
def hyperfl_evaluate(model: HyperDNN, x: Tensor, y: Tensor) -> tuple[int, int]:
    """``(correct, total)`` of the client's model on ``(x, y)`` in eval mode (mode restored)."""
    was = model.training
    model.eval()
    try:
        return accuracy(lambda xb: model(xb, client=0), x, y)
    finally:
        model.train(was)
