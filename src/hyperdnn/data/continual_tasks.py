"""Task sequences for continual learning: split-MNIST, permuted-MNIST, 1D toy regression.

Each builder returns a list of :class:`Task`; a task holds its raw train/test
tensors and turns them into model inputs on the fly (uint8 pixels -> float in
[0, 1], flattened, permuted), so that ten permuted-MNIST tasks share one copy of
the images.

Reference: von Oswald, Henning, Grewe, Sacramento (2020), "Continual learning
with hypernetworks", ICLR; task definitions follow the released code
(hypnettorch): split-MNIST pairs (0,1), (2,3), ... with labels 0/1 inside a
task; permuted-MNIST pads to 32x32 and permutes the pixels with a fixed seed,
task 1 unpermuted; the toy tasks are x+3 on [-4,-2], 2x^2-1 on [-1,1] and
(x-3)^3 on [2,4].
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hyperdnn.data.mnist import MNIST
from hyperdnn.errors import ConfigError, DataError

__all__ = ["Task", "permuted_mnist", "sample_batch", "split_mnist", "tasks_to", "toy_regression"]


@dataclass(frozen=True)
class Task:
    """One task of a continual-learning sequence.

    Attributes:
        name: e.g. ``"digits 2/3"``.
        train_x: raw training inputs, ``(N, ...)`` (uint8 pixels or float features).
        train_y: ``(N,)`` int64 class labels (task-local) or ``(N, 1)`` float targets.
        test_x: raw test inputs, ``(M, ...)``.
        test_y: ``(M,)`` or ``(M, 1)``.
        num_outputs: size of the target network's output layer for this task.
        regression: True for regression (MSE), False for classification (cross-entropy).
        perm: optional ``(D,)`` pixel permutation applied after flattening.
        label_offset: add to a task-local class label to get the global label in CL3 (split-MNIST:
            2k, the digit; permuted-MNIST: 10k, so that CL3 is a 10*T-way choice as in the paper).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_outputs: int
    regression: bool = False
    perm: torch.Tensor | None = None
    label_offset: int = 0

    def __post_init__(self) -> None:
        # an empty split would train on nothing or divide by zero when evaluated, after the whole run
        for part, x in (("training", self.train_x), ("test", self.test_x)):
            if x.shape[0] == 0:
                raise DataError(f"Task {self.name!r}: the {part} set has 0 items (expected at least one); check the data files")

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.train_x.shape[1:]))

    def inputs(self, raw: torch.Tensor) -> torch.Tensor:
        """Model inputs ``(B, D)`` float32 from raw rows ``(B, ...)``."""
        x = raw.reshape(raw.shape[0], -1)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.perm is not None:
            x = x[:, self.perm]
        return x

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (M, D), targets)`` for the whole test set."""
        return self.inputs(self.test_x), self.test_y

    def train_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (N, D), targets)`` for the whole training set."""
        return self.inputs(self.train_x), self.train_y


