"""Generating a 10-million-parameter target with hd.Implicit: time vs a hand-written limit, peak memory.

Workload (issue 11): the any-width-mnist LeNet family at width 200
(conv 3x3 1->200, conv 5x5 200->400, conv 5x5 400->800, linear 800->10:
10,011,210 parameters, 409,610 rows of coordinates) generated without autograd
by the implicit hypernetwork of the recipe (16 frequencies, MLP 64-64-64,
25-number kernel head), given as a call-time target. The limit is the same math
written directly in PyTorch with no library: coordinates, Fourier features,
three ``F.linear`` + ReLU, the head, the centre slice and ``1 / sqrt(fan_in)``, chunk by
chunk into one preallocated buffer. Both produce the same numbers (checked).

Time: interleaved rounds (benchmarks/timing.py), the median of per-round
ratios to the limit. Peak memory: the rise of the process's resident memory
during one generation, each measurement in its own subprocess (so no
allocator cache from an earlier run hides it), against the target's size in
bytes; for several target widths and chunk sizes. Goals: time within 1.2x of
the limit; peak memory at most 1.5x the target's size.

Run (from the repository root):

    .venv/bin/python -m benchmarks.implicit_speed --threads 2

Writes benchmarks/results/implicit_speed.json (with the command and git commit)
and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.memory import PeakRSS
from benchmarks.report import md_table, write_record
from benchmarks.timing import interleaved


class LeNet(nn.Module):
    """The any-width-mnist family (shapes only matter here)."""

    def __init__(self, w: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv_2 = nn.Conv2d(w, 2 * w, 5, padding=2)
        self.conv_3 = nn.Conv2d(2 * w, 4 * w, 5, padding=2)
        self.linear = nn.Linear(4 * w, 10)


def build(hidden: tuple[int, ...], chunk: int, encoding: str = "fourier"):
    """The implicit HyperDNN (built around width 32, as the recipe trains it)."""
    import hyperdnn as hd

    torch.manual_seed(0)
    if encoding == "grid":
        return hd.HyperDNN(LeNet(32), outputs=hd.Implicit(encoding="grid", chunk_size=chunk)).eval()
    return hd.HyperDNN(LeNet(32), outputs=hd.Implicit(chunk_size=chunk), body=hd.MLP(hidden=hidden)).eval()


def limit_generate_grid(model, shapes: list[tuple[int, ...]], chunk: int) -> Tensor:
    """The grid encoding's math written directly: bilinear samples of each grid times ``R_in / n_in``."""
    grids = list(model.hypernetwork.outputs.grids)
    out = torch.empty(sum(math.prod(s) for s in shapes))
    offset = 0

    def where(n: int, r: int) -> tuple[Tensor, Tensor, Tensor]:
        x = ((torch.arange(n, dtype=torch.float32) + 0.5) * (r / n) - 0.5).clamp(0, r - 1)
        lo = x.floor().clamp(max=max(r - 2, 0)).long()
        return lo, (lo + 1).clamp(max=r - 1), x - lo
    for grid, shape in zip(grids, shapes):
        n_out, n_in = shape[0], shape[1] if len(shape) > 1 else 1
        a0, a1, fa = where(n_out, grid.shape[0])
        b0, b1, fb = where(n_in, grid.shape[1])
        fb = fb[None, :, None]
        step = max(1, chunk // n_in)
        for a in range(0, n_out, step):
            f = fa[a:a + step, None, None]
            rows = grid[a0[a:a + step]] * (1 - f) + grid[a1[a:a + step]] * f
            w = (rows[:, b0] * (1 - fb) + rows[:, b1] * fb) * (grid.shape[1] / n_in)
            out[offset:offset + w.numel()] = w.reshape(-1)
            offset += w.numel()
    return out


def limit_generate(model, shapes: list[tuple[int, ...]], chunk: int) -> Tensor:
    """The same math written directly: ``(P,)`` from the model's weights, no library code."""
    out_mod = model.hypernetwork.outputs
    layers = [m for m in out_mod.body.net if isinstance(m, nn.Linear)]
    head, norm, kernel = out_mod.head, out_mod.norm, out_mod.kernel
    freqs = math.pi * 2.0 ** torch.arange(len(out_mod.freqs), dtype=torch.float32)
    total = sum(math.prod(s) for s in shapes)
    out = torch.empty(total)
    offset, T, fan = 0, len(shapes), 1
    for t, shape in enumerate(shapes):
        if len(shape) > 1:  # a weight, then its bias: both scaled by 1 / sqrt(the weight's fan-in)
            fan = math.prod(shape[1:])
        n_out, n_in = shape[0], shape[1] if len(shape) > 1 else 1
        kk = math.prod(shape[2:]) if len(shape) > 1 else 1
        lo = kernel // 2 - kk // 2
        for a in range(0, n_out * n_in, chunk):
            r = torch.arange(a, min(a + chunk, n_out * n_in))
            n = r.shape[0]
            u = torch.empty(n, 6)
            u[:, 0] = t / T
            u[:, 1] = torch.div(r, n_in, rounding_mode="floor") / n_out
            u[:, 2] = (r % n_in) / n_in
            u[:, 3], u[:, 4], u[:, 5] = T / norm, n_out / norm, n_in / norm
            ang = (u[:, :, None] * freqs).reshape(n, -1)
            h = torch.cat([u, ang.sin(), ang.cos()], dim=1)
            for layer in layers:
                h = F.relu(F.linear(h, layer.weight, layer.bias))
            w = F.linear(h, head.weight, head.bias)[:, lo:lo + kk]
            w = w * (1.0 / math.sqrt(fan))
            out[offset:offset + n * kk] = w.reshape(-1)
            offset += n * kk
    return out


def measure_memory(impl: str, width: int, chunk: int, hidden: tuple[int, ...], encoding: str = "fourier") -> dict:
    """One generation in this process; returns the resident-memory rise and the target size."""
    model = build(hidden, chunk, encoding)
    limit = limit_generate_grid if encoding == "grid" else limit_generate
    target = LeNet(width)
    shapes = [tuple(p.shape) for p in target.parameters()]
    size = 4 * sum(math.prod(s) for s in shapes)
    with torch.no_grad():
        # No warm-up call: glibc would serve the measured call from the memory the warm-up
        # freed, and the rise would read near 0. The call-time target's preparation, part of
        # the first hyperdnn call, copies no parameter (its slots are empty placeholders).
        with PeakRSS() as peak:
            theta = model.weights(target=target) if impl == "hyperdnn" else limit(model, shapes, chunk)
        del theta
    return {"impl": impl, "width": width, "chunk": chunk, "target_bytes": size, "peak_bytes": peak.peak_bytes,
            "ratio": peak.peak_bytes / size, "method": peak.method}


def _memory_in_subprocess(impl: str, width: int, chunk: int, hidden: tuple[int, ...], threads: int, encoding: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.implicit_speed", "--memory-child", f"{impl},{width},{chunk}",
           "--hidden", ",".join(map(str, hidden)), "--threads", str(threads), "--encoding", encoding]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=200, help="target width (200: 10.08M parameters)")
    p.add_argument("--hidden", default="64,64,64")
    p.add_argument("--chunks", default="1024,4096,16384,65536", help="chunk sizes (rows) to time and measure")
    p.add_argument("--memory-widths", default="64,128,200", help="target widths for peak memory vs size")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--encoding", choices=("fourier", "grid"), default="fourier",
                   help="the implicit output's encoding (grid: the grids of a width-32 LeNet, upsampled)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "implicit_speed.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    if args.memory_child:
        impl, width, chunk = args.memory_child.split(",")
        print(json.dumps(measure_memory(impl, int(width), int(chunk), hidden, args.encoding)))
        return 0

    chunks = [int(c) for c in args.chunks.split(",")]
    target = LeNet(args.width)
    shapes = [tuple(p.shape) for p in target.parameters()]
    numel = sum(math.prod(s) for s in shapes)
    timing = {}
    limit_fn = limit_generate_grid if args.encoding == "grid" else limit_generate
    for chunk in chunks:
        model = build(hidden, chunk, args.encoding)
        with torch.no_grad():
            ours = torch.cat([t.reshape(-1) for t in model.weights(target=target).values()])
            ref = limit_fn(model, shapes, chunk)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)

        def lib(model=model) -> None:
            with torch.no_grad():
                model.weights(target=target)

        def lim(model=model, chunk=chunk) -> None:
            with torch.no_grad():
                limit_fn(model, shapes, chunk)

        t = interleaved({"limit": lim, "hyperdnn": lib}, rounds=args.rounds, warmup=1, segment_s=0.0)
        timing[chunk] = {"limit_s": t["limit"].median, "hyperdnn_s": t["hyperdnn"].median, "ratio": t["hyperdnn"].ratio}
        print(f"chunk {chunk}: limit {t['limit'].median:.3f} s, hyperdnn {t['hyperdnn'].median:.3f} s, "
              f"ratio {t['hyperdnn'].ratio:.3f}", flush=True)

    memory = []
    for width in (int(w) for w in args.memory_widths.split(",")):
        for chunk in chunks:
            for impl in ("limit", "hyperdnn"):
                memory.append(_memory_in_subprocess(impl, width, chunk, hidden, args.threads, args.encoding))
                m = memory[-1]
                print(f"memory {impl} width {width} chunk {chunk}: {m['peak_bytes'] / 2**20:.1f} MiB "
                      f"= {m['ratio']:.2f}x the target ({m['target_bytes'] / 2**20:.1f} MiB)", flush=True)

    print(f"\n### Generating a {numel:,}-parameter target (LeNet width {args.width}, {args.encoding} encoding), {args.threads} thread(s), no autograd\n")
    print(md_table(["chunk (rows)", "limit s", "hyperdnn s", "ratio (median of rounds)"],
                   [[str(c), f"{r['limit_s']:.3f}", f"{r['hyperdnn_s']:.3f}", f"{r['ratio']:.3f}x"] for c, r in timing.items()]))
    print("\n### Peak resident memory of one generation / the target's size\n")
    print(md_table(["target width", "parameters", "chunk", "limit", "hyperdnn"],
                   [[str(w), f"{next(m['target_bytes'] for m in memory if m['width'] == w) // 4:,}", str(c),
                     *[f"{m['ratio']:.2f}x ({m['peak_bytes'] / 2**20:.1f} MiB)" for m in memory
                       if m["width"] == w and m["chunk"] == c]]
                    for w in sorted({m["width"] for m in memory}) for c in chunks]))
    out = write_record(
        args.out,
        "python -m benchmarks.implicit_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        workload={"width": args.width, "parameters": numel, "hidden": list(hidden), "num_freqs": 16, "threads": args.threads,
                  "encoding": args.encoding},
        timing_by_chunk={str(c): r for c, r in timing.items()},
        memory=memory,
        goal="time <= 1.2x the limit; peak memory <= 1.5x the target's size",
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
