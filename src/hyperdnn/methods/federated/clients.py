"""Clients' local data: MNIST split non-IID across clients, each with a matching test set."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, DataError

from .partition import dirichlet_shares, pathological_shares, split_by_shares

__all__ = ["ClientData", "MNISTPartition", "mnist_clients"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SPLITS = ("pathological", "dirichlet")


@dataclass(frozen=True)
class ClientData:
    """One client's examples.

    Attributes:
        train_x: ``(n, 1, 28, 28)`` float32, standardised.
        train_y: ``(n,)`` int64.
        test_x: ``(m, 1, 28, 28)`` float32, drawn with the same class shares as the training set.
        test_y: ``(m,)`` int64.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


def mnist_clients(num_clients: int, *, split: str = "pathological", classes_per_client: int = 2, alpha: float = 0.5,
                  seed: int = 0, data_dir: str | Path | None = None, min_examples: int = 10) -> list[ClientData]:
    """MNIST divided among ``num_clients`` clients (train and test with one share matrix).

    Args:
        num_clients: how many clients.
        split: ``"pathological"`` (``classes_per_client`` classes each, pFedHN's scheme) or
            ``"dirichlet"`` (class shares from ``Dir(alpha)``).
        classes_per_client: for the pathological split.
        alpha: for the Dirichlet split.
        seed: fixes the shares and the order within each class.
        data_dir: where the MNIST files are (None: ``HYPERDNN_DATA`` or the cache; see
            :func:`hyperdnn.data.load_mnist`).
        min_examples: Dirichlet split only: the shares are drawn again (from the same
            random stream) until every client holds at least this many training examples
            and at least one test example, as the usual Dirichlet partitioners do (with
            alpha 0.1 and 55 clients a first draw can leave a client with none). A first
            draw that satisfies it is kept as it is.

    Returns:
        one :class:`ClientData` per client; the same arguments give the same split in every
        process (Flower's ClientApps each rebuild it).
    """
    if split not in SPLITS:
        raise ConfigError(f"mnist_clients: split must be one of {SPLITS} (got {split!r})")
    if not isinstance(min_examples, int) or isinstance(min_examples, bool) or min_examples < 0:
        raise ConfigError(f"mnist_clients: min_examples must be an int >= 0 (got {min_examples!r})")
    return list(_cached(num_clients, split, classes_per_client, float(alpha), seed, None if data_dir is None else str(data_dir),
                        min_examples))


MAX_DRAWS = 1000


@functools.lru_cache(maxsize=2)
def _cached(num_clients: int, split: str, classes_per_client: int, alpha: float, seed: int,
            data_dir: str | None, min_examples: int = 10) -> tuple[ClientData, ...]:
    from hyperdnn.data.mnist import load_mnist

    data = load_mnist(data_dir)
    gen = torch.Generator().manual_seed(seed)
    if split == "pathological":
        shares = pathological_shares(num_clients, 10, classes_per_client, generator=gen)
        train_parts = split_by_shares(data.train_labels, shares, generator=gen)
        test_parts = split_by_shares(data.test_labels, shares, generator=gen)
    else:
        for _ in range(MAX_DRAWS):
            shares = dirichlet_shares(num_clients, 10, alpha, generator=gen)
            train_parts = split_by_shares(data.train_labels, shares, generator=gen)
            test_parts = split_by_shares(data.test_labels, shares, generator=gen)
            if min(len(p) for p in train_parts) >= min_examples and min(len(p) for p in test_parts) >= 1:
                break
        else:
            raise DataError(f"mnist_clients: {MAX_DRAWS} Dirichlet draws (alpha={alpha}, {num_clients} clients) all left a client "
                            f"with fewer than {min_examples} training examples or no test example; use fewer clients, "
                            "a larger alpha or a smaller min_examples")

    def prep(x: Tensor) -> Tensor:
        return ((x.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)  # (n, 1, 28, 28)

    return tuple(
        ClientData(prep(data.train_images[tr]), data.train_labels[tr], prep(data.test_images[te]), data.test_labels[te])
        for tr, te in zip(train_parts, test_parts)
    )


@dataclass(frozen=True)
class MNISTPartition:
    """Which MNIST split a Flower ClientApp loads: called with the node's ``Context``, returns
    the :class:`ClientData` of partition ``context.node_config["partition-id"]``.

    A frozen dataclass (picklable) so that Flower's simulation engine can ship it to its
    worker processes; each process builds the split once (cached).

    Attributes: the arguments of :func:`mnist_clients`.
    """

    num_clients: int
    split: str = "pathological"
    classes_per_client: int = 2
    alpha: float = 0.5
    seed: int = 0
    data_dir: str | None = None
    min_examples: int = 10

    def __call__(self, context) -> ClientData:
        pid = context.node_config.get("partition-id")
        if pid is None or not 0 <= int(pid) < self.num_clients:
            raise ConfigError(f"MNISTPartition: the node's partition-id must be in 0..{self.num_clients - 1} "
                              f"(got {pid!r}); start a SuperNode with --node-config 'partition-id=0 num-partitions=2'")
        return mnist_clients(self.num_clients, split=self.split, classes_per_client=self.classes_per_client,
                             alpha=self.alpha, seed=self.seed, data_dir=self.data_dir, min_examples=self.min_examples)[int(pid)]
