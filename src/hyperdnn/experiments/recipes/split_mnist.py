"""Recipe ``split-mnist``: 5 two-digit MNIST tasks in sequence (von Oswald et al. 2020, Table 2).

Defaults from the released configuration (chrhenning/hypercl,
``mnist/train_args_default.py``, ``mnist/train_utils.py``): target MLP
784-400-400-10 (ReLU) with one 2-unit output head per task, all of it made by
the hypernetwork; chunked hypernetwork MLP 10-10 (ReLU), chunk size 42000, task
and chunk embeddings 96, Xavier-uniform weights and zero biases, embeddings
N(0, 1); beta 0.01; 2000 steps per task, batch 128 in shuffled sweeps through
each task's training set, Adam lr 1e-3.
Paper: CL1 99.79 %, CL3 (HNET+ENT) 69.48 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hyperdnn.data.continual_tasks import split_mnist
from hyperdnn.data.mnist import load_mnist
from hyperdnn.experiments.recipes import in_range, recipe
from hyperdnn.experiments import builders
from hyperdnn.experiments.figures import continual_figures
from hyperdnn.experiments.recipes._continual import check_chunked_config, chunked_spec, run_continual
from hyperdnn.experiments.recipes.toy_regression import make_mlp
from hyperdnn.experiments.runs import RunContext


@dataclass
class Config:
    """Configuration of ``split-mnist`` (defaults: the paper's)."""

    steps: int = field(default=2000, metadata={"help": "optimizer steps per task"})
    tasks: int = field(default=5, metadata={"help": "number of tasks (1..5)"})
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = field(default=0.01, metadata={"help": "output-regularizer strength"})
    reg_tasks: int | None = field(default=None, metadata={"help": "earlier tasks regularized per step, none = all"})
    target_hidden: tuple[int, ...] = (400, 400)
    hnet_hidden: tuple[int, ...] = (10, 10)
    hnet_activation: str = "relu"
    emb_dim: int = field(default=96, metadata={"help": "task embedding size"})
    chunk_size: int = 42000
    chunk_dim: int = field(default=96, metadata={"help": "chunk embedding size"})
    multi_head: bool = field(default=True, metadata={"help": "one output head per task (target 784-400-400-10, as released); off: one shared 2-unit head"})
    hnet_init: str = field(default="xavier", metadata={"help": "'xavier': Xavier-uniform weights, zero biases (as released); 'target': the core's default"})
    sweeps: bool = field(default=True, metadata={"help": "batches in shuffled sweeps through each task's data (as released); off: drawn with replacement"})
    lookahead: bool = field(default=True, metadata={"help": "regularize H at phi + the step Adam would take (paper eq. 2)"})
    baseline: bool = field(default=True, metadata={"help": "also train the target in sequence without regularizer"})

    def __post_init__(self) -> None:
        check_chunked_config("split-mnist", self)
        in_range("split-mnist", "tasks", self.tasks, 1, 5)


@recipe("split-mnist", "5 two-digit MNIST tasks in sequence, chunked hypernetwork + output regularizer, CL1 and CL3 (von Oswald et al. 2020)", Config, figures=continual_figures, build=builders.split_mnist)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    tasks = split_mnist(load_mnist(ctx.data_dir), cfg.tasks)
    sizes = [784, *cfg.target_hidden, 2 * len(tasks) if cfg.multi_head else 2]
    return run_continual(ctx, chunked_spec(cfg, tasks, lambda: make_mlp(sizes, "relu"), paper={"final": 99.79, "cl3": 69.48}))