def sample_batch(task: Task, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random training batch (with replacement) drawn with ``generator``.

    Returns:
        ``(x (B, D), y)`` on the task's device.
    """
    idx = torch.randint(0, task.num_train, (batch_size,), generator=generator)
    idx = idx.to(task.train_x.device)
    return task.inputs(task.train_x[idx]), task.train_y[idx]


def tasks_to(tasks: list[Task], device: torch.device | str) -> list[Task]:
    """The tasks with their tensors on ``device``; tensors shared between tasks stay shared."""
    memo: dict[int, torch.Tensor] = {}

    def mv(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        if id(t) not in memo:
            memo[id(t)] = t.to(device)
        return memo[id(t)]

    return [replace(t, train_x=mv(t.train_x), train_y=mv(t.train_y), test_x=mv(t.test_x), test_y=mv(t.test_y), perm=mv(t.perm)) for t in tasks]


def split_mnist(mnist: MNIST, num_tasks: int = 5) -> list[Task]:
    """Split-MNIST: task k classifies digit 2k (label 0) against 2k+1 (label 1).

    Args:
        mnist: from :func:`hyperdnn.data.mnist.load_mnist`.
        num_tasks: 1..5 (default 5).

    Returns:
        ``num_tasks`` tasks with inputs ``(784,)`` in [0, 1] and 2 outputs.
    """
    if not 1 <= num_tasks <= 5:
        raise ConfigError(f"split_mnist: num_tasks must be in 1..5 (got {num_tasks})")
    tasks = []
    for k in range(num_tasks):
        a, b = 2 * k, 2 * k + 1
        tr = (mnist.train_labels == a) | (mnist.train_labels == b)
        te = (mnist.test_labels == a) | (mnist.test_labels == b)
        tasks.append(
            Task(
                name=f"digits {a}/{b}",
                train_x=mnist.train_images[tr],
                train_y=(mnist.train_labels[tr] - a),
                test_x=mnist.test_images[te],
                test_y=(mnist.test_labels[te] - a),
                num_outputs=2,
                label_offset=a,
            )
        )
    return tasks


def permuted_mnist(mnist: MNIST, num_tasks: int = 10, padding: int = 2, seed: int = 42) -> list[Task]:
    """Permuted-MNIST: images zero-padded to ``28 + 2*padding`` square, pixels permuted per task.

    Args:
        mnist: from :func:`hyperdnn.data.mnist.load_mnist`.
        num_tasks: number of tasks (default 10); task 1 keeps the original pixel order.
        padding: zero border in pixels (default 2 -> 32x32 = 1024 inputs).
        seed: seed of the permutations (default 42), independent of the training seed.

    Returns:
        ``num_tasks`` tasks with 10 outputs sharing one copy of the padded images.
    """
    if num_tasks < 1:
        raise ConfigError(f"permuted_mnist: num_tasks must be >= 1 (got {num_tasks})")
    if padding < 0:
        raise ConfigError(f"permuted_mnist: padding must be >= 0 (got {padding})")
    train = F.pad(mnist.train_images, (padding,) * 4)  # (60000, 32, 32) uint8
    test = F.pad(mnist.test_images, (padding,) * 4)  # (10000, 32, 32) uint8
    d = train.shape[1] * train.shape[2]
    rng = np.random.RandomState(seed)
    tasks = []
    for k in range(num_tasks):
        perm = None if k == 0 else torch.from_numpy(rng.permutation(d).astype(np.int64))
        tasks.append(Task(name=f"permutation {k + 1}", train_x=train, train_y=mnist.train_labels, test_x=test, test_y=mnist.test_labels, num_outputs=10, perm=perm, label_offset=10 * k))
    return tasks


TOY_FUNCTIONS: tuple[tuple[str, Callable[[np.ndarray], np.ndarray], tuple[float, float]], ...] = (
    ("x+3 on [-4,-2]", lambda x: x + 3.0, (-4.0, -2.0)),
    ("2x^2-1 on [-1,1]", lambda x: 2.0 * x**2 - 1.0, (-1.0, 1.0)),
    ("(x-3)^3 on [2,4]", lambda x: (x - 3.0) ** 3, (2.0, 4.0)),
)


def toy_regression(num_train: int = 100, num_test: int = 50, noise_std: float = 0.05, seed: int = 42) -> list[Task]:
    """The three 1D polynomial regression tasks of von Oswald et al. (2020), Fig. 2.

    Training inputs are uniform on each task's interval with Gaussian noise of
    std ``noise_std`` on the targets; test inputs are evenly spaced on the same
    interval with noise-free targets (as in the released code).

    Args:
        num_train: training points per task (default 100).
        num_test: test points per task (default 50).
        noise_std: target noise std (default 0.05).
        seed: data seed (default 42), independent of the training seed.

    Returns:
        3 regression tasks with inputs ``(1,)`` and targets ``(1,)``.
    """
    rng = np.random.RandomState(seed)
    tasks = []
    for name, f, (lo, hi) in TOY_FUNCTIONS:
        xtr = rng.uniform(lo, hi, size=(num_train, 1))
        ytr = f(xtr) + rng.normal(0.0, noise_std, size=(num_train, 1))
        xte = np.linspace(lo, hi, num_test).reshape(num_test, 1)
        yte = f(xte)
        tasks.append(
            Task(
                name=name,
                train_x=torch.tensor(xtr, dtype=torch.float32),
                train_y=torch.tensor(ytr, dtype=torch.float32),
                test_x=torch.tensor(xte, dtype=torch.float32),
                test_y=torch.tensor(yte, dtype=torch.float32),
                num_outputs=1,
                regression=True,
            )
        )
    return tasks
