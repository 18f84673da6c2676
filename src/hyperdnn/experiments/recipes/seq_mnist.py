"""Recipe ``seq-mnist``: MNIST read row by row (28 steps of 28 pixels), HyperLSTM vs nn.LSTM.

Three classifiers, each a recurrent layer whose last hidden state feeds a
linear layer over the 10 digits: a HyperLSTM (Ha et al. 2016, section 3.2),
an nn.LSTM with the same hidden size, and an nn.LSTM whose hidden size is
chosen so that its parameter count (recurrent layer + read-out) matches the
HyperLSTM's. Adam, cosine decay to 10 %, gradient-norm clipping; reported:
test accuracy after the last epoch (no model selection on the test set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from hyperdnn.experiments.figures import eval_curves
from hyperdnn.errors import ConfigError
from hyperdnn.layers.hyper_lstm import HyperLSTM
from hyperdnn.experiments.recipes import boolean, non_negative, positive, recipe, some_of
from hyperdnn.experiments.recipes._classifiers import count_correct, standardized_mnist, train_classifiers
from hyperdnn.experiments.runs import RunContext

MODELS = ("hyper-lstm", "lstm", "lstm-matched")


@dataclass
class Config:
    """Configuration of ``seq-mnist``."""

    models: tuple[str, ...] = field(default=MODELS, metadata={"help": "which of " + ",".join(MODELS)})
    hidden: int = 128
    hyper_size: int = 32
    embedding_size: int = field(default=4, metadata={"help": "HyperLSTM N_z"})
    layer_norm: bool = False
    epochs: int = 10
    batch_size: int = 128
    train_subset: int = field(default=0, metadata={"help": "train on the first N training images only (0: all 60,000)"})
    lr: float = 2e-3
    clip: float = 1.0

    def __post_init__(self) -> None:
        part = "seq-mnist"
        for name in ("hidden", "hyper_size", "embedding_size", "epochs", "batch_size"):
            positive(part, name, getattr(self, name))
        positive(part, "lr", self.lr, float)
        positive(part, "clip", self.clip, float)
        boolean(part, "layer_norm", self.layer_norm)
        non_negative(part, "train_subset", self.train_subset)
        if 0 < self.train_subset < self.batch_size:  # an epoch would have no step: an untrained model
            raise ConfigError(
                f"{part}: train_subset must be 0 (all images) or >= batch_size={self.batch_size} (got {self.train_subset})"
            )
        self.models = some_of(part, "models", self.models, MODELS)


class RowClassifier(nn.Module):
    """(B, 28, 28) images read row by row -> (B, 10) logits from the last hidden state."""

    def __init__(self, rnn: nn.Module, hidden: int) -> None:
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)  # (B, 28, hidden), batch_first
        return self.head(out[:, -1])


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def matched_lstm_hidden(target_params: int) -> int:
    """Hidden size H of nn.LSTM(28, H) + Linear(H, 10) whose parameter count is closest to target_params."""
    def n(h: int) -> int:
        return 4 * h * (28 + h + 2) + 10 * h + 10

    return min(range(1, 4096), key=lambda h: abs(n(h) - target_params))


def build(kind: str, cfg: Config) -> RowClassifier:
    """One of the three classifiers."""
    if kind == "hyper-lstm":
        rnn = HyperLSTM(28, cfg.hidden, hyper_size=cfg.hyper_size, embedding_size=cfg.embedding_size,
                        layer_norm=cfg.layer_norm, batch_first=True)
        return RowClassifier(rnn, cfg.hidden)
    if kind == "lstm":
        return RowClassifier(nn.LSTM(28, cfg.hidden, batch_first=True), cfg.hidden)
    if kind == "lstm-matched":
        h = matched_lstm_hidden(_count(build("hyper-lstm", cfg)))
        return RowClassifier(nn.LSTM(28, h, batch_first=True), h)
    raise ConfigError(f"seq-mnist: unknown model {kind!r} (expected one of {', '.join(MODELS)})")


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of correctly classified images."""
    return count_correct(model, images, labels) / len(images)


def build_all(cfg: Config, results: dict) -> dict[str, nn.Module]:
    """The untrained models of a run, named as tracked (for :func:`hyperdnn.experiments.load_run`)."""
    return {f"model_{k}": build(k, cfg) for k in cfg.models}


def figures(run_dir: Path, name: str, results: dict, published: bool) -> None:
    """Test accuracy per epoch of each model (the paper has no number for this setting)."""
    eval_curves(run_dir, name, "epoch", "test_acc", "test accuracy (fraction of 10,000 images)")


@recipe("seq-mnist", "MNIST row by row (28 steps of 28): HyperLSTM vs nn.LSTM same hidden vs nn.LSTM same params, test accuracy", Config, build=build_all, figures=figures)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    (xtr, ytr), (xte, yte) = standardized_mnist(ctx, "seq-mnist", cfg.train_subset, channel=False)
    models = {k: build(k, cfg).to(ctx.device) for k in cfg.models}
    results = train_classifiers(
        ctx,
        models,
        (xtr, ytr),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        evaluate=lambda model: {"test_acc": accuracy(model, xte, yte)},
        final=lambda kind, model: {"test_acc": accuracy(model, xte, yte), "params": _count(model), "hidden": model.rnn.hidden_size},
        clip=cfg.clip,
    )
    ctx.table(
        f"Sequential MNIST (row by row), test accuracy after {cfg.epochs} epochs",
        ["model", "hidden", "params", "test accuracy", "test error %"],
        [[k, r["hidden"], r["params"], r["test_acc"], round(100 * (1 - r["test_acc"]), 2)] for k, r in results.items()],
    )
    return {"models": results}
