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

from torch import nn

from hyperdnn.bodies import ACTIVATIONS, MLP
from hyperdnn.conditioning import TaskEmbedding
from hyperdnn.data.continual_tasks import split_mnist
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
        # lists (from JSON or by hand) count as tuples; anything else fails in positive_ints
        self.target_hidden, self.hnet_hidden = (tuple(v) if isinstance(v, list) else v for v in (self.target_hidden, self.hnet_hidden))
        part = "split-mnist"
        for name in ("steps", "batch_size", "emb_dim", "chunk_size", "chunk_dim"):
            positive(part, name, getattr(self, name))
        in_range(part, "tasks", self.tasks, 1, 5)
        if self.reg_tasks is not None:
            positive(part, "reg_tasks", self.reg_tasks)
        positive(part, "lr", self.lr, float)
        non_negative(part, "beta", self.beta, float)
        positive_ints(part, "target_hidden", self.target_hidden)
        positive_ints(part, "hnet_hidden", self.hnet_hidden)
        one_of(part, "hnet_activation", self.hnet_activation, ACTIVATIONS)
        one_of(part, "hnet_init", self.hnet_init, ("xavier", "target"))
        for name in ("multi_head", "sweeps", "lookahead", "baseline"):
            boolean(part, name, getattr(self, name))


@recipe("split-mnist", "5 two-digit MNIST tasks in sequence, chunked hypernetwork + output regularizer, CL1 and CL3 (von Oswald et al. 2020)", Config)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    tasks = split_mnist(load_mnist(ctx.data_dir), cfg.tasks)
    sizes = [784, *cfg.target_hidden, 2 * len(tasks) if cfg.multi_head else 2]

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
        cl3=True,
        paper={"final": 99.79, "cl3": 69.48},
    )
    return run_continual(ctx, spec)
