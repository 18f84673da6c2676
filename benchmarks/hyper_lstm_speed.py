"""One training step of HyperLSTM vs nn.LSTM (same hidden size), CPU, 1 and 2 threads.

Step = forward over the sequence, mean-square loss on the outputs, backward,
Adam update. Default workload (issue 5): sequence 100, batch 128, hidden 256,
hyper cell 64, N_z 4, input 128. The goal is HyperLSTM / nn.LSTM <= 3x.
Timing is interleaved (every model in every round, order rotated) and the ratio
is the median of per-round ratios, so drift on a shared machine cancels.

What makes the HyperLSTM fast enough (see hyperdnn/layers/hyper_lstm.py):
- input projections of the main and hyper cells hoisted out of the time loop
  (one (T*B, I) matmul each);
- one fused matmul per step for h_{t-1}'s two uses (main W_h and the hyper
  cell's input from h), one for the hyper recurrence, one for all 12
  embeddings z (one per gate and term), and one block-diagonal matmul (12
  blocks of (H, N_z)) making every gate's d_x, d_h and dynamic bias together;
- ``unbind``/``chunk`` instead of ``x[t]`` or slicing: the backward of an index
  or a slice fills a zero tensor the size of the whole input per step
  (quadratic in T), which alone made the step 8.6x nn.LSTM;
- nothing per step but tensor ops (no Python-side checks or allocations).

Run (from the repository root, package installed editable in .venv):

    .venv/bin/python -m benchmarks.hyper_lstm_speed --threads 1,2

(add ``--compile`` to also try torch.compile). Writes
benchmarks/results/hyper_lstm_speed.json, with the command and git commit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.report import write_record
from benchmarks.timing import interleaved
from hyperdnn.layers.hyper_lstm import HyperLSTM
from hyperdnn.layers.layer_norm_lstm import LayerNormLSTM


def _step_fn(model: nn.Module, x: torch.Tensor):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        out, _ = model(x)
        loss = out.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def run(threads: int, args: argparse.Namespace) -> dict:
    """Times every model with ``threads`` torch threads; returns {name: {"s": .., "ratio": ..}}."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(args.seq, args.batch, args.input)
    models = {
        "nn.LSTM": nn.LSTM(args.input, args.hidden),
        "HyperLSTM": HyperLSTM(args.input, args.hidden, hyper_size=args.hyper, embedding_size=args.nz),
        "HyperLSTM (layer norm)": HyperLSTM(
            args.input, args.hidden, hyper_size=args.hyper, embedding_size=args.nz, layer_norm=True
        ),
        "LayerNormLSTM": LayerNormLSTM(args.input, args.hidden),
    }
    steps = {name: _step_fn(m, x) for name, m in models.items()}
    if args.compile:
        compiled = torch.compile(models["HyperLSTM"])
        steps["HyperLSTM (torch.compile)"] = _step_fn(compiled, x)
    timings = interleaved(steps, rounds=args.rounds, warmup=1, segment_s=0.0, reference="nn.LSTM")
    return {name: {"s": t.median, "ratio": t.ratio, "q1_q3": list(t.spread())} for name, t in timings.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--hyper", type=int, default=64)
    p.add_argument("--nz", type=int, default=4)
    p.add_argument("--input", type=int, default=128)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--compile", action="store_true", help="also time torch.compile(HyperLSTM) (slow to compile)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "hyper_lstm_speed.json"))
    args = p.parse_args(argv)
    results = {}
    for th in (int(t) for t in args.threads.split(",")):
        t0 = time.time()
        results[str(th)] = run(th, args)
        print(f"\n### one training step, seq {args.seq}, batch {args.batch}, hidden {args.hidden}, "
              f"hyper {args.hyper}, input {args.input}: {th} thread(s) ({time.time() - t0:.0f} s)\n")
        print("| model | s / step (median) | ratio to nn.LSTM (median of rounds) |")
        print("|---|---|---|")
        for name, r in results[str(th)].items():
            print(f"| {name} | {r['s']:.3f} | {r['ratio']:.2f}x |")
    out = write_record(
        args.out,
        "python -m benchmarks.hyper_lstm_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        workload={k: getattr(args, k) for k in ("seq", "batch", "hidden", "hyper", "nz", "input", "rounds")},
        results_by_threads=results,
        goal="HyperLSTM / nn.LSTM <= 3x",
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
