"""A different rank-8 LoRA per sample through all-MiniLM-L6-v2: batched vs loop vs PEFT vs a bmm limit.

Workload (issue 13): 32 sentences through MiniLM (6 layers, width 384), a different
rank-8 LoRA per sample on every query, key, value and dense layer of the encoder
(36 adapted layers), forward pass in eval mode without gradients. Implementations:

- ``hyperdnn batched``: ``model.run_target(ids, weights)`` with per-sample
  ``hd.Factored`` weights; the batched Linear rule computes ``W0 x + s (x A^T) B^T``
  with one batched matmul pair per layer;
- ``python loop``: the same model run once per sample (one weight set each);
- ``peft mixed batch``: one ``PeftModel`` holding 32 adapters, called with
  ``adapter_names=[...]`` (PEFT's mixed-adapter batches, one adapter per row);
- ``limit``: the plain HuggingFace model with a forward hook on each adapted
  Linear adding ``s * bmm(bmm(x, A^T), B^T)``, written by hand.

Also measured: the largest tensor any op makes in the batched forward, against the
largest in the plain model's forward (the activations), so no per-sample
``out x in`` matrix appears. Interleaved timing; ratios are medians of per-round
ratios to the limit.

Run (from the repository root, ``pip install -e '.[lora]'``):

    .venv/bin/python -m benchmarks.lora_speed --threads 2

Writes benchmarks/results/lora_speed.json.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.report import write_record
from benchmarks.timing import interleaved
from hyperdnn.factored import Factored
from hyperdnn.methods.lora import LoraTargets, find_sites, load_encoder, lora_model

SENTENCES = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "Blessed are the meek: for they shall inherit the earth.",
    "The LORD is my shepherd; I shall not want.",
    "A soft answer turneth away wrath: but grievous words stir up anger.",
    "To every thing there is a season, and a time to every purpose under the heaven.",
    "Jesus wept.",
]


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def build(args: argparse.Namespace):
    base, tok = load_encoder()
    sentences = [SENTENCES[i % len(SENTENCES)] + f" ({i})" for i in range(args.batch)]
    enc = tok(sentences, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    targets = LoraTargets(target_modules=("query", "key", "value", "dense"), exclude_modules=("pooler.dense",),
                          r=args.rank, lora_alpha=2.0 * args.rank)
    sites = find_sites(base, targets)
    model = lora_model(base, targets)
    g = torch.Generator().manual_seed(0)
    factors = {}
    for s in sites:
        a = torch.randn(args.batch, args.rank, s.shape[1], generator=g) * s.shape[1] ** -0.5  # (B, r, in)
        b = torch.randn(args.batch, s.shape[0], args.rank, generator=g) * 0.05  # (B, out, r)
        factors[s.module] = (a, b)
    params = dict(base.named_parameters())
    weights = {f"{m}.weight": Factored(b, a.transpose(1, 2), tuple(params[f"{m}.weight"].shape), params[f"{m}.weight"].detach(),
                                       targets.scale) for m, (a, b) in factors.items()}
    return base, ids, mask, targets, sites, model, factors, weights


def make_steps(base, ids, mask, targets, model, factors, weights, batch):
    def batched():
        return model.run_target(ids, weights, attention_mask=mask).last_hidden_state

    def loop():
        outs = []
        for i in range(batch):
            w = {n: Factored(f.a[i], f.b[i], f.shape, f.base, f.scale) for n, f in weights.items()}
            outs.append(model.run_target(ids[i:i + 1], w, attention_mask=mask[i:i + 1]).last_hidden_state)
        return torch.cat(outs)

    limit_model = copy.deepcopy(base)
    mods = dict(limit_model.named_modules())
    s = targets.scale
    for m, (a, b) in factors.items():
        at, bt = a.transpose(1, 2).contiguous(), b.transpose(1, 2).contiguous()  # (B, in, r), (B, r, out)
        mods[m].register_forward_hook(lambda mod, inp, out, at=at, bt=bt: out.baddbmm_(torch.bmm(inp[0], at), bt, alpha=s))

    def limit():
        return limit_model(ids, attention_mask=mask).last_hidden_state

    from peft import get_peft_model, set_peft_model_state_dict

    cfg = targets.peft_config()
    peft_model = get_peft_model(copy.deepcopy(base), cfg, adapter_name="a0")
    for i in range(batch):
        if i:
            peft_model.add_adapter(f"a{i}", cfg)
        state = {}
        for m, (a, b) in factors.items():
            state[f"base_model.model.{m}.lora_A.weight"] = a[i]
            state[f"base_model.model.{m}.lora_B.weight"] = b[i]
        set_peft_model_state_dict(peft_model, state, adapter_name=f"a{i}")
    peft_model.eval()
    names = [f"a{i}" for i in range(batch)]

    def peft_mixed():
        return peft_model(input_ids=ids, attention_mask=mask, adapter_names=names).last_hidden_state

    return {"limit": limit, "hyperdnn batched": batched, "python loop": loop, "peft mixed batch": peft_mixed}


def run(threads: int, args: argparse.Namespace) -> dict:
    torch.set_num_threads(threads)
    base, ids, mask, targets, sites, model, factors, weights = build(args)
    steps = make_steps(base, ids, mask, targets, model, factors, weights, args.batch)
    with torch.no_grad():
        ref = steps["limit"]()
        errors = {n: (f() - ref).abs().max().item() for n, f in steps.items()}
        plain, mine = LargestTensor(), LargestTensor()
        with plain:
            base(ids, attention_mask=mask)
        with mine:
            steps["hyperdnn batched"]()

        def no_grad(f):
            def g():
                with torch.no_grad():
                    f()
            return g

        timings = interleaved({n: no_grad(f) for n, f in steps.items()}, rounds=args.rounds, warmup=1, segment_s=0.0,
                              reference="limit")
    return {
        "tokens": list(ids.shape), "adapted_layers": len(sites),
        "largest_intermediate": {"plain model": plain.largest, "hyperdnn batched": mine.largest},
        "max_abs_diff_to_limit": errors,
        "timings": {n: {"s": t.median, "ratio": t.ratio, "q1_q3": list(t.spread())} for n, t in timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="2", help="comma-separated torch thread counts (default 2)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "lora_speed.json"))
    args = p.parse_args(argv)
    results = {}
    for th in (int(t) for t in args.threads.split(",")):
        t0 = time.time()
        r = results[str(th)] = run(th, args)
        print(f"\n### MiniLM, {args.batch} sentences (tokens {r['tokens']}), rank-{args.rank} LoRA per sample on "
              f"{r['adapted_layers']} layers, forward: {th} thread(s) ({time.time() - t0:.0f} s)\n")
        print("| implementation | s / batch (median) | ratio to limit | max abs diff to limit |")
        print("|---|---|---|---|")
        for name, t in r["timings"].items():
            print(f"| {name} | {t['s']:.4f} | {t['ratio']:.2f}x | {r['max_abs_diff_to_limit'][name]:.1e} |")
        li = r["largest_intermediate"]
        print(f"\nlargest tensor made: plain model {li['plain model']:,} elements, hyperdnn batched "
              f"{li['hyperdnn batched']:,} elements")
    out = write_record(
        args.out, "python -m benchmarks.lora_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        workload={"model": "all-MiniLM-L6-v2", "batch": args.batch, "rank": args.rank, "rounds": args.rounds,
                  "targets": "query, key, value, dense (encoder)"},
        results_by_threads=results,
        goal="hyperdnn batched / limit <= 1.2x; largest intermediate <= the plain model's",
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
