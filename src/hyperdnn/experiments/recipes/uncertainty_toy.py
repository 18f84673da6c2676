"""Recipe ``uncertainty-toy``: 1-D regression with a gap, the hypernetwork's draws beside a deep ensemble and MC dropout.

Data: ``y = x^3 + eps``, ``eps ~ N(0, 3^2)``, 20 training inputs drawn uniformly
from ``[-4, -gap] u [gap, 4]`` (the cubic of Hernandez-Lobato & Adams 2015 used
by Lakshminarayanan et al. 2017, with a gap in the middle as in HyperGAN's toy
regression figure). Targets are divided by 100 for training. The target network
is an MLP 1-100-1 (ReLU); the likelihood is Gaussian with the known noise std
(3). Trained, full batch, with Adam:

- three noise-conditioned hypernetworks (``Noise(32)`` -> MLP mixer (64, 64) ->
  one head per target tensor, ``hd.MultiHead``): :class:`~.hypergan.HyperGAN`
  (entropy term ``beta``), :class:`~.svgd.FunctionalSVGD` (repulsion ``alpha``,
  measured also on 20 points spread over ``[-6, 6]``), and the ablation without
  diversity term (``beta = 0``);
- a deep ensemble of 5 target networks (squared error = Gaussian NLL with the
  known std; no adversarial training, no learned variance: a simplification of
  Lakshminarayanan et al.);
- MC dropout (dropout ``p`` after the hidden layer, kept on at prediction).

The figure shows each method's predictive mean and 1/2/3-sigma bands (the
members' spread plus the noise std) over ``[-6, 6]``; the table gives the
members' spread on the data, in the gap and outside the data. No paper reports
numbers for this setting (the papers show figures only).

Under a minute on one core (about 50 s for the five models at the defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from hyperdnn.bodies import MLP
from hyperdnn.conditioning import Noise
from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import recipe
from hyperdnn.experiments.runs import RunContext
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.methods.uncertainty import DeepEnsemble, FixedMembers, FunctionalSVGD, Gaussian, HyperGAN, MCDropout
from hyperdnn.outputs import MultiHead

SCALE = 100.0  # targets are divided by this for training


@dataclass
class Config:
    """Configuration of ``uncertainty-toy``."""

    steps: int = field(default=3000, metadata={"help": "full-batch Adam steps per model"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    num_train: int = field(default=20, metadata={"help": "number of training points"})
    noise_std: float = field(default=3.0, metadata={"help": "std of the noise on y = x^3"})
    gap: float = field(default=2.0, metadata={"help": "no training inputs in (-gap, gap)"})
    hidden: int = field(default=100, metadata={"help": "hidden units of the target MLP"})
    noise_dim: int = field(default=32, metadata={"help": "width of the hypernetwork's noise"})
    mixer: tuple[int, ...] = field(default=(64, 64), metadata={"help": "hidden widths of the mixer (body)"})
    samples: int = field(default=16, metadata={"help": "draws per training step"})
    eval_samples: int = field(default=64, metadata={"help": "fixed draws / dropout masks for prediction"})
    beta: float = field(default=10.0, metadata={"help": "HyperGAN entropy weight"})
    alpha: float = field(default=10.0, metadata={"help": "f-SVGD repulsion weight"})
    ensemble: int = field(default=5, metadata={"help": "deep ensemble size"})
    dropout: float = field(default=0.1, metadata={"help": "MC dropout probability"})

    def __post_init__(self) -> None:
        self.mixer = tuple(self.mixer)
        for name in ("steps", "num_train", "hidden", "noise_dim", "samples", "eval_samples", "ensemble"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"uncertainty-toy: {name} must be a positive int (got {v!r})")
        for name in ("lr", "noise_std"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"uncertainty-toy: {name} must be > 0 (got {getattr(self, name)!r})")
        if not 0 <= self.gap < 4:
            raise ConfigError(f"uncertainty-toy: gap must be in [0, 4) (got {self.gap!r})")
        if not 0 < self.dropout < 1:
            raise ConfigError(f"uncertainty-toy: dropout must be in (0, 1) (got {self.dropout!r})")
        if self.samples < 2:
            raise ConfigError(f"uncertainty-toy: samples must be >= 2 for the diversity terms (got {self.samples})")


def make_data(cfg: Config, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of shape ``(num_train, 1)``: half the inputs in ``[-4, -gap]``, half in ``[gap, 4]``."""
    n_left = cfg.num_train // 2
    u = torch.rand(cfg.num_train, 1, generator=generator) * (4 - cfg.gap)
    x = torch.cat([-(cfg.gap + u[:n_left]), cfg.gap + u[n_left:]])
    y = x**3 + cfg.noise_std * torch.randn(x.shape, generator=generator)
    return x, y


