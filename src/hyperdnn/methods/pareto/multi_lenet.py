"""PHN's Multi-MNIST target: a LeNet-style shared trunk with one linear head per task."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiLeNet"]


class MultiLeNet(nn.Module):
    """Shared trunk ``conv 9x9 (1->10), ReLU, max-pool 2, conv 5x5 (10->20), ReLU, max-pool 2,
    linear 500 -> 50`` and ``tasks`` heads ``linear 50 -> 10``.

    The sizes are PHN's ``LeNetTarget([9, 5])`` (Navon et al. 2021, ``experiments/multimnist/models.py``),
    including its linear (no activation) hidden layer between the trunk and the heads.

    Input ``(B, 1, 36, 36)``; returns a tuple of ``tasks`` logits ``(B, 10)``.
    """

    def __init__(self, tasks: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 9)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.hidden = nn.Linear(20 * 5 * 5, 50)
        self.heads = nn.ModuleList(nn.Linear(50, classes) for _ in range(tasks))

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = self.hidden(h.flatten(1))
        return tuple(head(h) for head in self.heads)
