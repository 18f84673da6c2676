"""Recipe ``any-width-mnist``: one implicit hypernetwork for a LeNet of every width (NeuMeta on MNIST).

The setting of NeuMeta's ``neumeta/config/mnist/LeNet_mnist_8-32.yaml``
(Adamdad/neumeta at 1a2f4a0): the LeNet of ``neumeta/models/lenet.py`` lines
5-32 (conv 3x3 1->w, conv 5x5 w->2w, conv 5x5 2w->4w, each ReLU then 2x2
pooling, linear 4w->10) at hidden widths w in [8, 32] (yaml lines
36-40), a reference network trained at the widest width first (yaml line 13),
the implicit function with 16 frequencies and a 25-number kernel head (yaml
lines 27-32), Adam (yaml: 1e-3, batch 128, lines 18-19), coordinate noise
1.0 (``LeNet_mnist_8-32_coodnoise.yaml`` line 22). Differences, all stated in
docs/methods/any_width.md: the LeNet max-pools (NeuMeta average-pools) and
pools globally before the linear layer (NeuMeta reads the top-left pixel,
``x[:, :, 0, 0]``), and pads with zeros (they replicate): with average pooling
a LeNet reached 71 % after 200 steps where max pooling reached 95 %, and the
budget here is steps, not NeuMeta's 30 epochs; learning rate 3e-3 and batch 64
for the same reason; the coordinate MLP is one shared plain MLP (they use one residual
MLP of width 256 per tensor); training is counted in steps, with a cosine
learning rate for every network so that every network gets the same budget;
no EMA of the hypernetwork's weights.

Training widths are the even ones, test widths all of them (odd widths are
never sampled in training). Baselines at every width: (a) a LeNet of that width
trained from scratch with the same number of steps as the reference, (b) the
reference cut to its first k channels (:func:`keep_first_channels`), (c) the
hypernetwork without the channel permutation and without the coordinate noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn import HyperDNN, Implicit, MLP
from hyperdnn.errors import ConfigError
from hyperdnn.methods.any_width import AnyWidth, keep_first_channels, smooth_permutation, total_variation
from hyperdnn.experiments.recipes import non_negative, positive, positive_ints, recipe, some_of
from hyperdnn.experiments.recipes._classifiers import count_correct, standardized_mnist
from hyperdnn.experiments.runs import RunContext

VARIANTS = ("grid", "grid-no-permutation", "grid-no-noise", "implicit", "no-permutation", "no-noise")
DEFAULT_VARIANTS = ("grid", "grid-no-permutation", "grid-no-noise")


@dataclass
class Config:
    """Configuration of ``any-width-mnist``."""

    min_width: int = field(default=8, metadata={"help": "narrowest hidden width tested (channels of the LeNet's hidden layers)"})
    max_width: int = field(default=32, metadata={"help": "widest hidden width; the reference network is trained at it"})
    net_steps: int = field(default=500, metadata={"help": "optimizer steps of every network trained from scratch (reference included)"})
    hyper_steps: int = field(default=5000, metadata={"help": "optimizer steps of each hypernetwork"})
    batch_size: int = 64
    lr: float = field(default=3e-3, metadata={"help": "peak Adam learning rate of the networks and the Fourier-feature hypernetworks (cosine schedule down to a tenth)"})
    grid_lr: float = field(default=1e-3, metadata={"help": "peak Adam learning rate of the grid-encoded hypernetworks (their parameters are weights, so a plain network's rate)"})
    train_subset: int = field(default=0, metadata={"help": "train on the first N training images only (0: all 60,000)"})
    test_subset: int = field(default=0, metadata={"help": "test on the first N test images only (0: all 10,000)"})
    hidden: tuple[int, ...] = field(default=(64, 64, 64), metadata={"help": "the coordinate MLP's hidden widths"})
    num_freqs: int = field(default=16, metadata={"help": "Fourier frequencies per coordinate of the implicit hypernetwork (NeuMeta: 16)"})
    coord_noise: float = field(default=0.5, metadata={"help": "width of the uniform noise on the index coordinates while training, in index units (0: off; NeuMeta: 1.0, which cost the grid hypernetwork accuracy here)"})
    recon: float = field(default=1.0, metadata={"help": "weight of the reconstruction term against the reference network"})
    reg: float = field(default=1e-4, metadata={"help": "weight of the L2 penalty on the generated weights"})
    kd: float = field(default=0.0, metadata={"help": "weight of the distillation term from the reference network's outputs (0: off)"})
    recon_every_step: bool = field(default=True, metadata={"help": "reconstruct the reference at every step (NeuMeta: only when width 32 is drawn)"})
    standardize_recon: bool = field(default=True, metadata={"help": "reconstruction error relative to each reference tensor's variance (NeuMeta: raw)"})
    variants: tuple[str, ...] = field(default=DEFAULT_VARIANTS, metadata={"help": "which hypernetworks: grid, grid-no-permutation, grid-no-noise (Implicit(encoding='grid'), started from the reference), implicit, no-permutation, no-noise (NeuMeta's Fourier-feature MLP)"})
    scratch: bool = field(default=True, metadata={"help": "train a network from scratch at every test width"})

    def __post_init__(self) -> None:
        part = "any-width-mnist"
        for name in ("min_width", "max_width", "net_steps", "hyper_steps", "batch_size", "num_freqs"):
            positive(part, name, getattr(self, name))
        positive(part, "lr", self.lr, float)
        positive(part, "grid_lr", self.grid_lr, float)
        for name in ("train_subset", "test_subset"):
            non_negative(part, name, getattr(self, name))
        for name in ("coord_noise", "recon", "reg", "kd"):
            non_negative(part, name, getattr(self, name), float)
        positive_ints(part, "hidden", self.hidden)
        if self.min_width > self.max_width:
            raise ConfigError(f"{part}: min_width={self.min_width} must be <= max_width={self.max_width}")
        self.variants = some_of(part, "variants", self.variants, VARIANTS)

    @property
    def train_widths(self) -> list[int]:
        """The even widths of the range (and the widest), the ones sampled in training."""
        return sorted({w for w in range(self.min_width, self.max_width + 1) if w % 2 == 0} | {self.max_width})

    @property
    def test_widths(self) -> list[int]:
        return list(range(self.min_width, self.max_width + 1))


class LeNet(nn.Module):
    """NeuMeta's MNIST LeNet at hidden width ``w`` (max pooling): (B, 1, 28, 28) -> (B, 10)."""

    def __init__(self, w: int = 32) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv_2 = nn.Conv2d(w, 2 * w, 5, padding=2)
        self.conv_3 = nn.Conv2d(2 * w, 4 * w, 5, padding=2)
        self.linear = nn.Linear(4 * w, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv_1(x)), 2)  # (B, w, 14, 14)
        x = F.max_pool2d(F.relu(self.conv_2(x)), 2)  # (B, 2w, 7, 7)
        x = F.relu(self.conv_3(x)).amax((2, 3))  # (B, 4w)
        return self.linear(x)


