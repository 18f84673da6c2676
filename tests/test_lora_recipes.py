"""Short runs of the recipes lora-multitask, text-to-lora and lora-lm on tiny models: numbers, tables, resume."""

from __future__ import annotations

import json
import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a hub here

from pathlib import Path

import pytest
import torch

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.registry import get_recipe
from hyperdnn.experiments.runs import run_recipe

transformers = pytest.importorskip("transformers")  # the [lora] extra is part of [test]
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA") or ROOT.parent / "shared" / "data")
needs_kjv = pytest.mark.skipif(not (DATA / "kjv" / "kjv.txt.gz").is_file(), reason=f"KJV corpus not found under {DATA}")
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "and", "the", "of", "he", "lord", "god", "unto", "said"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """A one-layer BERT (width 16) and a 13-word tokenizer, saved as a local model directory."""
    d = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    (d / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=32))
    bert.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    """A two-layer Llama (width 32) with a word-level tokenizer over the commonest KJV words."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    d = tmp_path_factory.mktemp("llama")
    vocab = ["<unk>", "</s>"] + "and the of to that in he shall unto i his a lord they be is him not them it with all".split()
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    transformers.LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _run(name: str, tmp_path: Path, out: str = "runs", **config):
    r = get_recipe(name)
    return run_recipe(r, r.config(**config), data_dir=DATA, out_dir=tmp_path / out, show_progress=False,
                      print_tables=False, checkpoint_every=0, threads=1, seed=0)


def _interrupted_then_resumed(name: str, stop_at: int, tmp_path: Path, interrupted_run, **config):
    r = get_recipe(name)
    run_dir = interrupted_run(r, r.config(**config), stop_at, out_dir=tmp_path / "cut", data_dir=DATA,
                              show_progress=False, print_tables=False, checkpoint_every=0, threads=1, seed=0)
    return run_recipe(r, resume=run_dir, show_progress=False, print_tables=False), run_dir


def _without_seconds(x):
    if isinstance(x, dict):
        return {k: _without_seconds(v) for k, v in x.items() if "seconds" not in k}
    return x


MT = dict(tasks=("testament", "book-gospels"), per_class=4, test_per_class=2, steps_per_task=2, batch_size=4,
          max_length=16, rank=2)


@needs_kjv
def test_lora_multitask_recipe_short_run_writes_its_tables(tmp_path, encoder_dir) -> None:
    res = _run("lora-multitask", tmp_path, **MT, encoder=str(encoder_dir))
    r = res.results["methods"]
    assert set(r) == {"hyper", "peft-per-task", "shared-lora", "frozen-head"}
    heads = (16 * 2 + 2) + (16 * 4 + 4)
    one_lora = 2 * 2 * (16 + 16)  # query and value of the one layer, r (in + out) each
    assert r["frozen-head"]["trainable_parameters"] == heads
    assert r["shared-lora"]["trainable_parameters"] == one_lora + heads
    assert r["peft-per-task"]["trainable_parameters"] == 2 * one_lora + heads
    assert r["hyper"]["bytes_stored"] == 4 * r["hyper"]["trainable_parameters"]
    assert r["hyper"]["hypernetwork"]["one_peft_lora"] == one_lora
    assert all(0.0 <= a <= 1.0 for m in r.values() for a in m["accuracy"].values())
    assert "| hyper |" in (res.run_dir / "results.md").read_text()


@needs_kjv
def test_lora_multitask_interrupted_and_resumed_equals_uninterrupted(tmp_path, encoder_dir, interrupted_run) -> None:
    # 2 + 4 + 2 steps before frozen-head: stop inside the second per-task LoRA
    ref = _run("lora-multitask", tmp_path, "ref", **MT, encoder=str(encoder_dir))
    resumed, run_dir = _interrupted_then_resumed("lora-multitask", 8, tmp_path, interrupted_run, **MT, encoder=str(encoder_dir))
    assert _without_seconds(resumed.results) == _without_seconds(ref.results)
    assert (run_dir / "metrics.jsonl").read_text() == (ref.run_dir / "metrics.jsonl").read_text()


T2L = dict(held_out=("book-gospels",), train_tasks=("testament", "book-law"), per_class=3, test_per_class=2, steps=4,
           batch_size=4, max_length=16, rank=2, random_descriptions=2)


@needs_kjv
def test_text_to_lora_reports_base_generated_and_control_per_task(tmp_path, encoder_dir) -> None:
    from hyperdnn.experiments.recipes.lora_multitask import pool
    from hyperdnn.methods.lora import kjv_tasks

    res = _run("text-to-lora", tmp_path, **T2L, encoder=str(encoder_dir))
    tasks = res.results["tasks"]
    assert [(n, t["seen"]) for n, t in tasks.items()] == [("testament", True), ("book-law", True), ("book-gospels", False)]
    for t in tasks.values():
        assert all(0.0 <= t[k] <= 1.0 for k in ("base", "generated", "random_description"))
        assert t["random_description"] == pytest.approx(sum(t["random_description_each"]) / 2)
    # the base's zero-shot accuracy, computed here by hand: nearest class name by cosine of mean-pooled states
    model = transformers.AutoModel.from_pretrained(encoder_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(encoder_dir)
    task = next(t for t in kjv_tasks(DATA, per_class=3, test_per_class=2) if t.name == "book-gospels")

    def embed(texts):
        enc = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            return torch.nn.functional.normalize(pool(model(**enc).last_hidden_state, enc["attention_mask"]), dim=-1)

    pred = (embed(list(task.test_texts)) @ embed(list(task.classes)).T).argmax(-1)
    want = float((pred == torch.tensor(task.test_labels)).float().mean())
    assert tasks["book-gospels"]["base"] == pytest.approx(want)
    s = res.results["summary"]
    assert s["held_out"]["generated"] == tasks["book-gospels"]["generated"]
    assert s["seen"]["base"] == pytest.approx((tasks["testament"]["base"] + tasks["book-law"]["base"]) / 2)


@needs_kjv
def test_text_to_lora_resumes_exactly_and_refuses_a_held_out_training_task(tmp_path, encoder_dir, interrupted_run) -> None:
    ref = _run("text-to-lora", tmp_path, "ref", **T2L, encoder=str(encoder_dir))
    resumed, _ = _interrupted_then_resumed("text-to-lora", 2, tmp_path, interrupted_run, **T2L, encoder=str(encoder_dir))
    assert _without_seconds(resumed.results) == _without_seconds(ref.results)
    with pytest.raises(ConfigError, match="both held out and trained on"):
        get_recipe("text-to-lora").config(held_out=("testament",), train_tasks=("testament", "genre"))


LM = dict(books=("Genesis", "Matthew"), held_out=("Luke",), train_verses=8, test_verses=3, steps_per_book=2, peft_steps=2,
          batch_size=2, max_length=12, rank=2)


@needs_kjv
def test_lora_lm_on_a_tiny_llama_reports_perplexities_and_counts(tmp_path, encoder_dir, llama_dir) -> None:
    from hyperdnn.experiments.recipes.lora_lm import Verses, lm_loss

    res = _run("lora-lm", tmp_path, **LM, model=str(llama_dir), encoder=str(encoder_dir))
    books = res.results["books"]
    assert [(b, r["seen"]) for b, r in books.items()] == [("Genesis", True), ("Matthew", True), ("Luke", False)]
    for r in books.values():
        assert all(math.isfinite(r[k]) and r[k] > 1.0 for k in ("base", "generated", "random_description", "peft"))
    # PEFT's count: q_proj (32 -> 32) and v_proj (32 -> 16, two kv heads of 8) in each of 2 layers, r (in + out) each
    p = res.results["parameters"]
    assert p["one_peft_lora"] == 2 * 2 * ((32 + 32) + (32 + 16))
    assert p["peft_loras_of_all_books"] == 3 * p["one_peft_lora"]
    # the base's perplexity by hand: the verses the recipe drew, the tiny llama, exp(mean NLL of tokens 2..n)
    import random

    from hyperdnn.methods.lora import kjv_books

    kjv = kjv_books(DATA)
    draw = random.Random(0)
    tests = {}
    for b in ("Genesis", "Matthew", "Luke"):
        tr = [v for i, v in enumerate(kjv[b]) if i % 10 != 9]
        te = [v for i, v in enumerate(kjv[b]) if i % 10 == 9]
        draw.sample(tr, 8)
        tests[b] = draw.sample(te, 3)
    lm = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    verses = Verses(transformers.AutoTokenizer.from_pretrained(llama_dir), 12)
    nll, count = 0.0, 0
    for text in tests["Luke"]:
        ids, mask, labels = verses([text])
        with torch.no_grad():
            logp = torch.log_softmax(lm(input_ids=ids).logits[0, :-1], -1)
        nll -= float(logp.gather(1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
        with torch.no_grad():
            total, n = lm_loss(lm(input_ids=ids, attention_mask=mask).logits, labels)
        assert n == ids.shape[1] - 1 and float(total) == pytest.approx(float(-logp.gather(1, ids[0, 1:, None]).sum()), rel=1e-5)
    assert books["Luke"]["base"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert "| Luke | held out |" in (res.run_dir / "results.md").read_text()


@needs_kjv
def test_lora_lm_resumes_exactly_across_its_phases(tmp_path, encoder_dir, llama_dir, interrupted_run) -> None:
    # 4 hypernetwork steps, then 2 per PEFT LoRA: stop in the second book's PEFT LoRA
    ref = _run("lora-lm", tmp_path, "ref", **LM, model=str(llama_dir), encoder=str(encoder_dir))
    resumed, _ = _interrupted_then_resumed("lora-lm", 7, tmp_path, interrupted_run, **LM, model=str(llama_dir),
                                           encoder=str(encoder_dir))
    assert _without_seconds(resumed.results) == _without_seconds(ref.results)
    assert json.dumps(resumed.results["parameters"]) == json.dumps(ref.results["parameters"])
