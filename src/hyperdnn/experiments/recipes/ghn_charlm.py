"""Recipe ``ghn-charlm``: a graph hypernetwork predicts tiny GPT-2-style character LMs it never saw.

The language-model counterpart of ``ghn-mnist`` (LoGAH's GPT-2 experiment at CPU size):
two GHNs (LoGAH's low-rank decoder, GHN-2's tiled decoder) are trained by meta-batching
on tiny GPT-2-style transformers (1-2 blocks, width 32-48, 1/2/4 heads) over random
windows of the King James Bible (``<data-dir>/kjv/kjv.txt.gz``, or ``--corpus``).
Held-out transformers are deeper (3-4 blocks) and wider (64-96). Reported on them:
(a) validation bits per character of the predicted parameters without training,
against PyTorch's default init; (b) fine-tuning curves (Adam) from each start, figure;
(c) decoder sizes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.data.mnist import data_root
from hyperdnn.data.text import load_char_corpus
from hyperdnn.errors import ConfigError, DataError
from hyperdnn.experiments.recipes import non_negative, one_of, positive, positive_ints, recipe, some_of
from hyperdnn.experiments.runs import RunContext
from hyperdnn.methods.graph import (CharGPTArch, CharGPTSpace, GHNTraining, GraphHyperNetwork, LoGAHDecoder,
                                    LowRankDecoder, TiledDecoder, predict_into)
from hyperdnn.methods.graph.ghn import WEIGHT_NORMS

DECODERS = ("lowrank", "tiled")


@dataclass
class Config:
    """Configuration of ``ghn-charlm``."""

    corpus: str = field(default="", metadata={"help": "text file (plain or gzip); empty: <data-dir>/kjv/kjv.txt.gz"})
    steps: int = field(default=600, metadata={"help": "meta-batch steps of each GHN"})
    meta_batch: int = field(default=4, metadata={"help": "architectures per step"})
    batch_size: int = field(default=32, metadata={"help": "text windows per step, shared by the meta-batch"})
    context: int = field(default=64, metadata={"help": "characters per window"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the GHNs"})
    dim: int = field(default=32, metadata={"help": "node embedding width of the GHN"})
    s_max: int = field(default=50, metadata={"help": "longest shortest path joined by a virtual edge (GHN-2: 50)"})
    rank: int = field(default=16, metadata={"help": "rank of the low-rank decoder's A B^T"})
    block: int = field(default=16, metadata={"help": "rows of A and B per block of the low-rank decoder"})
    hidden: int = field(default=64, metadata={"help": "hidden width of both decoders' MLPs"})
    lowrank_form: str = field(default="blocks", metadata={
        "help": "low-rank decoder: blocks (LowRankDecoder, block codes) or logah (LoGAHDecoder, the authors' form)"})
    logah_rows: int = field(default=512, metadata={"help": "max_rows (LoGAH's max_ck_lora) of --lowrank-form logah"})
    lowrank_norm: str = field(default="std", metadata={
        "help": "scaling of the low-rank decoder's weights: fan_in (GHN-2) or std (LoGAH's GPT-2 code: std init_std)"})
    init_std: float = field(default=0.02, metadata={"help": "weight std of --lowrank-norm std (LoGAH: 0.02)"})
    tiled_block: tuple[int, ...] = field(default=(64, 64, 1, 1), metadata={"help": "GHN-2 decoder's block (c_out, c_in, k, k)"})
    decoders: tuple[str, ...] = field(default=DECODERS, metadata={"help": "which of lowrank,tiled to train"})
    held_out: int = field(default=3, metadata={"help": "held-out transformers (deeper and wider than training ones)"})
    held_layers: tuple[int, ...] = field(default=(3, 4), metadata={"help": "blocks of the held-out transformers"})
    held_widths: tuple[int, ...] = field(default=(64, 96), metadata={"help": "widths of the held-out transformers"})
    finetune_steps: int = field(default=200, metadata={"help": "Adam steps of fine-tuning on each held-out transformer"})
    finetune_lr: float = field(default=1e-3, metadata={"help": "learning rate of fine-tuning"})
    eval_every: int = field(default=25, metadata={"help": "fine-tuning steps between two evaluations of the curve"})
    eval_windows: int = field(default=64, metadata={"help": "validation windows in each bits-per-character evaluation"})

    def __post_init__(self) -> None:
        part = "ghn-charlm"
        for name in ("steps", "meta_batch", "batch_size", "context", "dim", "s_max", "rank", "block", "hidden",
                     "held_out", "eval_every", "eval_windows"):
            positive(part, name, getattr(self, name))
        non_negative(part, "finetune_steps", self.finetune_steps)
        positive(part, "lr", self.lr, float)
        positive(part, "finetune_lr", self.finetune_lr, float)
        positive(part, "init_std", self.init_std, float)
        one_of(part, "lowrank_norm", self.lowrank_norm, WEIGHT_NORMS)
        one_of(part, "lowrank_form", self.lowrank_form, ("blocks", "logah"))
        positive(part, "logah_rows", self.logah_rows)
        for name in ("tiled_block", "held_layers", "held_widths"):
            positive_ints(part, name, getattr(self, name))
        if len(self.tiled_block) != 4:
            raise ConfigError(f"ghn-charlm: tiled_block must have 4 sizes (c_out, c_in, k, k) (got {self.tiled_block})")
        self.decoders = some_of(part, "decoders", self.decoders, DECODERS)
        train = CharGPTSpace(vocab=2)
        if min(self.held_layers) <= max(train.layers) or min(self.held_widths) <= max(train.widths):
            raise ConfigError(f"ghn-charlm: held-out layers {self.held_layers} and widths {self.held_widths} must exceed "
                              f"the training space's (layers {train.layers}, widths {train.widths})")


def _corpus_path(cfg: Config, ctx: RunContext) -> Path:
    if cfg.corpus:
        return Path(cfg.corpus).expanduser()
    root, source = data_root(ctx.data_dir)  # no --data-dir: $HYPERDNN_DATA, else the cache, as every recipe
    for p in (root / "kjv" / "kjv.txt.gz", root / "kjv.txt.gz", root / "kjv" / "kjv.txt"):
        if p.is_file():
            return p
    raise DataError(f"ghn-charlm: no corpus given and no kjv/kjv.txt.gz under {root} (from {source}); "
                    "pass --corpus PATH (any UTF-8 text, plain or gzip) or --data-dir DIR holding kjv/kjv.txt.gz")


def _windows(stream: Tensor, n: int, context: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` random windows: inputs and next characters, ``(n, context)`` each."""
    start = torch.randint(len(stream) - context - 1, (n,), generator=gen)
    idx = start.unsqueeze(1) + torch.arange(context + 1)  # (n, context + 1)
    w = stream[idx]
    return w[:, :-1], w[:, 1:]


