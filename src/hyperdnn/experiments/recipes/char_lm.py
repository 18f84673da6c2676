"""Recipe ``char-lm``: character-level language models, LSTM vs LayerNorm LSTM vs HyperLSTM (Ha et al. 2016, Table 3).

Four models at equal main hidden size on a character corpus (default: the
King James Bible, ``<data-dir>/kjv/kjv.txt.gz``; any UTF-8 text file via
``--corpus PATH``), split 90/5/5: an embedding of the characters, one
recurrent layer, a linear read-out. Truncated BPTT with the state carried
from chunk to chunk, Adam with cosine decay to 10 %, gradient-norm clipping.
Reported: validation and test bits per character (BPC, nats / ln 2).

Paper (Penn Treebank, 1000 units): LSTM 1.312, LayerNorm LSTM 1.267,
HyperLSTM 1.265, LayerNorm HyperLSTM 1.250 test BPC. The defaults here are
scaled down (256 units, 64-unit hyper cell) so that all four train in under
an hour on 2 CPU cores; the numbers are not comparable with the paper's across
corpora, only the ordering is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.data.mnist import data_root
from hyperdnn.data.text import CharCorpus, batchify, bptt_batch, load_char_corpus, num_bptt_batches
from hyperdnn.experiments.figures import eval_curves
from hyperdnn.errors import ConfigError, DataError, HDTypeError
from hyperdnn.layers.hyper_lstm import HyperLSTM
from hyperdnn.layers.layer_norm_lstm import LayerNormLSTM
from hyperdnn.experiments.recipes import non_negative, positive, recipe, some_of
from hyperdnn.experiments.runs import RunContext

PAPER_PTB_BPC = {"lstm": 1.312, "ln-lstm": 1.267, "hyper-lstm": 1.265, "ln-hyper-lstm": 1.250}
MODELS = tuple(PAPER_PTB_BPC)


@dataclass
class Config:
    """Configuration of ``char-lm`` (scaled-down Table 3 of Ha et al. 2016)."""

    corpus: str = field(default="", metadata={"help": "text file (plain or gzip); empty: <data-dir>/kjv/kjv.txt.gz"})
    models: tuple[str, ...] = field(default=MODELS, metadata={"help": "which of " + ",".join(MODELS)})
    hidden: int = 256
    hyper_size: int = 64
    embedding_size: int = field(default=4, metadata={"help": "HyperLSTM N_z"})
    embed_dim: int = field(default=64, metadata={"help": "character embedding width"})
    seq_len: int = 100
    batch_size: int = 64
    steps: int = field(default=1000, metadata={"help": "optimizer steps per model"})
    lr: float = 2e-3
    clip: float = 1.0
    eval_every: int = field(default=500, metadata={"help": "validation BPC every this many steps (0: only at the end)"})
    eval_batch: int = 64

    def __post_init__(self) -> None:
        part = "char-lm"
        for name in ("hidden", "hyper_size", "embedding_size", "embed_dim", "seq_len", "batch_size", "steps",
                     "eval_batch"):
            positive(part, name, getattr(self, name))
        positive(part, "lr", self.lr, float)
        positive(part, "clip", self.clip, float)
        non_negative(part, "eval_every", self.eval_every)
        self.models = some_of(part, "models", self.models, MODELS)
        if not isinstance(self.corpus, str):
            raise HDTypeError(f"char-lm: corpus must be a path string (got {type(self.corpus).__name__})")


class CharModel(nn.Module):
    """Embedding -> one recurrent layer -> linear read-out over the vocabulary."""

    def __init__(self, kind: str, vocab: int, cfg: Config) -> None:
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(vocab, cfg.embed_dim)
        if kind == "lstm":
            self.rnn: nn.Module = nn.LSTM(cfg.embed_dim, cfg.hidden)
        elif kind == "ln-lstm":
            self.rnn = LayerNormLSTM(cfg.embed_dim, cfg.hidden)
        elif kind in ("hyper-lstm", "ln-hyper-lstm"):
            self.rnn = HyperLSTM(
                cfg.embed_dim, cfg.hidden, hyper_size=cfg.hyper_size, embedding_size=cfg.embedding_size,
                layer_norm=kind == "ln-hyper-lstm",
            )
        else:
            raise ConfigError(f"char-lm: unknown model {kind!r} (expected one of {', '.join(MODELS)})")
        self.head = nn.Linear(cfg.hidden, vocab)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (T, B) indices -> logits (T, B, V) and the new state."""
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def _corpus_path(cfg: Config, ctx: RunContext) -> Path:
    if cfg.corpus:
        return Path(cfg.corpus).expanduser()
    root, source = data_root(ctx.data_dir)
    for p in (root / "kjv" / "kjv.txt.gz", root / "kjv.txt.gz", root / "kjv" / "kjv.txt"):
        if p.is_file():
            return p
    raise DataError(
        f"char-lm: no corpus given and no kjv/kjv.txt.gz under {root} (from {source}); "
        f"pass --corpus PATH (any UTF-8 text, plain or gzip) or --data-dir DIR holding kjv/kjv.txt.gz"
    )


