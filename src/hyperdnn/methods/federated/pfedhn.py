"""pFedHN's server side: a hypernetwork makes each client's weights from its embedding, and
each client's weight change updates the hypernetwork by a vector-Jacobian product.

Shamsian, Navon, Fetaya and Chechik, "Personalized Federated Learning using
Hypernetworks", ICML 2021, Algorithm 1. Defaults are those of the authors' code
(github.com/AvivSham/pFedHN, ``experiments/pfedhn/trainer.py``): embedding dimension
``1 + N/4``, an MLP of width 100 with 3 hidden layers, SGD with lr 1e-2, momentum 0.9,
weight decay 1e-3 and gradient clipping at 50 for the hypernetwork; 50 inner steps of
SGD (lr 5e-3, momentum 0.9, weight decay 5e-5, clipping 50) on minibatches of 64 for the
clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.conditioning import TaskEmbedding, TaskInput
from hyperdnn.errors import ConfigError, HDTypeError, ShapeError
from hyperdnn.hyperdnn import HyperDNN

from .local import accuracy, cross_entropy, sgd_steps

__all__ = ["PFedHN", "PFedHNStep", "pfedhn_local_update", "pfedhn_model"]


def pfedhn_model(target: nn.Module, num_clients: int, *, embed_dim: int | None = None, hidden: int = 100,
                 n_hidden: int = 3) -> HyperDNN:
    """pFedHN's hypernetwork as a HyperDNN: client embedding -> MLP -> one head per target tensor.

    ``model(x, client=i)`` runs client ``i``'s personalised network.

    Args:
        target: the clients' network (every parameter is generated).
        num_clients: rows of the embedding table (training clients plus any novel ones).
        embed_dim: embedding width (None: ``int(1 + num_clients / 4)``, the authors' default).
        hidden: the MLP's width (100).
        n_hidden: the MLP has ``n_hidden + 1`` layers (the authors' ``CNNHyper``:
            ``Linear(embed, 100)`` and ``n_hidden=3`` more; ours also puts a ReLU after the
            last one, before the heads).
    """
    dim = int(1 + num_clients / 4) if embed_dim is None else embed_dim
    import hyperdnn as hd

    return HyperDNN(target, inputs=TaskEmbedding(num_clients, dim, name="client"), outputs=hd.MultiHead(),
                    body=hd.MLP(hidden=(hidden,) * (n_hidden + 1)))


@dataclass(frozen=True)
class PFedHNStep:
    """One hypernetwork update: the client, and the norm of its VJP before clipping (detached)."""

    client: int
    grad_norm: float


class PFedHN:
    """The pFedHN server: weights for a client, and the hypernetwork update from its change.

    Update (Algorithm 1): with ``theta_i = h(v_i; phi)`` sent to client ``i`` and
    ``theta_i~`` what it returns after local training,
    ``grad = (d theta_i / d (phi, v_i))^T (theta_i - theta_i~)``, applied by the optimizer.

    Args:
        model: a HyperDNN whose input is a ``TaskEmbedding`` (one row per client), e.g.
            from :func:`pfedhn_model`.
        lr: the hypernetwork's SGD learning rate (1e-2).
        embed_lr: the embeddings' learning rate (None: ``lr``).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (1e-3).
        clip: max norm of the update before the step (50; None: none).

    Novel clients (pFedHN's generalisation experiment) have embedding rows that training
    never samples; :meth:`update` with ``embedding_only=True`` then trains only their row,
    the hypernetwork frozen (see :func:`tune_novel_client`).
    """

    def __init__(self, model: HyperDNN, *, lr: float = 1e-2, embed_lr: float | None = None, momentum: float = 0.9,
                 weight_decay: float = 1e-3, clip: float | None = 50.0) -> None:
        if not isinstance(model, HyperDNN):
            raise HDTypeError(f"PFedHN: model must be a HyperDNN (got {type(model).__name__})")
        inputs = model.hypernetwork.inputs
        if not isinstance(inputs, TaskInput):
            raise ConfigError("PFedHN: the model's input must be a TaskEmbedding with one row per client "
                              f"(got {type(inputs).__name__}); build it with pfedhn_model(target, num_clients)")
        for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not v >= 0:
                raise ConfigError(f"PFedHN: {name} must be >= 0 (got {v})")
        self.model = model
        self.keyword = inputs.name
        self.table = inputs.table.weight
        self.num_clients = inputs.num_tasks
        others = [p for p in model.parameters() if p is not self.table]
        self.optimizer = torch.optim.SGD(
            [{"params": others}, {"params": [self.table], "lr": lr if embed_lr is None else embed_lr}],
            lr=lr, momentum=momentum, weight_decay=weight_decay,
        )
        # novel clients: only the embedding moves; no weight decay, fresh momentum per client
        self.embedding_optimizer = torch.optim.SGD([self.table], lr=lr if embed_lr is None else embed_lr, momentum=momentum)
        self.clip = clip

    def _check(self, client: int) -> int:
        if not isinstance(client, int) or not 0 <= client < self.num_clients:
            raise ConfigError(f"PFedHN: client must be an int in 0..{self.num_clients - 1} (got {client!r})")
        return client

    @torch.no_grad()
    def weights_for(self, client: int) -> dict[str, Tensor]:
        """``theta_i``: client ``client``'s generated weights ``{name: tensor}`` (detached copies)."""
        theta = self.model.weights(**{self.keyword: self._check(client)})
        return {k: v.detach().clone() for k, v in theta.items()}

    def update(self, client: int, delta: dict[str, Tensor], *, embedding_only: bool = False) -> PFedHNStep:
        """One step of the hypernetwork from client ``client``'s change ``delta = theta - theta~``.

        Args:
            client: the client's id (its embedding row).
            delta: ``{name: tensor}`` for every generated tensor, each of the tensor's shape.
            embedding_only: move only the client's embedding (a novel client joining a
                trained hypernetwork), with the embedding optimizer.

        Returns:
            :class:`PFedHNStep`.
        """
        self._check(client)
        theta = self.model.weights(**{self.keyword: client})
        missing = sorted(set(theta) - set(delta))
        if missing:
            raise ConfigError(f"PFedHN.update: delta lacks {missing} (expected every generated tensor: {sorted(theta)})")
        for k, t in theta.items():
            if tuple(delta[k].shape) != tuple(t.shape):
                raise ShapeError(f"PFedHN.update: delta[{k!r}] has shape {tuple(delta[k].shape)}; expected {tuple(t.shape)}")
        params = [self.table] if embedding_only else [p for g in self.optimizer.param_groups for p in g["params"]]
        grads = torch.autograd.grad(list(theta.values()), params,
                                    grad_outputs=[delta[k].to(t) for k, t in theta.items()], allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
        if self.clip is not None:
            nn.utils.clip_grad_norm_(params, self.clip)
        (self.embedding_optimizer if embedding_only else self.optimizer).step()
        for p in params:
            p.grad = None
        return PFedHNStep(client, norm)

    def reset_embedding_optimizer(self) -> None:
        """Forget the embedding optimizer's momentum (before a new novel client)."""
        self.embedding_optimizer.state.clear()

    def state_dict(self) -> dict[str, Any]:
        """The optimizers' states (the model saves itself)."""
        return {"optimizer": self.optimizer.state_dict(), "embedding_optimizer": self.embedding_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.embedding_optimizer.load_state_dict(state["embedding_optimizer"])

    @torch.no_grad()
    def evaluate(self, client: int, x: Tensor, y: Tensor) -> tuple[int, int]:
        """``(correct, total)`` of client ``client``'s generated network on ``(x, y)``, in eval mode."""
        was = self.model.training
        self.model.eval()
        try:
            return accuracy(lambda xb: self.model(xb, **{self.keyword: self._check(client)}), x, y)
        finally:
            self.model.train(was)

    @torch.no_grad()
    def loss(self, client: int, x: Tensor, y: Tensor, batch: int = 1000) -> float:
        """Mean cross-entropy of client ``client``'s generated network on ``(x, y)`` (``x``:
        ``(n, ...)``, ``y``: ``(n,)``), in eval mode: what tuning a novel client's embedding
        should lower on its training data."""
        was = self.model.training
        self.model.eval()
        try:
            kw = {self.keyword: self._check(client)}
            total = sum(float(F.cross_entropy(self.model(x[i : i + batch], **kw), y[i : i + batch], reduction="sum"))
                        for i in range(0, len(x), batch))
            return total / max(1, len(x))
        finally:
            self.model.train(was)


def pfedhn_local_update(target: nn.Module, weights: dict[str, Tensor], x: Tensor, y: Tensor, *, steps: int = 50,
                        lr: float = 5e-3, momentum: float = 0.9, weight_decay: float = 5e-5, batch_size: int = 64,
                        clip: float | None = 50.0, generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], float]:
    """pFedHN's client side: start from ``theta`` (the received weights), take ``steps`` SGD
    steps on the local data and return ``delta = theta - theta~`` (what the client sends).

    Args:
        target: a network of the target's architecture (its parameters are overwritten).
        weights: ``theta`` as ``{name: tensor}`` (every parameter of ``target``).
        x: ``(n, ...)`` local inputs; y: ``(n,)`` labels.
        steps: inner SGD steps (authors: 50).
        lr: inner learning rate (5e-3).
        momentum: inner momentum (0.9).
        weight_decay: inner weight decay (5e-5).
        batch_size: minibatch size (64).
        clip: max gradient norm (50; None: none).
        generator: the random source of the minibatches.

    Returns:
        ``({name: delta}, mean training loss)``.
    """
    target.load_state_dict(weights)
    target.train()
    loss = sgd_steps(cross_entropy(target), target.parameters(), x, y, steps=steps, lr=lr, momentum=momentum,
                     weight_decay=weight_decay, batch_size=batch_size, clip=clip, generator=generator)
    new = target.state_dict()
    return {k: (weights[k] - new[k]).detach().clone() for k in weights}, loss
