"""One continual-learning training step on permuted-MNIST: does its cost grow with the task count?

The step of the ``permuted-mnist`` recipe (released configuration: target
1024-1000-1000-100, chunked hypernetwork 25-25 ELU, chunks of 78,000) while
learning task ``n + 1``: task loss and backward, the Adam look-ahead, the output
regularizer over the ``n`` earlier tasks and its backward, the Adam update.
Timed side by side in interleaved rounds (median of per-round ratios to the
step with no earlier task, which has no regularizer):

- ``no earlier task``: the step of task 1 (task loss only), the reference;
- ``per-task formula, n``: the regularizer made the straightforward way, all ``n``
  earlier tasks' weights in one batched hypernetwork call and
  ``sum ||theta_k - target_k||^2`` over them (``output_regularizer`` without
  factors; what the library did before): its cost grows with ``n``;
- ``hyperdnn, n``: ``ContinualLearning``'s default, the same regularizer from Gram
  matrices of the hypernetwork's head (``methods/continual/chunk_factors.py``),
  whose cost does not grow with ``n``.

Both regularizers give the same value and gradients up to fp32 rounding (checked
before timing; ``tests/test_continual_factors.py`` checks them against a per-task loop).
Goal (issue 16): the step with 9 earlier tasks at most 2x the step with none.

    .venv/bin/python -m benchmarks.cl_step_speed --threads 1,2 --tasks 1,4,9

Writes benchmarks/results/cl_step_speed.json with the command and git commit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.report import write_record
from benchmarks.timing import interleaved
from hyperdnn.methods.continual import adam_lookahead, output_regularizer, store_targets
from hyperdnn.methods.continual.chunk_factors import store_factors
from hyperdnn.experiments.recipes._continual import chunked_spec
from hyperdnn.experiments.recipes.permuted_mnist import Config
from hyperdnn.experiments.recipes.toy_regression import make_mlp

REFERENCE = "no earlier task"


def _step(model, opt, x, y, task, targets=None, factors=None):
    """One training step of task ``task`` (0-based; ``task`` earlier tasks regularized)."""
    head = slice(10 * task, 10 * task + 10)
    ids = torch.arange(task)

    def step() -> None:
        loss = F.cross_entropy(model(x, task=task)[:, head], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if task > 0:
            delta = adam_lookahead(model, opt)
            (0.1 * output_regularizer(model, targets, ids, delta, factors=factors)).backward()
        opt.step()

    return step


def run(threads: int, tasks: list[int], rounds: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = Config()

    class _Task:  # chunked_spec reads only len(tasks) for the embedding table
        num_outputs = 10

    spec = chunked_spec(cfg, [_Task()] * cfg.tasks, lambda: make_mlp([1024, 1000, 1000, 10 * cfg.tasks], "relu"), paper={})
    model = spec.make_model(spec.make_target())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x, y = torch.rand(cfg.batch_size, 1024), torch.randint(0, 10, (cfg.batch_size,))
    steps = {REFERENCE: _step(model, opt, x, y, 0)}
    for n in tasks:
        targets, factors = store_targets(model, n), store_factors(model, n)
        with torch.no_grad():  # the hypernetwork a little away from the stored targets, as after some steps
            for p in model.hypernetwork.outputs.parameters():
                p.add_(0.001 * torch.randn_like(p))
        # same value before timing
        opt.zero_grad(set_to_none=True)
        model(x, task=n)[:, 10 * n : 10 * n + 10].sum().backward()
        delta = adam_lookahead(model, opt)
        a, b = output_regularizer(model, targets, torch.arange(n), delta), output_regularizer(model, targets, torch.arange(n), delta, factors=factors)
        if not torch.allclose(a, b, rtol=1e-4):
            raise SystemExit(f"the two regularizers differ with {n} earlier tasks: {a.item()} and {b.item()}")
        steps[f"per-task formula, {n}"] = _step(model, opt, x, y, n, targets)
        steps[f"hyperdnn, {n}"] = _step(model, opt, x, y, n, targets, factors)
    timings = interleaved(steps, rounds=rounds, warmup=1, segment_s=0.0, reference=REFERENCE)
    return {name: {"s": t.median, "ratio": t.ratio, "q1_q3": list(t.spread())} for name, t in timings.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--tasks", default="1,4,9", help="comma-separated numbers of earlier tasks (default 1,4,9)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "cl_step_speed.json"))
    args = p.parse_args(argv)
    results: dict[str, dict] = {}
    tasks = [int(t) for t in args.tasks.split(",")]
    for th in (int(t) for t in args.threads.split(",")):
        print(f"\n### permuted-MNIST training step, {th} thread(s): s / step (x the step with no earlier task, median of rounds)\n")
        print("| earlier tasks | per-task formula | hyperdnn (Gram matrices) |")
        print("|---|---|---|")
        r = run(th, tasks, args.rounds)
        results[f"{th} threads"] = r
        print(f"| 0 | {r[REFERENCE]['s']:.3f} (1x) | {r[REFERENCE]['s']:.3f} (1x) |")
        for n in tasks:
            a, b = r[f"per-task formula, {n}"], r[f"hyperdnn, {n}"]
            print(f"| {n} | {a['s']:.3f} ({a['ratio']:.2f}x) | {b['s']:.3f} ({b['ratio']:.2f}x) |", flush=True)
    out = write_record(args.out, "python -m benchmarks.cl_step_speed " + " ".join(sys.argv[1:] if argv is None else argv), results=results)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