@torch.no_grad()
def evaluate(model: CharModel, stream: Tensor, seq_len: int) -> float:
    """Bits per character of a (L, B) stream, state carried across chunks."""
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    for i in range(num_bptt_batches(stream, seq_len)):
        x, y = bptt_batch(stream, i, seq_len)
        logits, state = model(x, state)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count / math.log(2)


def _lr(cfg: Config, step: int) -> float:
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * step / max(cfg.steps, 1))))


def build_all(cfg: Config, results: dict) -> dict[str, nn.Module]:
    """The untrained models of a finished run, named as tracked (the vocabulary size is in its results)."""
    if "vocab_size" not in results:
        raise ConfigError("char-lm: load_run needs a finished run (the vocabulary size is in results.json)")
    return {f"model_{k}": CharModel(k, results["vocab_size"], cfg) for k in cfg.models}


def figures(run_dir: Path, name: str, results: dict, published: bool) -> None:
    """Validation bits per character of each model during training (the paper's are on another corpus)."""
    eval_curves(run_dir, name, "eval", "valid_bpc", "validation bits per character")


@recipe(
    "char-lm",
    "character LM on a text file (default KJV Bible): LSTM vs LayerNorm LSTM vs HyperLSTM vs LN HyperLSTM, BPC (Ha et al. 2016 Table 3); about 25 min on one core",
    Config,
    build=build_all,
    figures=figures,
)
def run(ctx: RunContext) -> dict:
    cfg: Config = ctx.config
    corpus: CharCorpus = load_char_corpus(_corpus_path(cfg, ctx))
    dev = ctx.device
    train = batchify(corpus.train, cfg.batch_size).to(dev)  # (L, B)
    valid = batchify(corpus.valid, cfg.eval_batch).to(dev)
    test = batchify(corpus.test, cfg.eval_batch).to(dev)
    n_chunks = num_bptt_batches(train, cfg.seq_len)
    models = {k: CharModel(k, corpus.vocab_size, cfg).to(dev) for k in cfg.models}
    opts = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr) for k, m in models.items()}
    carried: dict[str, Tensor] = {}  # the BPTT state between chunks, checkpointed for exact resume
    ctx.track(**{f"model_{k}": m for k, m in models.items()}, **{f"opt_{k}": o for k, o in opts.items()}, carried=carried)
    state = ctx.restore({"model": 0, "step": 0, "results": {}})
    ctx.progress(total=cfg.steps * len(cfg.models))
    while state["model"] < len(cfg.models):
        kind = cfg.models[state["model"]]
        model, opt = models[kind], opts[kind]
        model.train()
        while state["step"] < cfg.steps:
            x, y = bptt_batch(train, state["step"] % n_chunks, cfg.seq_len)
            hidden = (carried["h"], carried["c"]) if "h" in carried and state["step"] % n_chunks else None
            logits, (h, c) = model(x, hidden)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, state["step"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            carried["h"], carried["c"] = h.detach(), c.detach()
            state["step"] += 1
            if cfg.eval_every and state["step"] % cfg.eval_every == 0 and state["step"] < cfg.steps:
                ctx.log(kind="eval", model=kind, valid_bpc=evaluate(model, valid, cfg.seq_len))
            ctx.step_done(loss=loss.item(), bpc=loss.item() / math.log(2), model=kind)
        n_params = sum(p.numel() for p in model.parameters())
        res = {
            "valid_bpc": evaluate(model, valid, cfg.seq_len),
            "test_bpc": evaluate(model, test, cfg.seq_len),
            "params": n_params,
            "rnn_params": sum(p.numel() for p in model.rnn.parameters()),
        }
        ctx.log(kind="final", model=kind, **res)
        state["results"][kind] = res
        state["model"] += 1
        state["step"] = 0
        carried.clear()
    ctx.close_progress()
    results = state["results"]
    ctx.table(
        f"Character LM on {Path(corpus.path).name}: bits per character (hidden {cfg.hidden}, {cfg.steps} steps of {cfg.batch_size}x{cfg.seq_len})",
        ["model", "params (recurrent part)", "valid BPC", "test BPC"],
        [[k, r["rnn_params"], r["valid_bpc"], r["test_bpc"]] for k, r in results.items()],
        note=f"vocab {corpus.vocab_size}, train/valid/test {corpus.train.numel()}/{corpus.valid.numel()}/{corpus.test.numel()} characters. "
        f"The paper's test BPC (Penn Treebank, 1000 units: {', '.join(f'{k} {v}' for k, v in PAPER_PTB_BPC.items())}) is for another corpus "
        f"and size; only the ordering of the models compares.",
    )
    return {"models": results, "vocab_size": corpus.vocab_size, "corpus": corpus.path, "paper_ptb_test_bpc": PAPER_PTB_BPC}
