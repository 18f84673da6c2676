"""What every client does with its own data: SGD steps on random minibatches, and accuracy."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["accuracy", "sgd_steps"]


def sgd_steps(loss_of: Callable[[Tensor, Tensor], Tensor], params: Iterable[nn.Parameter], x: Tensor, y: Tensor, *,
              steps: int, lr: float, batch_size: int, momentum: float = 0.0, weight_decay: float = 0.0,
              clip: float | None = None, generator: torch.Generator | None = None) -> float:
    """``steps`` SGD steps, each on a fresh random minibatch (pFedHN's
    ``next(iter(train_loader))`` with shuffling); a new optimizer, so no momentum carries over.

    Args:
        loss_of: ``(x_batch, y_batch) -> scalar loss``, differentiable in ``params``.
        params: the parameters to train.
        x: ``(n, ...)`` inputs; y: ``(n,)`` labels.
        steps, lr, batch_size, momentum, weight_decay: SGD's settings.
        clip: max gradient norm (None: none).
        generator: the random source of the minibatches.

    Returns:
        the mean training loss over the steps.
    """
    params = [p for p in params]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    total = 0.0
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=generator)[:batch_size]
        loss = loss_of(x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        total += loss.item()
    return total / max(steps, 1)


@torch.no_grad()
def accuracy(predict: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, batch: int = 1000) -> tuple[int, int]:
    """``(correct, total)`` of ``predict(x).argmax(1)`` against ``y``, in chunks of ``batch``."""
    correct = sum(int((predict(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return correct, len(x)


def cross_entropy(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``(x, y) -> CE(model(x), y)``."""
    return lambda xb, yb: F.cross_entropy(model(xb), yb)
