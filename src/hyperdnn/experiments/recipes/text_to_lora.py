"""Recipe ``text-to-lora``: a LoRA for a task never trained on, from its one-sentence description alone.

Text-to-LoRA (Charakorn et al., ICML 2025), on the KJV classification tasks with an
encoder. The description of each task (``hyperdnn.methods.lora.kjv_tasks``) is embedded
by a frozen all-MiniLM-L6-v2 (:class:`~hyperdnn.methods.lora.SentenceEncoder`); one
hypernetwork (``lora_model`` with an ``External`` condition) writes the LoRA of a second
copy of the encoder from that vector. The tasks have different label sets, so there is
no head to train: a verse is labelled by the class name nearest to it, both embedded by
the adapted encoder (mean-pooled, cosine similarity times ``scale``), which also gives the
frozen base a zero-shot score on every task.

The hypernetwork is trained by the task loss on the training tasks (round-robin); the
held-out tasks are never seen. Reported per task (seen and held out), test accuracy of:

- ``base``: the frozen encoder, zero-shot by class names;
- ``generated``: the LoRA generated from the task's description;
- ``random-description``: the LoRA generated from random strings of the description's
  length (the control asked for in text-to-lora issue 7), the mean over ``random_descriptions`` draws.
"""

from __future__ import annotations

import random
import string
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import positive, recipe
from hyperdnn.experiments.recipes.lora_multitask import Params, Tokens, load_text_encoder, pool, trainable
from hyperdnn.experiments.runs import RunContext

TASKS = ("testament", "genre", "book-law", "book-history", "book-wisdom-and-poetry", "book-major-prophets",
         "book-minor-prophets", "book-gospels", "book-pauline-epistles", "book-general-epistles")


@dataclass
class Config:
    """Configuration of ``text-to-lora`` (sizes chosen to finish well under an hour on 2 cores)."""

    held_out: tuple[str, ...] = field(default=("book-gospels", "book-major-prophets"),
                                      metadata={"help": "KJV tasks never trained on, comma-separated"})
    train_tasks: tuple[str, ...] = field(default=(), metadata={"help": "tasks trained on (empty: every KJV task not held out)"})
    per_class: int = field(default=32, metadata={"help": "training verses drawn per class"})
    test_per_class: int = field(default=16, metadata={"help": "test verses drawn per class"})
    steps: int = field(default=400, metadata={"help": "Adam steps in all (round-robin over the training tasks)"})
    batch_size: int = field(default=16, metadata={"help": "verses per step"})
    max_length: int = field(default=32, metadata={"help": "tokens per verse (longer ones are cut)"})
    rank: int = field(default=4, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=8.0, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)"})
    target_modules: tuple[str, ...] = field(default=("query", "value"), metadata={"help": "adapted modules (PEFT names)"})
    hidden: int = field(default=64, metadata={"help": "hidden width of the hypernetwork's MLP body"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of the hypernetwork (1e-3 collapsed every embedding to one point in 25 steps)"})
    scale: float = field(default=20.0, metadata={"help": "cosine similarities are multiplied by this before the softmax"})
    random_descriptions: int = field(default=3, metadata={"help": "random-string descriptions per task for the control"})
    encoder: str = field(default="", metadata={"help": "local encoder directory, adapted and describing (empty: all-MiniLM-L6-v2)"})

    def __post_init__(self) -> None:
        part = "text-to-lora"
        for n in ("per_class", "test_per_class", "steps", "batch_size", "max_length", "rank", "hidden", "random_descriptions"):
            positive(part, n, getattr(self, n))
        for n in ("alpha", "lr", "scale"):
            positive(part, n, getattr(self, n), float)
        if not self.held_out:
            raise ConfigError(f"{part}: held_out must name at least one task (got none)")
        overlap = sorted(set(self.held_out) & set(self.train_tasks))
        if overlap:
            raise ConfigError(f"{part}: {overlap} are both held out and trained on; a held-out task must be unseen")


def random_description(length: int, rng: random.Random) -> str:
    """Random lowercase 'words' (2 to 9 letters) making a string of about ``length`` characters."""
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))))
    return " ".join(words)