def _is_grid(variant: str) -> bool:
    return variant.startswith("grid")


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _batch(ctx: RunContext, job: int, step: int, n: int, batch: int, device: torch.device) -> Tensor:
    """The minibatch indices of ``step`` of ``job``: a function of (seed, job, epoch) only, so resumption is exact."""
    per_epoch = n // batch
    epoch, i = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + job * 10_007 + epoch)
    return torch.randperm(n, generator=gen)[i * batch:(i + 1) * batch].to(device)


def _cosine(opt: torch.optim.Optimizer, lr: float, step: int, total: int) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * step / total)))


def _plot(ctx: RunContext, cfg: Config, curves: dict[str, dict[int, float]], sizes: dict[str, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1.2]}, layout="constrained")
    styles = {"scratch": ("k", "o", "-"), "pruned": ("C3", "x", "--"), "pruned (permuted)": ("C1", "x", ":"),
              "implicit": ("C7", "s", "-"), "no-permutation": ("C8", "^", "-"), "no-noise": ("C9", "v", "-"),
              "grid": ("C0", "s", "-"), "grid-no-permutation": ("C2", "^", "-"), "grid-no-noise": ("C4", "v", "-")}
    trained = set(cfg.train_widths)
    for name, curve in curves.items():
        color, marker, line = styles.get(name, ("C5", ".", "-"))
        ws = sorted(curve)
        ax.plot(ws, [curve[w] for w in ws], color=color, linestyle=line, label=name, linewidth=1.2)
        odd = [w for w in ws if w not in trained]
        ax.scatter(odd, [curve[w] for w in odd], color=color, marker=marker, s=18, facecolors="none")
    ax.set_xlabel("hidden width w (hollow markers: widths never sampled in training)")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_ylim(max(0.0, min(min(c.values()) for c in curves.values()) - 2), 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    names = list(sizes)
    colors = {"grid hypernetwork": "C0", "Fourier-MLP hypernetwork": "C7", "widest network": "C3"}
    bx.barh(range(len(names)), [sizes[n] / 1e6 for n in names], color=[colors.get(n, "k") for n in names])
    bx.set_yticks(range(len(names)), [n.replace(" hypernetwork", "\nhypernetwork") for n in names], fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("parameters (millions)")
    bx.set_title("what is stored", fontsize=9)
    ctx.save_figure(fig, "accuracy_vs_width")


@recipe("any-width-mnist", "one implicit hypernetwork (NeuMeta) makes a MNIST LeNet of every width 8..32, vs nets trained per width and pruning", Config)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    (xtr, ytr), (xte, yte) = standardized_mnist(ctx, "any-width-mnist", cfg.train_subset, channel=True)
    if cfg.test_subset:
        xte, yte = xte[: cfg.test_subset], yte[: cfg.test_subset]
    if len(xtr) < cfg.batch_size:
        raise ConfigError(f"any-width-mnist: {len(xtr)} training images are fewer than batch_size={cfg.batch_size}")
    widths, tests = cfg.train_widths, cfg.test_widths
    nets = {"reference": LeNet(cfg.max_width)} | ({f"scratch-{w}": LeNet(w) for w in tests if w != cfg.max_width} if cfg.scratch else {})
    nets = {k: m.to(ctx.device) for k, m in nets.items()}
    hypers = {}
    for v in cfg.variants:
        torch.manual_seed(ctx.seed + 17)  # every variant starts from the same hypernetwork
        noise = 0.0 if v.endswith("no-noise") else cfg.coord_noise
        if _is_grid(v):  # the grids are set to the (permuted) reference when their training starts
            hypers[v] = HyperDNN(LeNet(cfg.max_width), outputs=Implicit(encoding="grid", coord_noise=noise)).to(ctx.device)
        else:
            hypers[v] = HyperDNN(LeNet(cfg.max_width), outputs=Implicit(num_freqs=cfg.num_freqs, coord_noise=noise),
                                 body=MLP(hidden=cfg.hidden)).to(ctx.device)
    peak = {k: cfg.grid_lr if k in hypers and _is_grid(k) else cfg.lr for k in nets | hypers}
    opts = {k: torch.optim.Adam(m.parameters(), lr=peak[k]) for k, m in (nets | hypers).items()}
    gens = {v: torch.Generator().manual_seed(ctx.seed + 1) for v in hypers}
    ctx.track(**{f"model_{k}": m for k, m in (nets | hypers).items()}, **{f"opt_{k}": o for k, o in opts.items()},
              **{f"widths_{v}": g for v, g in gens.items()})
    jobs = list(nets) + list(hypers)
    state = ctx.restore({"job": 0, "step": 0, "seconds": {}})
    ctx.progress(total=len(nets) * cfg.net_steps + len(hypers) * cfg.hyper_steps)
    methods: dict[str, AnyWidth] = {}

    def method_for(v: str) -> AnyWidth:
        if v not in methods:
            methods[v] = AnyWidth(hypers[v], lambda w: LeNet(w).to(ctx.device), widths, nets["reference"],
                                  permute=not v.endswith("no-permutation"), recon=cfg.recon, reg=cfg.reg, kd=cfg.kd,
                                  recon_decay_steps=cfg.hyper_steps, generator=gens[v],
                                  recon_every_step=cfg.recon_every_step, standardize_recon=cfg.standardize_recon)
        return methods[v]

    while state["job"] < len(jobs):
        name = jobs[state["job"]]
        is_hyper = name in hypers
        total = cfg.hyper_steps if is_hyper else cfg.net_steps
        model, opt = (hypers | nets)[name], opts[name]
        model.train()
        if is_hyper:
            method = method_for(name)
            method.steps = state["step"]
            if _is_grid(name) and state["step"] == 0:  # a resumed job keeps its trained grids
                model.hypernetwork.outputs.load_weights(method.reference_weights)
        start = time.perf_counter()
        while state["step"] < total:
            idx = _batch(ctx, state["job"], state["step"], len(xtr), cfg.batch_size, ctx.device)
            _cosine(opt, peak[name], state["step"], total)
            if is_hyper:
                parts = method.step(xtr[idx], ytr[idx], opt)
                loss = parts["loss"]
            else:
                loss_t = F.cross_entropy(model(xtr[idx]), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss_t.backward()
                opt.step()
                loss = float(loss_t.detach())
            state["step"] += 1
            ctx.step_done(loss=loss, model=name)
        state["seconds"][name] = state["seconds"].get(name, 0.0) + time.perf_counter() - start
        state["job"] += 1
        state["step"] = 0
    ctx.close_progress()

    def accuracy(model: nn.Module) -> float:
        return 100.0 * count_correct(model, xte, yte) / len(xte)

    reference = nets["reference"]
    curves: dict[str, dict[int, float]] = {}
    if cfg.scratch:
        curves["scratch"] = {w: accuracy(nets[f"scratch-{w}"] if w != cfg.max_width else reference) for w in tests}
    curves["pruned"] = {w: accuracy(keep_first_channels(reference, LeNet(w).to(ctx.device))) for w in tests}
    permuted = smooth_permutation(reference)
    curves["pruned (permuted)"] = {w: accuracy(keep_first_channels(permuted, LeNet(w).to(ctx.device))) for w in tests}
    for v in hypers:
        curves[v] = method_for(v).evaluate(xte, yte, widths=tests)
    hyper_sizes = {v: numel(h.hypernetwork) for v, h in hypers.items()}
    kinds = {"grid hypernetwork": [n for v, n in hyper_sizes.items() if _is_grid(v)],
             "Fourier-MLP hypernetwork": [n for v, n in hyper_sizes.items() if not _is_grid(v)]}
    replaced = sum(numel(LeNet(w)) for w in tests)
    sizes = {k: max(v) for k, v in kinds.items() if v} | {f"{len(tests)} networks": replaced, "widest network": numel(LeNet(cfg.max_width))}
    _plot(ctx, cfg, curves, sizes)

    names = list(curves)
    ctx.table(
        f"MNIST test accuracy (%) per width ({len(xte)} test images; widths in parentheses never sampled in training)",
        ["width", *names],
        [[str(w) if w in widths else f"({w})", *[curves[n][w] for n in names]] for w in tests],
    )
    gaps = {v: {w: curves[v][w] - curves["scratch"][w] for w in tests} for v in hypers} if cfg.scratch else {}
    ctx.table(
        "Summary",
        ["model", "mean acc %", "min acc %", "worst gap to scratch (points)", "widths within 1 point of scratch"],
        [[n, sum(c.values()) / len(c), min(c.values()), min(gaps[n].values()) if n in gaps else "",
          f"{sum(g >= -1.0 for g in gaps[n].values())}/{len(tests)}" if n in gaps else ""] for n, c in curves.items()],
        note=("; ".join(f"{k}: {n:,} parameters (ratio {n / replaced:.4f} to the networks it replaces)" for k, n in sizes.items()
                        if k.endswith("hypernetwork"))
              + f"; the {len(tests)} networks it replaces: {replaced:,}; the widest network alone: {numel(LeNet(cfg.max_width)):,}. "
              f"Total variation of the reference {total_variation(reference):.2f}, after the permutation "
              f"{total_variation(permuted):.2f}."),
    )
    return {
        "train_widths": widths,
        "test_widths": tests,
        "accuracy": {n: {str(w): a for w, a in c.items()} for n, c in curves.items()},
        "hypernetwork_params": hyper_sizes,
        "replaced_networks_params": replaced,
        "widest_network_params": numel(LeNet(cfg.max_width)),
        "total_variation": {"reference": total_variation(reference), "permuted": total_variation(permuted)},
        "train_seconds": state["seconds"],
        "threads": ctx.threads,
        "paper": "not read: the paper's MNIST numbers are not in the stored excerpts and the repository ships no result file",
    }
