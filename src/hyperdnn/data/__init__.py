"""Data: the MNIST IDX loader, Multi-MNIST built from it, and the continual-learning task sequences."""

from hyperdnn.data.continual_tasks import Task, permuted_mnist, sample_batch, split_mnist, tasks_to, toy_regression
from hyperdnn.data.mnist import MNIST, data_root, load_mnist, read_idx
from hyperdnn.data.multi_mnist import MultiMNIST, load_multi_mnist, make_multi_mnist

__all__ = [
    "MNIST",
    "MultiMNIST",
    "Task",
    "data_root",
    "load_mnist",
    "load_multi_mnist",
    "make_multi_mnist",
    "permuted_mnist",
    "read_idx",
    "sample_batch",
    "split_mnist",
    "tasks_to",
    "toy_regression",
]
