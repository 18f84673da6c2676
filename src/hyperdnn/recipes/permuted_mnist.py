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

from torch import nn

from hyperdnn.bodies import ACTIVATIONS, MLP
from hyperdnn.conditioning import TaskEmbedding
from hyperdnn.data.continual_tasks import permuted_mnist
from hyperdnn.data.mnist import load_mnist
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.continual import xavier_init_
from hyperdnn.outputs import ChunkWise
from hyperdnn.recipes import boolean, in_range, non_negative, one_of, positive, positive_ints, recipe
from hyperdnn.recipes._continual import ContinualSpec, run_continual
from hyperdnn.recipes.toy_regression import make_mlp
from hyperdnn.runs import RunContext


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
        # lists (from JSON or by hand) count as tuples; anything else fails in positive_ints
        self.target_hidden, self.hnet_hidden = (tuple(v) if isinstance(v, list) else v for v in (self.target_hidden, self.hnet_hidden))
        part = "permuted-mnist"
        for name in ("steps", "tasks", "batch_size", "emb_dim", "chunk_size", "chunk_dim"):
            positive(part, name, getattr(self, name))
        if self.reg_tasks is not None:
            positive(part, "reg_tasks", self.reg_tasks)
        positive(part, "lr", self.lr, float)
        non_negative(part, "beta", self.beta, float)
        non_negative(part, "padding", self.padding)
        positive_ints(part, "target_hidden", self.target_hidden)
        positive_ints(part, "hnet_hidden", self.hnet_hidden)
        one_of(part, "hnet_activation", self.hnet_activation, ACTIVATIONS)
        in_range(part, "data_seed", self.data_seed, 0, 2**32 - 1)  # numpy's RandomState range
        one_of(part, "hnet_init", self.hnet_init, ("xavier", "target"))
        for name in ("multi_head", "sweeps", "cl3", "lookahead", "baseline"):
            boolean(part, name, getattr(self, name))


@recipe("permuted-mnist", "10 permuted-MNIST tasks in sequence, chunked hypernetwork smaller than its target (von Oswald et al. 2020)", Config)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    tasks = permuted_mnist(load_mnist(ctx.data_dir), cfg.tasks, cfg.padding, cfg.data_seed)
    sizes = [tasks[0].input_dim, *cfg.target_hidden, 10 * len(tasks) if cfg.multi_head else 10]

    def make_model(target: nn.Module) -> HyperDNN:
        model = HyperDNN(target, inputs=TaskEmbedding(len(tasks), cfg.emb_dim), outputs=ChunkWise(cfg.chunk_size, cfg.chunk_dim), body=MLP(cfg.hnet_hidden, cfg.hnet_activation))
        if cfg.hnet_init == "xavier":
            xavier_init_(model)
        return model

    spec = ContinualSpec(
        tasks=tasks,
        make_target=lambda: make_mlp(sizes, "relu"),
        make_model=make_model,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        beta=cfg.beta,
        reg_tasks=cfg.reg_tasks,
        lookahead=cfg.lookahead,
        baseline=cfg.baseline,
        multi_head=cfg.multi_head,
        sweeps=cfg.sweeps,
        cl3=cfg.cl3,
        paper={"final": 97.57, "cl3": 91.75},
    )
    return run_continual(ctx, spec)
