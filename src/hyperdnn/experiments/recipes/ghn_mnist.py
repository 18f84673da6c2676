"""Recipe ``ghn-mnist``: a graph hypernetwork predicts MNIST classifiers it never saw (GHN-2, LoGAH).

Two GHNs with the same gated GNN are trained by GHN-2's meta-batching on
architectures drawn from a small space (MLP / CNN / ResNet, depth 1-4, width
16-48, kernels 3 and 5, no norm / BatchNorm / LayerNorm, skip adds), one with
GHN-2's tiled decoder and one with LoGAH's low-rank decoder, on the same
architectures and minibatches. Held-out architectures are deeper (6 or 8 layers)
and wider (64 or 96) than any training one, so they are unseen by construction.
On them the recipe reports:

(a) test accuracy of the predicted parameters with no training, against PyTorch's
    default init (and the same on architectures drawn from the training space);
(b) fine-tuning curves (Adam, the same minibatches for every start) from the
    low-rank prediction, the tiled prediction and the default init (figure);
(c) the size of each decoder and GHN.

Batch norms use batch statistics in every evaluation (GHN-2's ``bn_train=True``),
for the predicted and the default init alike. GHN-2 trains on CIFAR-10/ImageNet with
DARTS-style cells; this is a CPU-sized analogue, not a reproduction of its numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import non_negative, positive, positive_ints, recipe, some_of
from hyperdnn.experiments.recipes._classifiers import standardized_mnist
from hyperdnn.experiments.runs import RunContext
from hyperdnn.methods.graph import GraphHyperNetwork, LowRankDecoder, TiledDecoder, predict_into
from hyperdnn.methods.graph.meta_batch import GHNTraining, accuracy, batch_stats_copy
from hyperdnn.methods.graph.samplers import MnistArch, MnistArchSpace

DECODERS = ("lowrank", "tiled")


@dataclass
class Config:
    """Configuration of ``ghn-mnist``."""

    steps: int = field(default=1000, metadata={"help": "meta-batch steps of each GHN"})
    meta_batch: int = field(default=4, metadata={"help": "architectures per step (GHN-2: 8)"})
    batch_size: int = field(default=64, metadata={"help": "images per step, shared by the meta-batch"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the GHNs (GHN-2: 1e-3)"})
    dim: int = field(default=32, metadata={"help": "node embedding width of the GHN (GHN-2: 32)"})
    s_max: int = field(default=50, metadata={"help": "longest shortest path joined by a virtual edge (GHN-2: 50)"})
    rank: int = field(default=16, metadata={"help": "rank of the low-rank decoder's A B^T"})
    block: int = field(default=16, metadata={"help": "rows of A and B per block of the low-rank decoder"})
    hidden: int = field(default=64, metadata={"help": "hidden width of both decoders' MLPs"})
    tiled_block: tuple[int, ...] = field(default=(32, 32, 5, 5), metadata={"help": "GHN-2 decoder's block (c_out, c_in, k, k)"})
    decoders: tuple[str, ...] = field(default=DECODERS, metadata={"help": "which of lowrank,tiled to train"})
    held_out: int = field(default=4, metadata={"help": "held-out architectures (deeper and wider than training ones)"})
    held_depths: tuple[int, ...] = field(default=(6, 8), metadata={"help": "depths of the held-out architectures"})
    held_widths: tuple[int, ...] = field(default=(64, 96), metadata={"help": "widths of the held-out architectures"})
    held_kernels: tuple[int, ...] = field(default=(3,), metadata={"help": "conv kernel sizes of the held-out architectures"})
    finetune_steps: int = field(default=100, metadata={"help": "Adam steps of fine-tuning on each held-out architecture"})
    finetune_lr: float = field(default=1e-3, metadata={"help": "learning rate of fine-tuning"})
    finetune_batch: int = field(default=32, metadata={"help": "images per fine-tuning step"})
    eval_every: int = field(default=20, metadata={"help": "fine-tuning steps between two evaluations of the curve"})
    train_subset: int = field(default=0, metadata={"help": "train on the first N training images only (0: all 60,000)"})
    test_subset: int = field(default=1000, metadata={"help": "evaluate on the first N test images (0: all 10,000)"})

    def __post_init__(self) -> None:
        part = "ghn-mnist"
        for name in ("steps", "meta_batch", "batch_size", "dim", "s_max", "rank", "block", "hidden", "held_out",
                     "eval_every", "finetune_batch"):
            positive(part, name, getattr(self, name))
        for name in ("finetune_steps", "train_subset", "test_subset"):
            non_negative(part, name, getattr(self, name))
        positive(part, "lr", self.lr, float)
        positive(part, "finetune_lr", self.finetune_lr, float)
        positive_ints(part, "tiled_block", self.tiled_block)
        positive_ints(part, "held_depths", self.held_depths)
        positive_ints(part, "held_widths", self.held_widths)
        positive_ints(part, "held_kernels", self.held_kernels)
        if len(self.tiled_block) != 4:
            raise ConfigError(f"ghn-mnist: tiled_block must have 4 sizes (c_out, c_in, k, k) (got {self.tiled_block})")
        self.decoders = some_of(part, "decoders", self.decoders, DECODERS)
        train = MnistArchSpace()
        if min(self.held_depths) <= max(train.depths) or min(self.held_widths) <= max(train.widths):
            raise ConfigError(f"ghn-mnist: held-out depths {self.held_depths} and widths {self.held_widths} must exceed "
                              f"the training space's (depths {train.depths}, widths {train.widths})")


def build_ghn(cfg: Config, decoder: str) -> GraphHyperNetwork:
    dec = (LowRankDecoder(cfg.dim, rank=cfg.rank, block=cfg.block, hidden=cfg.hidden) if decoder == "lowrank"
           else TiledDecoder(cfg.dim, block=tuple(cfg.tiled_block), hidden=cfg.hidden))
    return GraphHyperNetwork(dec, dim=cfg.dim, s_max=cfg.s_max)


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _indices(seed: int, job: int, step: int, n: int, batch: int) -> Tensor:
    """Minibatch ``step`` of ``job``: a function of (seed, job, epoch) only, so resumption is exact."""
    per_epoch = n // batch
    epoch, i = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + job * 10_007 + epoch)
    return torch.randperm(n, generator=gen)[i * batch:(i + 1) * batch]


def held_out_archs(cfg: Config, seed: int) -> list[MnistArch]:
    space = MnistArchSpace(depths=tuple(cfg.held_depths), widths=tuple(cfg.held_widths),
                           kernels=tuple(cfg.held_kernels), skip_prob=0.5)
    gen = torch.Generator().manual_seed(seed + 99)
    return [space.sample(gen) for _ in range(cfg.held_out)]


def _build(arch: MnistArch, seed: int, device: torch.device) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return arch.build().to(device)


def _finetune(model: nn.Module, cfg: Config, seed: int, job: int, data: tuple[Tensor, Tensor],
              test: tuple[Tensor, Tensor]) -> list[float]:
    """Adam on ``model`` for ``finetune_steps``; test accuracy at 0, eval_every, ..., finetune_steps."""
    (xtr, ytr), (xte, yte) = data, test
    opt = torch.optim.Adam(model.parameters(), lr=cfg.finetune_lr)
    curve = [accuracy(batch_stats_copy(model), xte, yte)]
    for step in range(cfg.finetune_steps):
        idx = _indices(seed, job, step, len(xtr), cfg.finetune_batch).to(xtr.device)
        loss = F.cross_entropy(model.train()(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.finetune_steps:
            curve.append(accuracy(batch_stats_copy(model), xte, yte))
    return curve


def _plot(ctx: RunContext, cfg: Config, steps: list[int], curves: dict[str, list[list[float]]], sizes: dict[str, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    colors = {"lowrank": "C0", "tiled": "C3", "default init": "k"}
    for name, runs in curves.items():
        t = torch.tensor(runs)  # (archs, points)
        mean = t.mean(0)
        label = {"lowrank": "LoGAH low-rank prediction", "tiled": "GHN-2 tiled prediction"}.get(name, name)
        ax.plot(steps, mean, color=colors[name], label=label, linewidth=1.5)
        ax.fill_between(steps, t.min(0).values, t.max(0).values, color=colors[name], alpha=0.12)
    ax.set_xlabel("fine-tuning steps (Adam, batch %d)" % cfg.finetune_batch)
    ax.set_ylabel("MNIST test accuracy (%%), mean of %d held-out archs" % cfg.held_out)
    ax.set_title("held-out architectures (deeper and wider than training); band: min-max", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    names = list(sizes)
    bx.bar(range(len(names)), [sizes[n] for n in names], color=[colors.get(n.split()[0], "C2") for n in names])
    bx.set_yscale("log")
    bx.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    bx.set_ylabel("decoder parameters (log scale)")
    bx.set_title("decoder size", fontsize=9)
    fig.tight_layout()
    ctx.save_figure(fig, "finetune_curves")


@recipe("ghn-mnist", "graph hypernetworks (GHN-2 tiled vs LoGAH low-rank decoder) predict MNIST classifiers of unseen, deeper and wider architectures", Config)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    (xtr, ytr), (xte, yte) = standardized_mnist(ctx, "ghn-mnist", cfg.train_subset, channel=True)
    if cfg.test_subset:
        xte, yte = xte[: cfg.test_subset], yte[: cfg.test_subset]
    if len(xtr) < cfg.batch_size:
        raise ConfigError(f"ghn-mnist: {len(xtr)} training images are fewer than batch_size={cfg.batch_size}")
    space = MnistArchSpace()
    ghns, opts, gens = {}, {}, {}
    for d in cfg.decoders:
        torch.manual_seed(ctx.seed + 17)  # both GHNs start from the same GNN (the decoders differ)
        ghns[d] = build_ghn(cfg, d).to(ctx.device)
        opts[d] = torch.optim.Adam(ghns[d].parameters(), lr=cfg.lr)
        gens[d] = torch.Generator().manual_seed(ctx.seed + 1)  # the same architectures for both
    ctx.track(**{f"ghn_{d}": m for d, m in ghns.items()}, **{f"opt_{d}": o for d, o in opts.items()},
              **{f"archs_{d}": g for d, g in gens.items()})
    state = ctx.restore({"job": 0, "step": 0, "seconds": {}})
    ctx.progress(total=len(ghns) * cfg.steps)
    methods = {d: GHNTraining(ghns[d], opts[d]) for d in ghns}
    jobs = list(ghns)
    while state["job"] < len(jobs):
        d = jobs[state["job"]]
        methods[d].steps = state["step"]
        start = time.perf_counter()
        while state["step"] < cfg.steps:
            models = [space.sample(gens[d]).build().to(ctx.device) for _ in range(cfg.meta_batch)]
            idx = _indices(ctx.seed, 0, state["step"], len(xtr), cfg.batch_size).to(ctx.device)
            out = methods[d].step(models, xtr[idx], ytr[idx])
            state["step"] += 1
            ctx.step_done(loss=out.loss, decoder=d)
        state["seconds"][d] = state["seconds"].get(d, 0.0) + time.perf_counter() - start
        state["job"] += 1
        state["step"] = 0
    ctx.close_progress()

    # (a) accuracy without training: held-out and in-distribution architectures.
    held = held_out_archs(cfg, ctx.seed)
    gen_in = torch.Generator().manual_seed(ctx.seed + 98)
    seen_space = [space.sample(gen_in) for _ in range(cfg.held_out)]
    step0: dict[str, dict[str, list[float]]] = {}
    for group, archs in (("held-out", held), ("training space", seen_space)):
        models = [_build(a, ctx.seed + 1000 + i, ctx.device) for i, a in enumerate(archs)]
        step0[group] = {"default init": [accuracy(batch_stats_copy(m), xte, yte) for m in models]}
        for d in ghns:
            # One model per call: the same computation as predict_into before fine-tuning (b).
            step0[group][d] = [methods[d].evaluate([m], xte, yte)[0] for m in models]
    # (b) fine-tuning from each start on the held-out architectures, the same minibatches for each start.
    starts = ["default init", *ghns]
    curves: dict[str, list[list[float]]] = {s: [] for s in starts}
    ft_seconds = time.perf_counter()
    for i, arch in enumerate(held):
        for s in starts:
            model = _build(arch, ctx.seed + 1000 + i, ctx.device)
            if s != "default init":
                ghns[s].eval()
                predict_into(ghns[s], model)
            curves[s].append(_finetune(model, cfg, ctx.seed, 1 + i, (xtr, ytr), (xte, yte)))
    ft_seconds = time.perf_counter() - ft_seconds
    points = [0] + [s for s in range(1, cfg.finetune_steps + 1) if s % cfg.eval_every == 0 or s == cfg.finetune_steps]
    # (c) sizes.
    dec_sizes = {d: numel(ghns[d].decoder) for d in ghns}
    ghn_sizes = {d: numel(ghns[d]) for d in ghns}
    held_params = [numel(a.build()) for a in held]
    _plot(ctx, cfg, points, curves, {f"{d} decoder": n for d, n in dec_sizes.items()})

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    ctx.table(
        f"(a) test accuracy (%) with no training ({len(xte)} test images; batch norms on batch statistics)",
        ["architectures", *starts],
        [[g, *[mean(v[s]) for s in starts]] for g, v in step0.items()],
        note="mean over %d architectures each; held-out: depth in %s, width in %s (training: depth 1-4, width 16-48)"
             % (cfg.held_out, cfg.held_depths, cfg.held_widths),
    )
    ctx.table(
        "(a) per held-out architecture: accuracy (%) with no training",
        ["architecture", "parameters", *starts],
        [[str(a), n, *[step0["held-out"][s][i] for s in starts]] for i, (a, n) in enumerate(zip(held, held_params))],
    )
    ctx.table(
        f"(b) fine-tuning on the held-out architectures: mean test accuracy (%) after k steps (Adam lr {cfg.finetune_lr})",
        ["start", *[f"k={k}" for k in points]],
        [[s, *[mean([c[j] for c in curves[s]]) for j in range(len(points))]] for s in starts],
    )
    ctx.table(
        "(c) hypernetwork sizes",
        ["decoder", "decoder parameters", "whole GHN parameters", "largest held-out model"],
        [[d, dec_sizes[d], ghn_sizes[d], max(held_params)] for d in ghns],
        note=(f"low-rank / tiled decoder: {dec_sizes['lowrank'] / dec_sizes['tiled']:.4f}"
              if len(ghns) == 2 else ""),
    )
    return {
        "held_out": [str(a) for a in held],
        "training_space_sample": [str(a) for a in seen_space],
        "step0_accuracy": step0,
        "finetune_points": points,
        "finetune_curves": curves,
        "decoder_params": dec_sizes,
        "ghn_params": ghn_sizes,
        "held_out_params": held_params,
        "train_seconds": state["seconds"],
        "finetune_seconds": ft_seconds,
        "threads": ctx.threads,
    }