def target(cfg: Config, dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(1, cfg.hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(cfg.hidden, 1))


def _hypernetwork(cfg: Config) -> HyperDNN:
    return HyperDNN(target(cfg), inputs=Noise(cfg.noise_dim), outputs=MultiHead(), body=MLP(hidden=cfg.mixer))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _models(cfg: Config, x: Tensor, ys: Tensor) -> list[tuple[str, nn.Module, Callable[[], Tensor]]]:
    """The five models in training order, on ``x``'s device: ``(name, module, loss on the training set)``."""
    lik = Gaussian(cfg.noise_std / SCALE)
    grid = torch.linspace(-6, 6, 20, device=x.device).unsqueeze(1)
    out: list[tuple[str, nn.Module, Callable[[], Tensor]]] = []
    objectives = {
        "hypernetwork, HyperGAN": lambda m: HyperGAN(m, samples=cfg.samples, beta=cfg.beta, likelihood=lik),
        "hypernetwork, f-SVGD": lambda m: FunctionalSVGD(m, samples=cfg.samples, alpha=cfg.alpha, likelihood=lik,
                                                         measurement=lambda _x: grid),
        "hypernetwork, no diversity term": lambda m: HyperGAN(m, samples=cfg.samples, beta=0.0, likelihood=lik),
    }
    for name, make in objectives.items():
        model = _hypernetwork(cfg).to(x.device)
        method = make(model)
        out.append((name, model, lambda method=method: method.loss(x, ys)))
    ensemble = DeepEnsemble([target(cfg) for _ in range(cfg.ensemble)]).to(x.device)
    # the members' summed losses: each member gets its own gradient
    out.append((f"deep ensemble of {cfg.ensemble}", ensemble, lambda: lik.nll(ensemble(x), ys) * cfg.ensemble))
    net = target(cfg, cfg.dropout).to(x.device)
    out.append(("MC dropout", net, lambda: lik.nll(net(x).unsqueeze(0), ys)))
    return out


@torch.no_grad()
def predictive(members: nn.Module, xs: Tensor, noise_std: float) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, members' std (epistemic) and total std (with the noise) on ``xs (N, 1)``, in y units."""
    device = next(members.parameters()).device
    f = members(xs.to(device)).squeeze(-1).cpu() * SCALE  # (k, N)
    mean, spread = f.mean(0), f.std(0) if f.shape[0] > 1 else torch.zeros(f.shape[1])
    return mean, spread, (spread**2 + noise_std**2).sqrt()


@recipe("uncertainty-toy", "1-D regression with a gap: a hypernetwork's draws beside a deep ensemble and MC dropout", Config)
def run(ctx: RunContext) -> dict[str, Any]:
    """Trains the five models one after the other (full batch, Adam), then writes the figure
    ``toy_predictive`` and the table; returns the numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = ctx.config
    g = torch.Generator().manual_seed(ctx.seed)
    x, y = make_data(cfg, g)
    trained = _models(cfg, x.to(ctx.device), (y / SCALE).to(ctx.device))
    optimizers = [torch.optim.Adam(m.parameters(), lr=cfg.lr) for _, m, _ in trained]
    ctx.track(**{f"model_{i}": m for i, (_, m, _) in enumerate(trained)},
              **{f"optimizer_{i}": o for i, o in enumerate(optimizers)})
    state = ctx.restore({"model": 0, "step": 0})
    ctx.progress(total=len(trained) * cfg.steps)
    while state["model"] < len(trained):
        name, module, loss_fn = trained[state["model"]]
        opt = optimizers[state["model"]]
        module.train()
        while state["step"] < cfg.steps:
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] += 1
            ctx.step_done(loss=float(loss.detach()), model=name)
        state["model"] += 1
        state["step"] = 0
    models: dict[str, tuple[nn.Module, int]] = {}
    for name, module, _ in trained:
        module.eval()
        if isinstance(module, HyperDNN):
            models[name] = (FixedMembers(module, cfg.eval_samples, seed=ctx.seed), _count(module))
        elif isinstance(module, DeepEnsemble):
            models[name] = (module, _count(module))
        else:
            models[name] = (MCDropout(module, cfg.eval_samples), _count(module))
    xs = torch.linspace(-6, 6, 241).unsqueeze(1)
    regions = {"data": (xs.abs() >= cfg.gap) & (xs.abs() <= 4), "gap": xs.abs() < cfg.gap, "outside": xs.abs() > 4}
    x_test = torch.rand(2000, 1, generator=g) * 12 - 6
    y_test = x_test**3 + cfg.noise_std * torch.randn(x_test.shape, generator=g)
    results: dict[str, Any] = {}
    rows = []
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.6), sharey=True)
    for ax, (name, (members, params)) in zip(axes, models.items()):
        mean, spread, total = predictive(members, xs, cfg.noise_std)
        tm, _, tt = predictive(members, x_test, cfg.noise_std)
        nll = float((0.5 * ((y_test.squeeze(1) - tm) / tt) ** 2 + tt.log() + 0.5 * math.log(2 * math.pi)).mean())
        inside = x_test.abs().squeeze(1) <= 4
        rmse_in = float((tm[inside] - x_test.squeeze(1)[inside] ** 3).pow(2).mean().sqrt())
        r = {"params": params, **{f"std_{k}": float(spread[m.squeeze(1)].mean()) for k, m in regions.items()},
             "rmse_in_range": rmse_in, "test_nll": nll}
        results[name] = r
        rows.append([name, params, r["std_data"], r["std_gap"], r["std_outside"], rmse_in, nll])
        xv, mv = xs.squeeze(1).numpy(), mean.numpy()
        for s, a in ((3, 0.12), (2, 0.18), (1, 0.25)):
            ax.fill_between(xv, mv - s * total.numpy(), mv + s * total.numpy(), color="tab:blue", alpha=a, lw=0)
        ax.plot(xv, xv**3, "k--", lw=1, label="y = x^3")
        ax.plot(xv, mv, color="tab:blue", lw=1.5, label="predictive mean")
        ax.scatter(x.squeeze(1).numpy(), y.squeeze(1).numpy(), s=10, color="tab:red", zorder=3, label="training data")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-250, 250)
        ax.set_xlabel("x")
    axes[0].set_ylabel("y (bands: 1/2/3 sigma)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    ctx.save_figure(fig, "toy_predictive")
    ctx.table(
        "uncertainty-toy: members' spread (std of the predictive mean over members) and fit",
        ["model", "trainable params", "std on data", "std in gap", "std outside [-4, 4]", "RMSE of mean on [-4, 4]",
         "test NLL on [-6, 6]"],
        rows,
        note="std in y units (noise std 3); test NLL: Gaussian with the members' mean and spread plus the noise, "
        "2000 fresh points with x uniform on [-6, 6]. The papers show this setting as figures only: no paper numbers.",
    )
    return results