def lm_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy (nats) of ``logits (B, T, V)`` against ``y (B, T)``."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


@torch.no_grad()
def bpc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    was = model.training
    model.eval()
    out = float(lm_loss(model(x), y)) / math.log(2)
    model.train(was)
    return out


def _build(arch: CharGPTArch, seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return arch.build()


def _plot(ctx: RunContext, cfg: Config, steps: list[int], curves: dict[str, list[list[float]]], sizes: dict[str, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    colors = {"lowrank": "C0", "tiled": "C3", "default init": "k"}
    labels = {"lowrank": "LoGAH low-rank prediction", "tiled": "GHN-2 tiled prediction"}
    for name, runs in curves.items():
        t = torch.tensor(runs)
        ax.plot(steps, t.mean(0), color=colors[name], label=labels.get(name, name), linewidth=1.5)
        ax.fill_between(steps, t.min(0).values, t.max(0).values, color=colors[name], alpha=0.12)
    ax.set_xlabel("fine-tuning steps (Adam, %d windows of %d characters)" % (cfg.batch_size, cfg.context))
    ax.set_ylabel("validation bits per character, mean of %d held-out" % cfg.held_out)
    ax.set_title("held-out transformers (deeper and wider than training); band: min-max", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    names = list(sizes)
    bx.bar(range(len(names)), [sizes[n] for n in names], color=[colors.get(n.split()[0], "C2") for n in names])
    bx.set_yscale("log")
    bx.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    bx.set_ylabel("decoder parameters (log scale)")
    fig.tight_layout()
    ctx.save_figure(fig, "finetune_curves")


@recipe("ghn-charlm", "graph hypernetworks (GHN-2 tiled vs LoGAH low-rank decoder) predict tiny GPT-2-style char LMs of unseen, deeper and wider shapes", Config)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    corpus = load_char_corpus(_corpus_path(cfg, ctx))
    train, valid = corpus.train, corpus.valid
    if min(len(train), len(valid)) <= cfg.context + 1:
        raise DataError(f"ghn-charlm: the corpus splits ({len(train)}, {len(valid)} characters) are shorter than "
                        f"context + 1 = {cfg.context + 1}; use a longer text or a smaller --context")
    space = CharGPTSpace(vocab=corpus.vocab_size, context=cfg.context)
    ghns, opts, gens = {}, {}, {}
    for d in cfg.decoders:
        torch.manual_seed(ctx.seed + 17)
        if d == "tiled":
            dec = TiledDecoder(cfg.dim, block=tuple(cfg.tiled_block), hidden=cfg.hidden)
        elif cfg.lowrank_form == "logah":
            dec = LoGAHDecoder(cfg.dim, rank=cfg.rank, max_rows=cfg.logah_rows)
        else:
            dec = LowRankDecoder(cfg.dim, rank=cfg.rank, block=cfg.block, hidden=cfg.hidden)
        norm = dict(weight_norm=cfg.lowrank_norm, init_std=cfg.init_std) if d == "lowrank" else {}
        ghns[d] = GraphHyperNetwork(dec, dim=cfg.dim, s_max=cfg.s_max, **norm)
        opts[d] = torch.optim.Adam(ghns[d].parameters(), lr=cfg.lr)
        gens[d] = torch.Generator().manual_seed(ctx.seed + 1)  # the same architectures and windows for both
    ctx.track(**{f"ghn_{d}": m for d, m in ghns.items()}, **{f"opt_{d}": o for d, o in opts.items()},
              **{f"gen_{d}": g for d, g in gens.items()})
    state = ctx.restore({"job": 0, "step": 0, "seconds": {}})
    ctx.progress(total=len(ghns) * cfg.steps)
    methods = {d: GHNTraining(ghns[d], opts[d], loss_fn=lm_loss) for d in ghns}
    jobs = list(ghns)
    while state["job"] < len(jobs):
        d = jobs[state["job"]]
        start = time.perf_counter()
        while state["step"] < cfg.steps:
            models = [space.sample(gens[d]).build() for _ in range(cfg.meta_batch)]
            x, y = _windows(train, cfg.batch_size, cfg.context, gens[d])
            out = methods[d].step(models, x, y)
            state["step"] += 1
            ctx.step_done(loss=out.loss, bpc=out.loss / math.log(2), decoder=d)
        state["seconds"][d] = state["seconds"].get(d, 0.0) + time.perf_counter() - start
        state["job"] += 1
        state["step"] = 0
    ctx.close_progress()

    held_space = CharGPTSpace(vocab=corpus.vocab_size, layers=tuple(cfg.held_layers), widths=tuple(cfg.held_widths),
                              context=cfg.context)
    gen_h = torch.Generator().manual_seed(ctx.seed + 99)
    held = [held_space.sample(gen_h) for _ in range(cfg.held_out)]
    xv, yv = _windows(valid, cfg.eval_windows, cfg.context, torch.Generator().manual_seed(ctx.seed + 7))
    starts = ["default init", *ghns]
    curves: dict[str, list[list[float]]] = {s: [] for s in starts}
    for i, arch in enumerate(held):
        for s in starts:
            model = _build(arch, ctx.seed + 1000 + i)
            if s != "default init":
                ghns[s].eval()
                predict_into(ghns[s], model)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.finetune_lr)
            gen = torch.Generator().manual_seed(ctx.seed * 7919 + i)  # the same windows for every start
            curve = [bpc(model, xv, yv)]
            for step in range(cfg.finetune_steps):
                x, y = _windows(train, cfg.batch_size, cfg.context, gen)
                loss = lm_loss(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.finetune_steps:
                    curve.append(bpc(model, xv, yv))
            curves[s].append(curve)
    points = [0] + [s for s in range(1, cfg.finetune_steps + 1) if s % cfg.eval_every == 0 or s == cfg.finetune_steps]
    dec_sizes = {d: sum(p.numel() for p in ghns[d].decoder.parameters()) for d in ghns}
    held_params = [sum(p.numel() for p in a.build().parameters()) for a in held]
    _plot(ctx, cfg, points, curves, {f"{d} decoder": n for d, n in dec_sizes.items()})

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    ctx.table(
        f"(a, b) validation bits per character on the held-out transformers after k fine-tuning steps (k=0: predicted, no training)",
        ["start", *[f"k={k}" for k in points]],
        [[s, *[mean([c[j] for c in curves[s]]) for j in range(len(points))]] for s in starts],
        note=f"{cfg.eval_windows} validation windows of {cfg.context} characters; held-out: "
             + ", ".join(f"{a} ({n:,} params)" for a, n in zip(held, held_params)),
    )
    ctx.table("(c) decoder sizes", ["decoder", "parameters"], [[d, n] for d, n in dec_sizes.items()])
    return {
        "held_out": [str(a) for a in held],
        "finetune_points": points,
        "finetune_curves": curves,
        "decoder_params": dec_sizes,
        "held_out_params": held_params,
        "train_seconds": state["seconds"],
        "threads": ctx.threads,
        "vocab": corpus.vocab_size,
    }
