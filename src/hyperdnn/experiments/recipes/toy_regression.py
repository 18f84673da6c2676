"""Recipe ``toy-regression``: three 1D polynomial regression tasks learned in sequence (von Oswald et al. 2020, Fig. 2).

Defaults from the released configuration (hypnettorch ``toy_example``): target
MLP 1-10-10-1 (sigmoid), hypernetwork MLP 10-10 (sigmoid) making all target
weights at once, task embedding 2, beta 0.005, 4001 steps per task, batch 32,
Adam lr 1e-2. Published final test MSE per task: 0.0042, 0.0024, 0.0061.
Needs no data file (the README quickstart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hyperdnn.bodies import ACTIVATIONS, MLP
from hyperdnn.conditioning import TaskEmbedding
from hyperdnn.data.continual_tasks import Task, toy_regression
from hyperdnn.errors import ConfigError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.outputs import GenerateOnce
from hyperdnn.experiments.recipes import boolean, in_range, non_negative, one_of, positive, positive_ints, recipe
from hyperdnn.experiments import builders
from hyperdnn.experiments.figures import continual_figures
from hyperdnn.experiments.recipes._continual import ContinualSpec, run_continual
from hyperdnn.experiments.runs import RunContext

PAPER_MSE = (0.0042, 0.0024, 0.0061)

# the target's nonlinearities (make_mlp); the hypernetwork's are hyperdnn.bodies.ACTIVATIONS
TARGET_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


@dataclass
class Config:
    """Configuration of ``toy-regression`` (defaults: the paper's)."""

    steps: int = field(default=4001, metadata={"help": "optimizer steps per task"})
    batch_size: int = 32
    lr: float = 1e-2
    beta: float = field(default=0.005, metadata={"help": "output-regularizer strength"})
    target_hidden: tuple[int, ...] = (10, 10)
    target_activation: str = "sigmoid"
    hnet_hidden: tuple[int, ...] = (10, 10)
    hnet_activation: str = "sigmoid"
    emb_dim: int = field(default=2, metadata={"help": "task embedding size"})
    num_train: int = 100
    num_test: int = 50
    noise_std: float = 0.05
    data_seed: int = 42
    lookahead: bool = field(default=True, metadata={"help": "regularize H at phi + the step Adam would take (paper eq. 2)"})
    baseline: bool = field(default=True, metadata={"help": "also train the target in sequence without regularizer"})

    def __post_init__(self) -> None:
        # lists (from JSON or by hand) count as tuples; anything else fails in positive_ints
        self.target_hidden, self.hnet_hidden = (tuple(v) if isinstance(v, list) else v for v in (self.target_hidden, self.hnet_hidden))
        part = "toy-regression"
        for name in ("steps", "batch_size", "emb_dim", "num_train", "num_test"):
            positive(part, name, getattr(self, name))
        positive(part, "lr", self.lr, float)
        non_negative(part, "beta", self.beta, float)
        non_negative(part, "noise_std", self.noise_std, float)
        positive_ints(part, "target_hidden", self.target_hidden)
        positive_ints(part, "hnet_hidden", self.hnet_hidden)
        one_of(part, "target_activation", self.target_activation, TARGET_ACTIVATIONS)
        one_of(part, "hnet_activation", self.hnet_activation, ACTIVATIONS)
        in_range(part, "data_seed", self.data_seed, 0, 2**32 - 1)  # numpy's RandomState range
        for name in ("lookahead", "baseline"):
            boolean(part, name, getattr(self, name))


def make_mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """An MLP with ``activation`` between layers and a linear last layer.

    Args:
        sizes: layer widths, input first, e.g. ``[1, 10, 10, 1]``.
        activation: one of ``TARGET_ACTIVATIONS`` (sigmoid, relu, elu, tanh).

    Raises:
        ConfigError: unknown activation.
    """
    if activation not in TARGET_ACTIVATIONS:
        raise ConfigError(f"make_mlp: activation must be one of {', '.join(map(repr, TARGET_ACTIVATIONS))} (got {activation!r})")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(TARGET_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _plot(ctx: RunContext, model: nn.Module, base: nn.Module, tasks: list[Task]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    xs = torch.linspace(-4.5, 4.5, 300, device=ctx.device).unsqueeze(1)
    with torch.no_grad():
        for k, t in enumerate(tasks):
            x, y = t.train_set()
            for ax in axes:
                ax.scatter(x.cpu().squeeze(1), y.cpu().squeeze(1), s=4, color=f"C{k}", alpha=0.4)
            axes[0].plot(xs.cpu().squeeze(1), model(xs, task=k).cpu().squeeze(1), color=f"C{k}", label=f"task {k + 1}: H(e_{k + 1})")
        axes[1].plot(xs.cpu().squeeze(1), base(xs).cpu().squeeze(1), color="k", label="after the last task")
    axes[0].set_title("hypernetwork + regularizer (task id given)")
    axes[1].set_title("target trained in sequence, no regularizer")
    axes[0].set_ylim(-3, 3)
    for ax in axes:
        ax.legend(fontsize=7)
        ax.set_xlabel("x")
    ctx.save_figure(fig, "predictions")


@recipe("toy-regression", "3 polynomial 1D regression tasks in sequence, hypernetwork + output regularizer (von Oswald et al. 2020); no data needed, under a minute", Config, figures=continual_figures, build=builders.toy_regression)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    tasks = toy_regression(cfg.num_train, cfg.num_test, cfg.noise_std, cfg.data_seed)
    sizes = [1, *cfg.target_hidden, 1]
    spec = ContinualSpec(
        tasks=tasks,
        make_target=lambda: make_mlp(sizes, cfg.target_activation),
        make_model=lambda target: HyperDNN(target, inputs=TaskEmbedding(len(tasks), cfg.emb_dim), outputs=GenerateOnce(), body=MLP(cfg.hnet_hidden, cfg.hnet_activation)),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        beta=cfg.beta,
        lookahead=cfg.lookahead,
        baseline=cfg.baseline,
        cl3=False,
        paper={"final": sum(PAPER_MSE) / 3},
        plot=_plot,
    )
    results = run_continual(ctx, spec)
    results["paper_mse_per_task"] = list(PAPER_MSE)
    ctx.table("Final test MSE per task vs the paper", ["task", "hypernetwork", "baseline (no regularizer)", "paper (hypernetwork)"], [[f"{k + 1}: {t.name}", results["hnet"]["final"][k], results["baseline"]["final"][k] if "baseline" in results else "", PAPER_MSE[k]] for k, t in enumerate(tasks)])
    return results
