"""Per-sample LoRA on Conv2d and Embedding: the factored rules against the formed weights.

The output contract lets the batched Conv and Embedding rules consume a
``Factored`` weight (``W0 + s A B^T``) in parts: a convolution to ``r``
channels then a ``1 x 1`` mix per sample, or a lookup in ``A`` then ``B^T``.
This times one forward + backward of the target alone with the same weights
given two ways, interleaved rounds, median per-round ratio:

- ``factored``: ``model.run_target(x, weights)`` with ``hd.Factored`` values;
- ``formed``: the same weights formed as ``(B, *shape)`` tensors first (the
  forming itself not timed), which is what the rules did before.

Both give the same output (checked before timing).

    .venv/bin/python -m benchmarks.factored_speed --threads 1

Writes benchmarks/results/factored_speed.json with the command and git commit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import hyperdnn as hd

from .report import md_table, write_record

CASES = {
    "conv 64->64 3x3, 8x8 maps": lambda: (nn.Conv2d(64, 64, 3, padding=1), torch.randn(32, 64, 8, 8)),
    "conv 128->128 3x3, 4x4 maps": lambda: (nn.Conv2d(128, 128, 3, padding=1), torch.randn(32, 128, 4, 4)),
    "embedding 8192x128, 16 tokens": lambda: (nn.Embedding(8192, 128), torch.randint(0, 8192, (32, 16))),
}


def _weights(model: hd.HyperDNN, c: torch.Tensor) -> tuple[dict, dict]:
    parts = model.weights(condition=c, dense=False)
    fac = {k: hd.Factored(v.a.detach().requires_grad_(), v.b.detach().requires_grad_(), v.shape,
                          None if v.base is None else v.base.detach(), v.scale) for k, v in parts.items()}
    formed = {k: v.dense().detach().requires_grad_() for k, v in fac.items()}
    return fac, formed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "factored_speed.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows, results = [], []
    for name, make in CASES.items():
        target, x = make()
        model = hd.HyperDNN(target, inputs=hd.External(4), outputs=hd.Additive(hd.LowRank(rank=args.rank), zero_init=False),
                            generate="weight")
        fac, formed = _weights(model, torch.randn(x.shape[0], 4))
        torch.testing.assert_close(model.run_target(x, fac), model.run_target(x, formed), atol=1e-4, rtol=1e-4)
        steps = {"factored": lambda: model.run_target(x, fac).square().sum().backward(),
                 "formed": lambda: model.run_target(x, formed).square().sum().backward()}
        for fn in steps.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for r in range(args.rounds):
            for k in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                t = time.perf_counter()
                steps[k]()
                times[k].append(time.perf_counter() - t)
        ratio = statistics.median(f / d for f, d in zip(times["formed"], times["factored"]))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        results.append({"case": name, "batch": x.shape[0], "rank": args.rank, "ms": med, "formed_over_factored": ratio})
        rows.append([name, f"{med['factored']:.2f}", f"{med['formed']:.2f}", f"{ratio:.2f}x"])
    print(f"per-sample LoRA (rank {args.rank}, batch 32), forward + backward of the target, "
          f"torch.set_num_threads({args.threads})")
    print(md_table(["case", "factored (ms)", "formed W per sample (ms)", "speed-up"], rows))
    path = write_record(args.out, "python -m benchmarks.factored_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
                        threads=args.threads, results=results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
