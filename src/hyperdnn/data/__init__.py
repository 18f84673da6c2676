"""Data: the MNIST IDX loader and the continual-learning task sequences."""

from hyperdnn.data.continual_tasks import Task, permuted_mnist, sample_batch, split_mnist, tasks_to, toy_regression
from hyperdnn.data.mnist import MNIST, data_root, load_mnist, read_idx

__all__ = [
    "MNIST",
    "Task",
    "data_root",
    "load_mnist",
    "permuted_mnist",
    "read_idx",
    "sample_batch",
    "split_mnist",
    "tasks_to",
    "toy_regression",
]
