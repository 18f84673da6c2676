"""CPU time of one training step of each model of the Ha et al. recipes, at their default sizes.

Backs the "CPU cost" sentences of docs/results.md. Each model is built by
its recipe's own code (``ha_mnist.build``, ``seq_mnist.build``,
``char_lm.CharModel``) with the recipe's default Config, and one step is what
the recipe's loop does: forward, cross-entropy, backward, gradient clipping
where the recipe clips, Adam. Inputs are random tensors of the real shapes
(MNIST batch 100 or 128 of 28x28; 64 streams x 100 characters over a
73-character vocabulary, the state carried from step to step). The models of
one recipe are timed interleaved (benchmarks.timing.interleaved), one thread.

Run from the repository root:

    .venv/bin/python docs/runs/ha/step_times.py

Writes docs/runs/ha/step_times.json next to this file.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))  # for benchmarks.timing

from benchmarks.timing import interleaved  # noqa: E402
from hyperdnn.experiments.recipes import char_lm, ha_mnist, seq_mnist  # noqa: E402


def _step(model: nn.Module, forward, clip: float | None):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = forward()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    return step


def ha_mnist_steps() -> dict:
    cfg = ha_mnist.Config()
    x, y = torch.randn(cfg.batch_size, 1, 28, 28), torch.randint(10, (cfg.batch_size,))
    out = {}
    for kind in cfg.models:
        m = ha_mnist.build(kind, cfg)
        out[kind] = _step(m, lambda m=m: F.cross_entropy(m(x), y), None)
    return out


def seq_mnist_steps() -> dict:
    cfg = seq_mnist.Config()
    x, y = torch.randn(cfg.batch_size, 28, 28), torch.randint(10, (cfg.batch_size,))
    out = {}
    for kind in cfg.models:
        m = seq_mnist.build(kind, cfg)
        out[kind] = _step(m, lambda m=m: F.cross_entropy(m(x), y), cfg.clip)
    return out


def char_lm_steps(vocab: int = 73) -> dict:
    cfg = char_lm.Config()
    x = torch.randint(vocab, (cfg.seq_len, cfg.batch_size))
    y = torch.randint(vocab, (cfg.seq_len, cfg.batch_size))
    out = {}
    for kind in cfg.models:
        m = char_lm.CharModel(kind, vocab, cfg)
        carried: dict = {}

        def forward(m=m, carried=carried):
            logits, (h, c) = m(x, carried.get("state"))
            carried["state"] = (h.detach(), c.detach())
            return F.cross_entropy(logits.flatten(0, 1), y.flatten())

        out[kind] = _step(m, forward, cfg.clip)
    return out


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    groups = {
        "ha-mnist": (ha_mnist_steps, "normal", 7),
        "seq-mnist": (seq_mnist_steps, "lstm", 7),
        "char-lm": (char_lm_steps, "lstm", 5),
    }
    record = {"threads": 1, "results": {}}
    for name, (make, ref, rounds) in groups.items():
        timings = interleaved(make(), rounds=rounds, warmup=1, segment_s=0.0, reference=ref)
        record["results"][name] = {k: {"s_per_step": t.median, "ratio": t.ratio} for k, t in timings.items()}
        print(f"\n{name} (1 thread): seconds per training step (median of {rounds} interleaved rounds)")
        for k, t in timings.items():
            print(f"  {k:14s} {t.median:.3f} s  ({t.ratio:.2f}x {ref})")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=REPO).stdout.strip()
    except OSError:
        commit = ""
    record["machine"] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "loadavg_at_end": os.getloadavg(),
    }
    record["command"] = ".venv/bin/python docs/runs/ha/step_times.py"
    record["git_commit"] = commit
    out = Path(__file__).with_name("step_times.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
