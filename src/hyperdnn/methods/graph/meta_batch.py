"""GHN-2's training: a meta-batch of architectures per step, each run with its predicted parameters.

    loss(phi) = 1/M sum_{m=1..M} L(f_m(x; GHN(graph_m; phi)), y)

for ``M`` architectures drawn per step (GHN-2: ``M = 8`` on CIFAR-10) and one minibatch
``(x, y)`` shared by all of them; gradients reach the GHN through every predicted
parameter; the GHN's gradient norm is clipped (GHN-2: 5). Batch-norm layers of the
predicted models use batch statistics at evaluation too, as ppuda's ``bn_train=True``
does: the running statistics of a model that was never trained mean nothing.
(Knyazev et al. 2021, section 4; ppuda ``experiments/train_ghn.py``.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, HDTypeError

from .ghn import GraphHyperNetwork
from .predict import run_with, write_params


@dataclass(frozen=True)
class GHNStep:
    """One meta-batch step: the mean loss and each architecture's, detached floats."""

    loss: float
    losses: tuple[float, ...]


def batch_stats_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode except its batch norms, which use the batch's statistics."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    return model


class GHNTraining:
    """Trains a :class:`GraphHyperNetwork` over a space of architectures.

    Args:
        ghn: the graph hypernetwork.
        optimizer: an optimizer over ``ghn``'s parameters (GHN-2: Adam, lr 1e-3).
        loss_fn: ``loss_fn(output, target) -> scalar`` (default: cross-entropy).
        clip: max gradient norm of the GHN's parameters (GHN-2: 5; 0: off).

    Example (in a user's own loop)::

        method = GHNTraining(ghn, torch.optim.Adam(ghn.parameters(), 1e-3))
        for x, y in batches:
            models = [space.sample(gen).build() for _ in range(4)]
            method.step(models, x, y)
        acc = method.evaluate(held_out_models, x_test, y_test)
    """

    def __init__(self, ghn: GraphHyperNetwork, optimizer: torch.optim.Optimizer, *,
                 loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy, clip: float = 5.0) -> None:
        if not isinstance(ghn, GraphHyperNetwork):
            raise HDTypeError(f"GHNTraining: ghn must be a GraphHyperNetwork (got {type(ghn).__name__})")
        if clip < 0:
            raise ConfigError(f"GHNTraining: clip must be >= 0 (got {clip})")
        self.ghn, self.optimizer, self.loss_fn, self.clip = ghn, optimizer, loss_fn, clip
        self.steps = 0

    def step(self, models: Sequence[nn.Module], x: Tensor, y: Tensor) -> GHNStep:
        """One meta-batch step: predict for every model (one GNN pass), mean task loss, update the GHN.

        Args:
            models: the meta-batch of architectures (their own parameters are not used).
            x: ``(B, ...)`` inputs; y: targets for ``loss_fn``.
        """
        if not models:
            raise ConfigError("GHNTraining.step: the meta-batch is empty (give at least one model)")
        self.ghn.train()
        thetas = self.ghn(list(models))
        losses = torch.stack([self.loss_fn(run_with(m.train(), th, x), y) for m, th in zip(models, thetas)])
        loss = losses.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.ghn.parameters(), self.clip)
        self.optimizer.step()
        self.steps += 1
        return GHNStep(float(loss.detach()), tuple(float(v) for v in losses.detach()))

    @torch.no_grad()
    def evaluate(self, models: Sequence[nn.Module], x: Tensor, y: Tensor, batch: int = 1000) -> list[float]:
        """Accuracy (%) of each model with its predicted parameters, without any training.

        The GHN's mode is restored after; batch norms use the batch's statistics (GHN-2's
        ``bn_train=True``), evaluated in batches of ``batch``.
        """
        was = self.ghn.training
        self.ghn.eval()
        try:
            return [accuracy(write_params(batch_stats_copy(m), th), x, y, batch)
                    for m, th in zip(models, self.ghn(list(models)))]
        finally:
            self.ghn.train(was)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 1000) -> float:
    """Classification accuracy (%) of ``model`` on ``(x, y)`` in its current mode, in batches."""
    correct = sum(int((model(x[i: i + batch]).argmax(-1) == y[i: i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * correct / len(x)
