"""The target networks of the federated experiments (plain ``nn.Module``s)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FederatedLeNet"]


class FederatedLeNet(nn.Module):
    """pFedHN's target CNN (``CNNTarget`` in github.com/AvivSham/pFedHN,
    ``experiments/pfedhn/models.py``) for ``(B, in_channels, 28, 28)`` images: two 5x5
    convolutions (``n_kernels``, ``2 n_kernels`` channels) with max-pooling, then fully
    connected layers 120 -> 84 -> ``out_dim``. Returns logits ``(B, out_dim)``.

    All five federated methods here train this network, so their accuracies compare;
    HyperFL generates its feature extractor (:data:`FEATURE_EXTRACTOR`) and keeps ``fc3``
    as a private classifier.
    """

    FEATURE_EXTRACTOR = ("conv1.*", "conv2.*", "fc1.*", "fc2.*")

    def __init__(self, in_channels: int = 1, n_kernels: int = 16, out_dim: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, n_kernels, 5)
        self.conv2 = nn.Conv2d(n_kernels, 2 * n_kernels, 5)
        self.fc1 = nn.Linear(2 * n_kernels * 4 * 4, 120)  # 28 -> 24 -> 12 -> 8 -> 4
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))

