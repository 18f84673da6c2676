"""Recipe ``uncertainty-mnist``: train on MNIST digits 0-4; calibration, OOD detection on 5-9, rotation shift.

Protocols: out-of-distribution detection on the test digits 5-9 for models
trained on 0-4 (HyperGAN, Ratzlaff & Fuxin 2019, section 5); dataset shift as
the test digits 0-4 rotated by 0-180 degrees in 15-degree steps (Ovadia et al.,
"Can you trust your model's uncertainty?", NeurIPS 2019: accuracy and ECE
against the rotation). One run trains, with the same target (MLP
784-100-100-5, ReLU) and the same Adam schedule:

- one network;
- MC dropout (dropout ``p`` before each hidden-to-next layer, ``eval_samples`` masks);
- a deep ensemble of ``ensemble`` (5) networks from independent initialisations;
- noise-conditioned hypernetworks (``Noise`` -> MLP body -> ``ChunkWise``
  chunks, fewer trainable parameters than the 5 networks together) trained with
  :class:`~.hypergan.HyperGAN` (entropy weight ``beta``), with
  :class:`~.svgd.FunctionalSVGD` (repulsion ``alpha``), and without diversity
  term (``beta = 0``, the ablation), evaluated with ``eval_samples`` fixed draws.

Everything is evaluated by :func:`~.evaluate.evaluate` (the same code for all
models). Tables: in-distribution accuracy / NLL / Brier / ECE / mutual
information, OOD AUROC / AUPR per score, and accuracy / ECE under rotation;
figures: ``mnist_shift`` (accuracy and ECE against the angle) and
``mnist_reliability`` (reliability diagrams on the unrotated test digits 0-4).

About 4 minutes on one core at the defaults (all six models, 5 epochs each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.bodies import MLP
from hyperdnn.conditioning import Noise
from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import recipe
from hyperdnn.experiments.runs import RunContext
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.uncertainty import (
    DeepEnsemble,
    FixedMembers,
    FunctionalSVGD,
    HyperGAN,
    MCDropout,
    UncertaintyResults,
    evaluate,
)
from hyperdnn.outputs import ChunkWise

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass
class Config:
    """Configuration of ``uncertainty-mnist``."""

    epochs: int = field(default=5, metadata={"help": "passes over the training digits 0-4 per model"})
    batch_size: int = field(default=128, metadata={"help": "training minibatch size"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    hidden: tuple[int, ...] = field(default=(100, 100), metadata={"help": "hidden widths of the target MLP"})
    noise_dim: int = field(default=16, metadata={"help": "width of the hypernetwork's noise"})
    body: tuple[int, ...] = field(default=(64,), metadata={"help": "hidden widths of the hypernetwork body"})
    chunk_size: int = field(default=4096, metadata={"help": "numbers per generated chunk (ChunkWise)"})
    chunk_dim: int = field(default=16, metadata={"help": "width of each chunk's learned embedding"})
    samples: int = field(default=8, metadata={"help": "draws per training step"})
    eval_samples: int = field(default=16, metadata={"help": "fixed draws / dropout masks at evaluation"})
    beta: float = field(default=0.3, metadata={"help": "HyperGAN entropy weight (its scale grows with the number of generated weights)"})
    alpha: float = field(default=10.0, metadata={"help": "f-SVGD repulsion weight"})
    ensemble: int = field(default=5, metadata={"help": "deep ensemble size"})
    dropout: float = field(default=0.1, metadata={"help": "MC dropout probability"})
    angle_step: int = field(default=15, metadata={"help": "rotation step in degrees (0..180)"})
    train_subset: int = field(default=0, metadata={"help": "use the first N training digits 0-4 (0: all)"})
    test_subset: int = field(default=0, metadata={"help": "use the first N test digits of each split (0: all)"})

    def __post_init__(self) -> None:
        self.hidden, self.body = tuple(self.hidden), tuple(self.body)
        for name in ("epochs", "batch_size", "noise_dim", "chunk_size", "chunk_dim", "samples", "eval_samples",
                     "ensemble", "angle_step"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"uncertainty-mnist: {name} must be a positive int (got {v!r})")
        if self.samples < 2:
            raise ConfigError(f"uncertainty-mnist: samples must be >= 2 for the diversity terms (got {self.samples})")
        if not 0 < self.dropout < 1:
            raise ConfigError(f"uncertainty-mnist: dropout must be in (0, 1) (got {self.dropout!r})")
        if self.train_subset < 0 or self.test_subset < 0:
            raise ConfigError("uncertainty-mnist: train_subset and test_subset must be >= 0")


def rotate(images: Tensor, degrees: float) -> Tensor:
    """Rotates ``(N, 28, 28)`` images in [0, 1] by ``degrees`` counter-clockwise about the centre
    (bilinear, zero background)."""
    if degrees % 360 == 0:
        return images
    t = math.radians(degrees)
    theta = torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]], dtype=images.dtype)
    x = images.unsqueeze(1)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(1)


def _standardize(x: Tensor) -> Tensor:
    return ((x - MNIST_MEAN) / MNIST_STD).flatten(1)


def target(cfg: Config, dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = []
    width = 784
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 5))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _batches(n: int, cfg: Config, seed: int, epoch: int, salt: int) -> list[Tensor]:
    """The index batches of one epoch: a permutation fixed by ``(seed, model, epoch)``."""
    g = torch.Generator().manual_seed(seed * 1000 + salt * 100 + epoch)
    perm = torch.randperm(n, generator=g)
    return [perm[i:i + cfg.batch_size] for i in range(0, n - cfg.batch_size + 1, cfg.batch_size)]


def _plain_step(net: nn.Module):
    def step(xb: Tensor, yb: Tensor, opt: torch.optim.Optimizer) -> float:
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def _ensemble_step(nets: DeepEnsemble):
    def step(xb: Tensor, yb: Tensor, opt: torch.optim.Optimizer) -> float:
        # independent members: the sum of their losses has each member's own gradient
        loss = torch.stack([F.cross_entropy(n(xb), yb) for n in nets.networks]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()) / nets.k
    return step


def _method_step(method):
    return lambda xb, yb, opt: method.step(xb, yb, opt).task


def _models(cfg: Config) -> list[tuple[str, nn.Module, Any]]:
    """The six models in training order: ``(name, module, step(x, y, optimizer) -> loss)``."""
    out: list[tuple[str, nn.Module, Any]] = []
    net = target(cfg)
    out.append(("one network", net, _plain_step(net)))
    drop = target(cfg, cfg.dropout)
    out.append(("MC dropout", drop, _plain_step(drop)))
    ens = DeepEnsemble([target(cfg) for _ in range(cfg.ensemble)])
    out.append((f"deep ensemble of {cfg.ensemble}", ens, _ensemble_step(ens)))
    objectives = {
        "hypernetwork, HyperGAN": lambda m: HyperGAN(m, samples=cfg.samples, beta=cfg.beta),
        "hypernetwork, f-SVGD": lambda m: FunctionalSVGD(m, samples=cfg.samples, alpha=cfg.alpha),
        "hypernetwork, no diversity term": lambda m: HyperGAN(m, samples=cfg.samples, beta=0.0),
    }
    for name, make in objectives.items():
        model = HyperDNN(target(cfg), inputs=Noise(cfg.noise_dim), outputs=ChunkWise(cfg.chunk_size, cfg.chunk_dim),
                         body=MLP(hidden=cfg.body))
        out.append((name, model, _method_step(make(model))))
    return out


def _fmt(v: float) -> str:
    return f"{v:.4f}"


@recipe("uncertainty-mnist", "MNIST 0-4: calibration, OOD detection of 5-9 and rotation shift; hypernetwork vs deep ensemble", Config)
def run(ctx: RunContext) -> dict[str, Any]:
    """Trains the six models one after the other, evaluates them with the same code, writes the
    tables and figures; returns the numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hyperdnn.data.mnist import load_mnist

    cfg = ctx.config
    data = load_mnist(ctx.data_dir)
    tr_in = data.train_labels < 5
    x_train = data.train_images[tr_in].float() / 255.0
    y_train = data.train_labels[tr_in]
    if cfg.train_subset:
        x_train, y_train = x_train[: cfg.train_subset], y_train[: cfg.train_subset]
    te_in, te_out = data.test_labels < 5, data.test_labels >= 5
    x_test, y_test = data.test_images[te_in].float() / 255.0, data.test_labels[te_in]
    x_ood = data.test_images[te_out].float() / 255.0
    if cfg.test_subset:
        x_test, y_test, x_ood = x_test[: cfg.test_subset], y_test[: cfg.test_subset], x_ood[: cfg.test_subset]
    xs_train, y_train = _standardize(x_train).to(ctx.device), y_train.to(ctx.device)
    trained = [(name, module.to(ctx.device), step) for name, module, step in _models(cfg)]
    optimizers = [torch.optim.Adam(m.parameters(), lr=cfg.lr) for _, m, _ in trained]
    ctx.track(**{f"model_{i}": m for i, (_, m, _) in enumerate(trained)},
              **{f"optimizer_{i}": o for i, o in enumerate(optimizers)})
    state = ctx.restore({"model": 0, "epoch": 0, "batch": 0})
    per_epoch = len(_batches(len(xs_train), cfg, ctx.seed, 0, 0))
    ctx.progress(total=len(trained) * cfg.epochs * per_epoch)
    while state["model"] < len(trained):
        name, module, step = trained[state["model"]]
        module.train()
        while state["epoch"] < cfg.epochs:
            order = _batches(len(xs_train), cfg, ctx.seed, state["epoch"], state["model"])
            while state["batch"] < len(order):
                idx = order[state["batch"]]
                loss = step(xs_train[idx], y_train[idx], optimizers[state["model"]])
                state["batch"] += 1
                ctx.step_done(loss=loss, model=name)
            state["epoch"] += 1
            state["batch"] = 0
        state["model"] += 1
        state["epoch"] = 0
    models: dict[str, dict[str, Any]] = {}
    for name, module, _ in trained:
        module.eval()
        if isinstance(module, HyperDNN):
            members: nn.Module = FixedMembers(module, cfg.eval_samples, seed=ctx.seed)
        elif name == "MC dropout":
            members = MCDropout(module, cfg.eval_samples)
        else:
            members = module
        models[name] = {"model": members, "params": _count(module)}

    def batches(x: Tensor, y: Tensor | None = None, size: int = 1000) -> list:
        xs = _standardize(x).to(ctx.device)
        yd = y.to(ctx.device) if y is not None else None
        return [(xs[i:i + size], yd[i:i + size]) if yd is not None else xs[i:i + size] for i in range(0, len(xs), size)]

    angles = list(range(0, 181, cfg.angle_step))
    rotated = {a: batches(rotate(x_test, a), y_test) for a in angles}
    results: dict[str, Any] = {}
    evals: dict[str, UncertaintyResults] = {}
    shift: dict[str, list[UncertaintyResults]] = {}
    for name, m in models.items():
        evals[name] = evaluate(m["model"], rotated[0], ood=batches(x_ood))
        shift[name] = [evaluate(m["model"], rotated[a]) for a in angles]
        r = evals[name]
        results[name] = {"params": m["params"], **r.row(),
                         "ood_mutual_information": r.ood_mutual_information,
                         "shift": {str(a): {"accuracy": s.accuracy, "ece": s.ece, "nll": s.nll} for a, s in zip(angles, shift[name])}}
    names = list(models)
    ens_name = f"deep ensemble of {cfg.ensemble}"
    ctx.table(
        "uncertainty-mnist: test digits 0-4 (in distribution) and OOD detection of test digits 5-9",
        ["model", "trainable params", "accuracy", "NLL", "Brier", "ECE", "MI (0-4)", "MI (5-9)",
         "AUROC entropy", "AUROC MI", "AUROC 1-max p", "AUPR entropy"],
        [[n, models[n]["params"], _fmt(evals[n].accuracy), _fmt(evals[n].nll), _fmt(evals[n].brier), _fmt(evals[n].ece),
          _fmt(evals[n].mutual_information), _fmt(evals[n].ood_mutual_information),
          _fmt(evals[n].ood["entropy"][0]), _fmt(evals[n].ood["mutual_information"][0]), _fmt(evals[n].ood["max_prob"][0]),
          _fmt(evals[n].ood["entropy"][1])] for n in names],
        note=f"MI: mean mutual information (nats). OOD positives: test digits 5-9. {cfg.eval_samples} fixed draws / masks. "
        "Paper numbers for this protocol (HyperGAN's MNIST 0-4 / 5-9 detection) could not be verified from the "
        "paper's text available here, so none are shown.",
    )
    mean_shift = {n: (sum(s.accuracy for s in shift[n][1:]) / (len(angles) - 1), sum(s.ece for s in shift[n][1:]) / (len(angles) - 1)) for n in names}
    ctx.table(
        "uncertainty-mnist: rotated test digits 0-4 (accuracy / ECE per angle)",
        ["model"] + [f"{a} deg" for a in angles] + ["mean over 15-180: acc / ECE"],
        [[n] + [f"{s.accuracy:.3f} / {s.ece:.3f}" for s in shift[n]] + [f"{mean_shift[n][0]:.3f} / {mean_shift[n][1]:.3f}"] for n in names],
        note="Ovadia et al. (2019) report this protocol for full MNIST (10 classes, LeNet); their numbers are in "
        "figures, not comparable here.",
    )
    verdict = []
    for n in names:
        if n.startswith("hypernetwork"):
            auroc_ok = evals[n].ood["entropy"][0] >= evals[ens_name].ood["entropy"][0]
            ece_ok = mean_shift[n][1] <= mean_shift[ens_name][1]
            fewer = models[n]["params"] < models[ens_name]["params"]
            verdict.append([n, "yes" if auroc_ok else "no", "yes" if ece_ok else "no", "yes" if fewer else "no"])
    ctx.table(f"uncertainty-mnist: does the hypernetwork match the {ens_name}?",
                 ["model", "OOD AUROC (entropy) >= ensemble", "mean ECE under rotation <= ensemble", "fewer trainable params"],
                 verdict)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for n in names:
        a1.plot(angles, [s.accuracy for s in shift[n]], marker="o", ms=3, label=n)
        a2.plot(angles, [s.ece for s in shift[n]], marker="o", ms=3, label=n)
    a1.set_xlabel("rotation (degrees)"), a1.set_ylabel("accuracy"), a1.set_title("accuracy under rotation (test digits 0-4)")
    a2.set_xlabel("rotation (degrees)"), a2.set_ylabel("ECE (15 bins)"), a2.set_title("calibration under rotation")
    a1.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "mnist_shift")
    fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3.2), sharey=True)
    for ax, n in zip(axes, names):
        rel = evals[n].reliability
        centers = ((rel.edges[:-1] + rel.edges[1:]) / 2).numpy()
        full = (rel.count > 0).numpy()
        ax.bar(centers[full], rel.accuracy.numpy()[full], width=1 / len(centers), edgecolor="k", alpha=0.7)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_title(f"{n}\nECE {evals[n].ece:.3f}", fontsize=8)
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    ctx.save_figure(fig, "mnist_reliability")
    return results
