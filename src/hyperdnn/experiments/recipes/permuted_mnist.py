"""Recipe ``permuted-mnist``: 10 pixel-permuted MNIST tasks in sequence (von Oswald et al. 2020, Table 2).

Defaults from the released configuration (chrhenning/hypercl,
``mnist/train_args_default.py`` ``_set_default_permuted``, ``mnist/train_utils.py``):
images padded to 32x32, task 1 unpermuted; target MLP 1024-1000-1000-100 (ReLU)
with one 10-unit output head per task, all of it made by the hypernetwork;
chunked hypernetwork MLP 25-25 (ELU), chunk size 78000, task embedding 24,
chunk embedding 8, Xavier-uniform weights and zero biases; beta 0.1; 5000 steps
per task, batch 128 in shuffled sweeps through each task's training set, Adam
lr 1e-4. Paper (PermutedMNIST-10):
CL1 97.57 %, CL3 (HNET+ENT) 91.75 %, compression ratio below 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hyperdnn.data.continual_tasks import permuted_mnist
from hyperdnn.data.mnist import load_mnist
from hyperdnn.experiments.recipes import boolean, in_range, non_negative, positive, recipe
from hyperdnn.experiments import builders
from hyperdnn.experiments.figures import continual_figures
from hyperdnn.experiments.recipes._continual import check_chunked_config, chunked_spec, run_continual
from hyperdnn.experiments.recipes.toy_regression import make_mlp
from hyperdnn.experiments.runs import RunContext


@dataclass
class Config:
    """Configuration of ``permuted-mnist`` (defaults: the paper's)."""

    steps: int = field(default=5000, metadata={"help": "optimizer steps per task"})
    tasks: int = field(default=10, metadata={"help": "number of permutations (task 1 unpermuted)"})
    batch_size: int = 128
    lr: float = 1e-4
    beta: float = field(default=0.1, metadata={"help": "output-regularizer strength"})
    reg_tasks: int | None = field(default=None, metadata={"help": "earlier tasks regularized per step, none = all"})
    target_hidden: tuple[int, ...] = (1000, 1000)
    hnet_hidden: tuple[int, ...] = (25, 25)
    hnet_activation: str = "elu"
    emb_dim: int = field(default=24, metadata={"help": "task embedding size"})
    chunk_size: int = 78000
    chunk_dim: int = field(default=8, metadata={"help": "chunk embedding size"})
    padding: int = 2
    data_seed: int = field(default=42, metadata={"help": "seed of the permutations"})
    multi_head: bool = field(default=True, metadata={"help": "one 10-unit output head per task (as released); off: one shared head"})
    hnet_init: str = field(default="xavier", metadata={"help": "'xavier': Xavier-uniform weights, zero biases (as released); 'target': the core's default"})
    sweeps: bool = field(default=True, metadata={"help": "batches in shuffled sweeps through each task's data (as released); off: drawn with replacement"})
    cl3: bool = field(default=True, metadata={"help": "evaluate CL3 (task inferred by entropy) at the end"})
    lookahead: bool = field(default=True, metadata={"help": "regularize H at phi + the step Adam would take (paper eq. 2)"})
    baseline: bool = field(default=True, metadata={"help": "also train the target in sequence without regularizer"})

    def __post_init__(self) -> None:
        part = "permuted-mnist"
        check_chunked_config(part, self)
        positive(part, "tasks", self.tasks)
        non_negative(part, "padding", self.padding)
        in_range(part, "data_seed", self.data_seed, 0, 2**32 - 1)  # numpy's RandomState range
        boolean(part, "cl3", self.cl3)


@recipe("permuted-mnist", "10 permuted-MNIST tasks in sequence, chunked hypernetwork smaller than its target (von Oswald et al. 2020)", Config, figures=continual_figures, build=builders.permuted_mnist)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    tasks = permuted_mnist(load_mnist(ctx.data_dir), cfg.tasks, cfg.padding, cfg.data_seed)
    sizes = [tasks[0].input_dim, *cfg.target_hidden, 10 * len(tasks) if cfg.multi_head else 10]
    return run_continual(ctx, chunked_spec(cfg, tasks, lambda: make_mlp(sizes, "relu"), paper={"final": 97.57, "cl3": 91.75}, cl3=cfg.cl3))
