"""An implicit ensemble's k draws run batched against k separate calls, for an MLP and a small CNN.

A noise-conditioned HyperDNN makes k weight sets; the target then runs with all
of them. Timed side by side (interleaved rounds, median of per-round ratios to
the loop), in inference (``torch.no_grad``), for k = 1, 4, 16, 64 members and
batches of 32 and 512 inputs that every member sees:

- ``target``: the target alone, given the k generated weight sets:
  ``batched`` = ``model.run_target(x repeated k times, theta)`` (one call);
  ``loop`` = ``model.run_target(x, theta_i)`` for each member (k calls, the
  target's own forward); for the MLP also ``limit`` = the same network written
  by hand with ``torch.baddbmm`` on the k weight sets (x shared, not repeated);
- ``end to end``: noise to predictions, ``model(x, samples=z)`` (``batched``: in
  inference the HyperDNN runs the members in chunks by
  ``hyperdnn.batched.members.members_per_call``, on a CPU ``512 // batch`` members per
  call, one member as the target's own forward) and
  ``hd.methods.uncertainty.FixedMembers(model, z=z)(x)`` (``members``, the same
  rule) against ``model(x, samples=z[i])`` for each member (``loop``; each call
  makes its own weights); for the MLP also ``limit`` = the hypernetwork's call plus
  the hand-written network on its k weight sets.

Targets: MLP 784-100-100-10 (ReLU); CNN conv(1, 8, 5) - ReLU - maxpool 2 -
conv(8, 16, 5) - ReLU - maxpool 2 - linear(256, 10) on 28 x 28 inputs.
Hypernetwork: ``Noise(16)``, ``ChunkWise(4096, 16)``, MLP body (64,). The
convolutions run as one dense convolution per member on a CPU when each member
sees at least 16 rows (``hyperdnn.batched.linear_conv.loop_over_groups``), as a
grouped convolution otherwise.

    .venv/bin/python -m benchmarks.ensemble_speed --threads 1

Writes benchmarks/results/ensemble_speed.json with the command and git commit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import hyperdnn as hd
from benchmarks.report import md_table, write_record
from benchmarks.timing import interleaved
from hyperdnn.batched.members import members_per_call
from hyperdnn.methods.uncertainty import FixedMembers


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(256, 10))


TARGETS: dict[str, Callable[[], nn.Module]] = {"MLP": mlp, "CNN": cnn}


def mlp_limit(theta: dict[str, Tensor], x: Tensor) -> Tensor:
    """The MLP by hand on k weight sets: ``(k, B, 10)``; x ``(B, 784)`` is shared, not repeated."""
    h = x.flatten(1)
    for i, name in enumerate(("1", "3", "5")):
        w, b = theta[f"{name}.weight"], theta[f"{name}.bias"]  # (k, out, in), (k, out)
        h = torch.baddbmm(b.unsqueeze(1), h.expand(w.shape[0], *h.shape[-2:]) if h.dim() == 2 else h, w.transpose(1, 2))
        if i < 2:
            h = F.relu(h)
    return h


def run_case(name: str, k: int, batch: int, rounds: int) -> dict:
    torch.manual_seed(0)
    model = hd.HyperDNN(TARGETS[name](), inputs=hd.Noise(16), outputs=hd.ChunkWise(4096, 16), body=hd.MLP(hidden=(64,)))
    model.eval()
    x = torch.randn(batch, 1, 28, 28)
    z = torch.randn(k, 16)
    with torch.no_grad():
        theta = model.weights(samples=z)
        singles = [{n: t[i] for n, t in theta.items()} for i in range(k)]
        xk = x.repeat(k, 1, 1, 1)
        ref = torch.stack([model.run_target(x, s) for s in singles])
        got = model.run_target(xk, theta).unflatten(0, (k, batch))
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)  # same numbers before timing
        if name == "MLP":
            torch.testing.assert_close(mlp_limit(theta, x), ref, atol=1e-4, rtol=1e-4)

    fixed = FixedMembers(model, z=z)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), model(x, samples=z), atol=1e-4, rtol=1e-4)

    def nograd(fn: Callable[[], object]) -> Callable[[], object]:
        def step() -> object:
            with torch.no_grad():
                return fn()
        return step

    target_steps = {
        "loop": nograd(lambda: [model.run_target(x, s) for s in singles]),
        "batched": nograd(lambda: model.run_target(x.repeat(k, 1, 1, 1), theta)),
    }
    if name == "MLP":
        target_steps["limit"] = nograd(lambda: mlp_limit(theta, x))
    e2e_steps = {
        "loop": nograd(lambda: [model(x, samples=z[i]) for i in range(k)]),
        "batched": nograd(lambda: model(x, samples=z)),
        "members": nograd(lambda: fixed(x)),
    }
    if name == "MLP":
        e2e_steps["limit"] = nograd(lambda: mlp_limit(model.weights(samples=z), x))
    out = {}
    for part, steps in (("target", target_steps), ("end to end", e2e_steps)):
        t = interleaved(steps, rounds=rounds, warmup=1, segment_s=0.05, reference="loop")
        out[part] = {n: {"s": v.median, "ratio_to_loop": v.ratio, "q1_q3": list(v.spread())} for n, v in t.items()}
    if name == "MLP":
        lim = out["target"]["limit"]["s"]
        out["target"]["batched"]["ratio_to_limit"] = out["target"]["batched"]["s"] / lim
        e2e = out["end to end"]
        e2e["batched"]["ratio_to_limit"] = e2e["batched"]["s"] / e2e["limit"]["s"]
    out["members per call"] = members_per_call(k, batch, x.device)
    if name == "CNN":
        from hyperdnn.batched.linear_conv import loop_over_groups

        out["conv execution"] = "loop over members" if loop_over_groups(xk, k) else "grouped convolution"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--members", default="1,4,16,64", help="comma-separated k (default 1,4,16,64)")
    p.add_argument("--batches", default="32,512", help="comma-separated batch sizes (default 32,512)")
    p.add_argument("--targets", default="MLP,CNN")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ensemble_speed.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    rows = []
    for name in args.targets.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for k in (int(m) for m in args.members.split(",")):
                r = run_case(name, k, batch, args.rounds)
                results[f"{name}, k={k}, batch={batch}"] = r
                tg, e2e = r["target"], r["end to end"]
                rows.append([name, str(k), str(batch), f"{tg['loop']['s'] * 1e3:.2f}", f"{tg['batched']['s'] * 1e3:.2f}",
                             f"{tg['batched']['ratio_to_loop']:.2f}x",
                             f"{tg['batched']['ratio_to_limit']:.2f}x" if "ratio_to_limit" in tg['batched'] else r.get("conv execution", ""),
                             f"{e2e['loop']['s'] * 1e3:.2f}", f"{e2e['batched']['s'] * 1e3:.2f}", f"{e2e['batched']['ratio_to_loop']:.2f}x",
                             f"{e2e['batched']['ratio_to_limit']:.2f}x" if "ratio_to_limit" in e2e['batched'] else "",
                             f"{e2e['members']['s'] * 1e3:.2f} ({r['members per call']} per call)", f"{e2e['members']['ratio_to_loop']:.2f}x"])
                print(" | ".join(rows[-1]), flush=True)
    header = ["target", "k", "batch", "target: loop ms", "target: batched ms", "batched / loop", "batched / limit (MLP) or conv execution (CNN)",
              "end to end: loop ms", "end to end: batched ms", "batched / loop", "batched / limit (MLP)", "FixedMembers ms", "FixedMembers / loop"]
    print(f"\n### k draws batched vs a loop over members, {args.threads} thread(s), no_grad\n")
    print(md_table(header, rows))
    command = "python -m benchmarks.ensemble_speed " + " ".join(sys.argv[1:] if argv is None else argv)
    out = write_record(args.out, command, threads=args.threads, results=results)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
