"""Recipe ``split-mnist``: 5 two-digit MNIST tasks in sequence (von Oswald et al. 2020, Table 2).

Defaults from the released configuration (chrhenning/hypercl,
``mnist/train_args_default.py``, ``mnist/train_utils.py``): target MLP
784-400-400-10 (ReLU) with one 2-unit output head per task, all of it made by
the hypernetwork; chunked hypernetwork MLP 10-10 (ReLU), chunk size 42000, task
and chunk embeddings 96, Xavier-uniform weights and zero biases, embeddings
N(0, 1); beta 0.01; 2000 steps per task, batch 128 in shuffled sweeps through
each task's training set, Adam lr 1e-3.
Paper: CL1 99.79 %, CL3 (HNET+ENT) 69.48 %.

Presets (``--preset NAME``) give the two configurations with which the authors'
later repository (chrhenning/posterior_replay_cl, ``probabilistic/prob_mnist/README.rst``,
"Deterministic Task-specific Solutions", "the setup of von Oswald et al.") reports
HNET+ENT on split-MNIST (see :data:`PRESETS`): ``henning2021-small-mlp`` (target
784-100-100-10; 99.72 % CL1, 63.41 % CL3 there) and ``henning2021-large-mlp``
(target 784-400-400-10, sigmoid hypernetwork 100-100, chunks of 4500; 99.67 % CL1,
74.43 % CL3 there). Henning, Cervera, D'Angelo, von Oswald, Traber, Ehret,
Kobayashi, Grewe, Sacramento, "Posterior Meta-Replay for Continual Learning",
NeurIPS 2021.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hyperdnn.data.continual_tasks import split_mnist
from hyperdnn.errors import ConfigError
from hyperdnn.data.mnist import load_mnist
from hyperdnn.experiments.recipes import boolean, in_range, non_negative, one_of, recipe
from hyperdnn.experiments import builders
from hyperdnn.experiments.figures import continual_figures
from hyperdnn.experiments.recipes._continual import check_chunked_config, chunked_spec, run_continual
from hyperdnn.experiments.recipes.toy_regression import make_mlp
from hyperdnn.experiments.runs import RunContext


# What both posterior_replay_cl runs share (``train_split_bbb.py`` with ``--kl_scale=0
# --kl_schedule=0 --regularizer=mse --train_sample_size=1 --mean_only --cl_scenario=3
# --split_head_cl3 --n_iter=5000 --use_adam --momentum=-1``; ``train_bbb.py`` ``train``:
# NLL times the task's training-set size, ``hreg.calc_fix_target_reg`` without a
# look-ahead and with ``inds_of_out_heads``, one Adam over all hypernetwork parameters
# per task). Defaults of ``probabilistic/prob_mnist/train_args.py`` (batch 128,
# ``cond_emb_size`` and ``chunk_emb_size`` 32, main net 400-400 ReLU) and
# ``utils/cli_args.py`` (Xavier init, zero biases, embeddings N(0, 1)).
_HENNING2021 = {"steps": 5000, "lookahead": False, "nll_scale": "train-set", "reg_own_head": True, "fix_earlier_embeddings": False, "emb_dim": 32, "chunk_dim": 32}

PRESETS: dict[str, dict[str, Any]] = {
    # README.rst, "small MLP": --chmlp_chunk_size=8000 --beta=10.0 --batch_size=32
    # --lr=0.0005 --mlp_arch="100,100" --net_act=relu --hmlp_arch="10,10,10,10"
    # --cond_emb_size=32 --chunk_emb_size="32" --std_normal_temb=1.0 --std_normal_emb=0.1
    "henning2021-small-mlp": {**_HENNING2021, "target_hidden": (100, 100), "hnet_hidden": (10, 10, 10, 10), "hnet_activation": "relu", "chunk_size": 8000, "chunk_init_std": 0.1, "beta": 10.0, "batch_size": 32, "lr": 5e-4},
    # README.rst, "large MLP": --chmlp_chunk_size=4500 --beta=2.0 --lr=0.0001
    # --hmlp_arch=100,100 --chunk_emb_size=32 --hnet_net_act=sigmoid (main net 400,400 by default)
    "henning2021-large-mlp": {**_HENNING2021, "target_hidden": (400, 400), "hnet_hidden": (100, 100), "hnet_activation": "sigmoid", "chunk_size": 4500, "beta": 2.0, "lr": 1e-4},
}


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
    chunk_init_std: float = field(default=1.0, metadata={"help": "std of the initial chunk embeddings"})
    nll_scale: str = field(default="mean", metadata={"help": "'mean': batch-mean cross-entropy (as released); 'train-set': times the task's training-set size (posterior_replay_cl)", "choices": ["mean", "train-set"]})
    reg_own_head: bool = field(default=False, metadata={"help": "each earlier task's regularizer term leaves out the other tasks' output heads (posterior_replay_cl)"})
    fix_earlier_embeddings: bool = field(default=True, metadata={"help": "keep earlier task embeddings fixed (as released); off: the regularizer moves them (posterior_replay_cl)"})
    preset: str = field(default="", metadata={"help": "a named configuration (henning2021-small-mlp, henning2021-large-mlp): it sets the fields still at the released defaults; options given with other values are kept", "choices": ["", *PRESETS]})

    def __post_init__(self) -> None:
        part = "split-mnist"
        one_of(part, "preset", self.preset, ("", *PRESETS))
        if self.preset:
            defaults = {f.name: f.default for f in fields(Config)}
            for name, value in PRESETS[self.preset].items():
                if getattr(self, name) == defaults[name]:  # left at the released default: the preset's value
                    setattr(self, name, value)
        check_chunked_config(part, self)
        in_range(part, "tasks", self.tasks, 1, 5)
        non_negative(part, "chunk_init_std", self.chunk_init_std, float)
        one_of(part, "nll_scale", self.nll_scale, ("mean", "train-set"))
        boolean(part, "reg_own_head", self.reg_own_head)
        boolean(part, "fix_earlier_embeddings", self.fix_earlier_embeddings)
        if self.reg_own_head and not self.multi_head:
            raise ConfigError(f"{part}: reg_own_head needs a head per task (got --no-multi-head); pass --multi-head or --no-reg-own-head")


@recipe("split-mnist", "5 two-digit MNIST tasks in sequence, chunked hypernetwork + output regularizer, CL1 and CL3 (von Oswald et al. 2020)", Config, figures=continual_figures, build=builders.split_mnist)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    tasks = split_mnist(load_mnist(ctx.data_dir), cfg.tasks)
    sizes = [784, *cfg.target_hidden, 2 * len(tasks) if cfg.multi_head else 2]
    return run_continual(ctx, chunked_spec(cfg, tasks, lambda: make_mlp(sizes, "relu"), paper={"final": 99.79, "cl3": 69.48}))
