"""One continual-learning training step on permuted-MNIST: hyperdnn's regularizer vs the plain formula.

The step of the ``permuted-mnist`` recipe (released configuration: target
1024-1000-1000-100, chunked hypernetwork 25-25 ELU, chunks of 78,000) while
learning task ``n + 1``: task loss and backward, the Adam look-ahead, the output
regularizer over the ``n`` earlier tasks and its backward, the Adam update.
Two regularizers are timed side by side (interleaved rounds, median of per-round
ratios), both evaluated at phi + Delta phi:

- ``hyperdnn``: ``hyperdnn.methods.output_regularizer`` (tensor by tensor
  against column views of the stored targets, fused ``mse_loss``);
- ``plain formula``: the weights concatenated into one ``(n, P)`` matrix,
  ``(theta - targets[ids]).pow(2).sum(1).mean()``, as one writes it by hand
  (and as the released code does per task).

Both give the same value (checked before timing). The cost per step grows with
the number of earlier tasks, which is what makes the full permuted-MNIST run
long on a CPU.

    .venv/bin/python -m benchmarks.cl_step_speed --threads 1 --tasks 1,4,9

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
from hyperdnn.methods.continual import adam_lookahead, flat_weights, output_regularizer, store_targets
from hyperdnn.experiments.recipes._continual import chunked_spec
from hyperdnn.experiments.recipes.permuted_mnist import Config
from hyperdnn.experiments.recipes.toy_regression import make_mlp


def plain_regularizer(model, targets, ids, delta):
    """The regularizer as written by hand: one (n, P) matrix of generated weights."""
    outputs = model.hypernetwork.outputs
    params = {n: (p + delta[n].detach() if n in delta else p) for n, p in outputs.named_parameters()}
    theta = torch.func.functional_call(outputs, params, (model.condition(task=ids).z,))
    current = flat_weights(theta, [p.name for p in model.spec.params], groups=ids.shape[0])
    return (current - targets[ids]).pow(2).sum(dim=1).mean()


def _step(model, opt, targets, ids, x, y, head, reg_fn):
    def step() -> None:
        loss = F.cross_entropy(model(x, task=int(ids.shape[0]))[:, head], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        delta = adam_lookahead(model, opt)
        (0.1 * reg_fn(model, targets, ids, delta)).backward()
        opt.step()

    return step


def run(threads: int, n_prev: int, rounds: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = Config()

    class _Task:  # chunked_spec reads only len(tasks) for the embedding table
        num_outputs = 10

    spec = chunked_spec(cfg, [_Task()] * cfg.tasks, lambda: make_mlp([1024, 1000, 1000, 10 * cfg.tasks], "relu"), paper={})
    model = spec.make_model(spec.make_target())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    with torch.no_grad():
        targets = store_targets(model, n_prev) + 0.01 * torch.randn(n_prev, model.spec.numel)
    ids = torch.arange(n_prev)
    x, y = torch.rand(cfg.batch_size, 1024), torch.randint(0, 10, (cfg.batch_size,))
    head = slice(10 * n_prev, 10 * n_prev + 10)
    # same value before timing
    model(x, task=n_prev)[:, head].sum().backward()
    delta = adam_lookahead(model, opt)
    a, b = output_regularizer(model, targets, ids, delta), plain_regularizer(model, targets, ids, delta)
    assert torch.allclose(a, b, rtol=1e-4), (a.item(), b.item())
    steps = {
        "plain formula": _step(model, opt, targets, ids, x, y, head, plain_regularizer),
        "hyperdnn": _step(model, opt, targets, ids, x, y, head, output_regularizer),
    }
    timings = interleaved(steps, rounds=rounds, warmup=1, segment_s=0.0, reference="plain formula")
    return {name: {"s": t.median, "ratio": t.ratio, "q1_q3": list(t.spread())} for name, t in timings.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--tasks", default="1,4,9", help="comma-separated numbers of earlier tasks (default 1,4,9)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "cl_step_speed.json"))
    args = p.parse_args(argv)
    results: dict[str, dict] = {}
    for th in (int(t) for t in args.threads.split(",")):
        print(f"\n### permuted-MNIST training step with the regularizer, {th} thread(s)\n")
        print("| earlier tasks | plain formula, s / step | hyperdnn, s / step | hyperdnn / plain (median of rounds) |")
        print("|---|---|---|---|")
        for n in (int(t) for t in args.tasks.split(",")):
            r = run(th, n, args.rounds)
            results[f"{th} threads, {n} earlier tasks"] = r
            print(f"| {n} | {r['plain formula']['s']:.3f} | {r['hyperdnn']['s']:.3f} | {r['hyperdnn']['ratio']:.2f}x |", flush=True)
    out = write_record(args.out, "python -m benchmarks.cl_step_speed " + " ".join(sys.argv[1:] if argv is None else argv), results=results)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