@recipe("text-to-lora", "LoRAs for held-out KJV tasks from their description alone vs the frozen base and random descriptions (Text-to-LoRA)", Config)
def run(ctx: RunContext) -> dict:
    import hyperdnn as hd
    from hyperdnn.methods.lora import LoraTargets, SentenceEncoder, kjv_tasks, lora_model

    cfg: Config = ctx.config
    base, tok = load_text_encoder(cfg.encoder)
    base = base.eval()
    describer_model, describer_tok = load_text_encoder(cfg.encoder)  # a second copy: frozen, never adapted
    describe = SentenceEncoder(model=describer_model, tokenizer=describer_tok)
    by_name = {t.name: t for t in kjv_tasks(ctx.data_dir, per_class=cfg.per_class, test_per_class=cfg.test_per_class)}
    wanted = list(cfg.train_tasks) + list(cfg.held_out)
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise ConfigError(f"text-to-lora: unknown tasks {missing}; choose from {sorted(by_name)}")
    train_names = list(cfg.train_tasks) or [n for n in by_name if n not in cfg.held_out]
    train = [by_name[n] for n in train_names]
    every = train + [by_name[n] for n in cfg.held_out]
    vec = {t.name: describe(t.description) for t in every}  # (dim,) each
    rng = random.Random(ctx.seed)
    random_vecs = {t.name: [describe(random_description(len(t.description), rng)) for _ in range(cfg.random_descriptions)]
                   for t in every}
    targets = LoraTargets(target_modules=cfg.target_modules, r=cfg.rank, lora_alpha=cfg.alpha)
    model = lora_model(base, targets, inputs=hd.External(dim=describe.dim, name="description"), body=hd.MLP(hidden=(cfg.hidden,)))
    tokens = Tokens(tok, cfg.max_length)

    def embed(texts: list[str], condition: Tensor | None) -> Tensor:
        enc = tokens(texts)
        if condition is None:
            states = base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        else:
            states = model(enc["input_ids"], description=condition, attention_mask=enc["attention_mask"]).last_hidden_state
        return F.normalize(pool(states, enc["attention_mask"]), dim=-1)  # (B, d)

    def logits(texts: list[str], task: Any, condition: Tensor | None) -> Tensor:
        return cfg.scale * embed(texts, condition) @ embed(list(task.classes), condition).T  # (B, classes)

    params = trainable(model)
    opt = torch.optim.Adam(params.values(), lr=cfg.lr)
    data_rng = torch.Generator().manual_seed(ctx.seed)
    ctx.track(params=Params(params), optimizer=opt, data_rng=data_rng)
    state = ctx.restore({"step": 0, "seconds": 0.0})
    ctx.progress(total=cfg.steps)
    start = time.time()
    while state["step"] < cfg.steps:
        task = train[state["step"] % len(train)]
        enc_texts, y = _draw(task, cfg.batch_size, data_rng)
        loss = F.cross_entropy(logits(enc_texts, task, vec[task.name]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] += 1
        ctx.step_done(loss=float(loss.detach()), task=task.name)
    state["seconds"] += time.time() - start
    model.eval()

    def accuracy(task: Any, condition: Tensor | None) -> float:
        correct = 0
        with torch.no_grad():
            for s in range(0, len(task.test_texts), 64):
                pred = logits(list(task.test_texts[s:s + 64]), task, condition).argmax(-1)
                correct += int((pred == torch.tensor(task.test_labels[s:s + 64])).sum())
        return correct / len(task.test_texts)

    results: dict[str, dict] = {}
    rows = []
    for task in every:
        seen = task.name in train_names
        r = {"seen": seen, "classes": len(task.classes), "test_verses": len(task.test_texts),
             "base": accuracy(task, None), "generated": accuracy(task, vec[task.name]),
             "random_description_each": [accuracy(task, v) for v in random_vecs[task.name]]}
        r["random_description"] = sum(r["random_description_each"]) / len(r["random_description_each"])
        results[task.name] = r
        ctx.log(kind="eval", task=task.name, seen=seen, base=r["base"], generated=r["generated"],
                random_description=r["random_description"])
        rows.append([task.name, "seen" if seen else "held out", len(task.classes), f"{100 * r['base']:.1f}",
                     f"{100 * r['generated']:.1f}", f"{100 * r['random_description']:.1f}"])

    def mean(key: str, seen: bool) -> float:
        vals = [r[key] for r in results.values() if r["seen"] == seen]
        return sum(vals) / len(vals) if vals else float("nan")

    summary = {group: {k: mean(k, group == "seen") for k in ("base", "generated", "random_description")}
               for group in ("seen", "held_out")}
    for group, s in summary.items():
        rows.append([f"mean ({group.replace('_', ' ')})", "", "", *(f"{100 * s[k]:.1f}" for k in ("base", "generated", "random_description"))])
    ctx.table("Test accuracy (%): zero-shot by class names, frozen base vs generated LoRAs",
              ["task", "split", "classes", "base", "generated", "random description"], rows,
              note=f"{cfg.steps} steps of {cfg.batch_size} verses over {len(train)} training tasks; LoRA r={cfg.rank}, "
                   f"alpha={cfg.alpha} on {','.join(cfg.target_modules)}; random description: mean of {cfg.random_descriptions}")
    return {"tasks": results, "summary": summary, "hypernetwork_parameters": sum(p.numel() for p in params.values()),
            "train_seconds": state["seconds"], "threads": torch.get_num_threads()}


def _draw(task: Any, batch_size: int, g: torch.Generator) -> tuple[list[str], Tensor]:
    idx = torch.randint(len(task.train_texts), (batch_size,), generator=g).tolist()
    return [task.train_texts[i] for i in idx], torch.tensor([task.train_labels[i] for i in idx])

