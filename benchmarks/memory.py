"""Workload 4: generate GPT-2 small's theta once; wall time and peak resident memory.

Each measurement runs in its own subprocess (``python -m benchmarks.memory IMPL VARIANT``),
so one implementation's freed-but-kept memory never counts against the next. Peak memory is
the rise of the process's resident-set high-water mark over its resident set just before the
call: the kernel's mark is reset with ``/proc/self/clear_refs`` (value 5) after the
hypernetwork is built, so building it (and any target copy) is excluded.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import statistics
import sys
import threading
import time
from typing import Callable

import torch
from torch import Tensor, nn

from .spec import GPT2Shapes, HyperSpec, body_mlp, gpt2_small_shapes
from .subject import Unavailable

HYPER = HyperSpec(chunk_size=4000, chunk_dim=8, rank=4)
VARIANTS = ("chunked", "lowrank")
IMPLS = ("limit", "hyperdnn", "hypnettorch", "hyperlight", "hyper-nn")
#: (impl, variant) pairs the library does not offer: reported without starting a subprocess
NOT_OFFERED = {
    ("hyperlight", "chunked"): "hyperlight has no chunk-wise output",
    ("hyperlight", "lowrank"): "hyperlight has no low-rank output",
    ("hypnettorch", "lowrank"): "hypnettorch has no low-rank output",
    ("hyper-nn", "lowrank"): "hyper-nn has no low-rank output",
}


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+)", f.read(), re.M).group(1))


class PeakRSS:
    """Peak resident memory (bytes) above the level at ``__enter__``."""

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self.base = _status_kb("VmRSS")
        self._sampler = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.method = "VmHWM after clear_refs"
        except OSError:
            # No clear_refs: sample VmRSS every millisecond instead.
            self.method = "VmRSS sampled every 1 ms"
            self._max, self._stop = self.base, threading.Event()

            def sample() -> None:
                while not self._stop.is_set():
                    self._max = max(self._max, _status_kb("VmRSS"))
                    time.sleep(0.001)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            peak = self._max
        else:
            peak = _status_kb("VmHWM")
        self.peak_bytes = (peak - self.base) * 1024
        self.base_bytes = self.base * 1024


# ------------------------------------------------------------------ generators


class LimitChunked(nn.Module):
    """[task emb, chunk emb] -> body -> head, flattened and cut into views."""

    def __init__(self, shapes: list[tuple[str, tuple[int, ...]]], h: HyperSpec) -> None:
        super().__init__()
        self.shapes = shapes
        self.numel = sum(math.prod(s) for _, s in shapes)
        n = math.ceil(self.numel / h.chunk_size)
        self.emb = nn.Embedding(h.num_tasks, h.task_dim)
        self.chunk_emb = nn.Parameter(torch.randn(n, h.chunk_dim))
        self.body = body_mlp(h.task_dim + h.chunk_dim, h.body)
        self.head = nn.Linear(h.body[-1], h.chunk_size)
        self.task = h.task

    def forward(self) -> dict[str, Tensor]:
        n = self.chunk_emb.shape[0]
        tokens = torch.cat([self.emb.weight[self.task].expand(n, -1), self.chunk_emb], 1)  # (n, 16)
        flat = self.head(self.body(tokens)).view(-1)  # (n * chunk_size,), P used
        sizes = [math.prod(s) for _, s in self.shapes]
        pieces = torch.split(flat, sizes + [flat.numel() - self.numel])
        return {name: p.view(s) for (name, s), p in zip(self.shapes, pieces)}


class LimitLowRank(nn.Module):
    """emb -> body -> one head giving A (out, r), B (in, r) per matrix and vectors whole; W = A B^T."""

    def __init__(self, shapes: list[tuple[str, tuple[int, ...]]], h: HyperSpec) -> None:
        super().__init__()
        self.shapes, self.r = shapes, h.rank
        self.widths = [h.rank * (s[0] + math.prod(s[1:])) if len(s) >= 2 else math.prod(s) for _, s in shapes]
        self.emb = nn.Embedding(h.num_tasks, h.task_dim)
        self.body = body_mlp(h.task_dim, h.body)
        self.head = nn.Linear(h.body[-1], sum(self.widths))
        self.task = h.task

    def forward(self) -> dict[str, Tensor]:
        out = self.head(self.body(self.emb.weight[self.task]))  # (sum widths,)
        theta = {}
        for (name, s), y in zip(self.shapes, torch.split(out, self.widths)):
            if len(s) >= 2:
                a = y[: s[0] * self.r].view(s[0], self.r)
                b = y[s[0] * self.r :].view(-1, self.r)
                theta[name] = (a @ b.t()).view(s)
            else:
                theta[name] = y.view(s)
        return theta


def build(impl: str, variant: str) -> tuple[nn.Module, Callable[[], object]]:
    """The hypernetwork (holding phi) and a zero-argument call that generates theta."""
    shapes, h = gpt2_small_shapes(), HYPER
    if impl == "limit":
        m = (LimitChunked if variant == "chunked" else LimitLowRank)(shapes, h)
        return m, m
    if impl == "hyperdnn":
        from .hyperdnn_adapter import _api

        hd = _api()
        with torch.device("meta"):
            target = GPT2Shapes()
        outputs = hd.ChunkWise(chunk_size=h.chunk_size, chunk_dim=h.chunk_dim) if variant == "chunked" else hd.LowRank(rank=h.rank)
        m = hd.HyperDNN(target, inputs=hd.TaskEmbedding(num_tasks=h.num_tasks, dim=h.task_dim), outputs=outputs, body=hd.MLP(hidden=h.body))
        return m, lambda: m.weights(task=h.task)
    if (impl, variant) in NOT_OFFERED:
        raise Unavailable("n/a", NOT_OFFERED[impl, variant])
    if impl == "hypnettorch":
        from .peers import import_peer

        import_peer("hypnettorch")
        from hypnettorch.hnets import ChunkedHMLP

        m = ChunkedHMLP([list(s) for _, s in shapes], chunk_size=h.chunk_size, chunk_emb_size=h.chunk_dim,
                        cond_in_size=h.task_dim, layers=h.body, num_cond_embs=h.num_tasks, verbose=False)
        return m, lambda: m.forward(cond_id=h.task)
    if impl == "hyper-nn":
        from .peers import import_peer

        import_peer("hyper-nn")
        from hypernn.torch.utils import FunctionalParamVectorWrapper

        # hyper-nn's generate_params returns one flat vector; its wrapper views it per parameter.
        gen = LimitChunked(shapes, h)
        with torch.device("meta"):
            target = GPT2Shapes()
        try:
            wrapper = FunctionalParamVectorWrapper(target)
        except Exception as exc:  # noqa: BLE001
            raise Unavailable("refuses", f"FunctionalParamVectorWrapper on a meta target: {type(exc).__name__}: {exc}") from None

        def generate() -> list[Tensor]:
            n = gen.chunk_emb.shape[0]
            tokens = torch.cat([gen.emb.weight[h.task].expand(n, -1), gen.chunk_emb], 1)
            vec = gen.head(gen.body(tokens)).view(-1)
            out, start = [], 0
            for p in wrapper.named_params[0]:  # FunctionalParamVectorWrapper.forward's slicing
                end = start + int(math.prod(p.size()))
                out.append(vec[start:end].view(p.size()))
                start = end
            return out

        return gen, generate
    raise Unavailable("n/a", f"unknown implementation {impl}")


def _numel(theta: object) -> int:
    vals = theta.values() if isinstance(theta, dict) else theta
    return sum(t.numel() for t in vals)


def measure(impl: str, variant: str, repeats: int = 5) -> dict:
    """Builds, then generates theta ``repeats`` times; peak memory of the first call."""
    theta_bytes = sum(math.prod(s) for _, s in gpt2_small_shapes()) * 4
    out: dict = {"impl": impl, "variant": variant, "threads": torch.get_num_threads(), "theta_mb": theta_bytes / 2**20}
    try:
        model, generate = build(impl, variant)
    except Unavailable as u:
        return {**out, "status": u.status, "reason": u.reason}
    out["phi_mb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    times = []
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        theta = generate()
        times.append(time.perf_counter() - t0)
    n = _numel(theta)
    if n != theta_bytes // 4:
        return {**out, "status": "wrong", "reason": f"generated {n} numbers, expected {theta_bytes // 4}"}
    del theta
    for _ in range(repeats - 1):
        gc.collect()
        t0 = time.perf_counter()
        theta = generate()
        times.append(time.perf_counter() - t0)
        del theta
    return {
        **out, "status": "ok", "peak_mb": peak.peak_bytes / 2**20, "peak_vs_theta": peak.peak_bytes / theta_bytes,
        "baseline_mb": peak.base_bytes / 2**20, "seconds": statistics.median(times), "first_seconds": times[0],
        "method": peak.method,
    }


def run_all(threads: int, impls: tuple[str, ...] = IMPLS, log: Callable[[str], None] = print, timeout: float = 240) -> list[dict]:
    """Runs every (impl, variant) in a fresh subprocess; returns their results."""
    import subprocess

    results = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), _src_dir()) if p)}
    for variant in VARIANTS:
        for impl in impls:
            if (impl, variant) in NOT_OFFERED:
                results.append({"impl": impl, "variant": variant, "status": "n/a", "reason": NOT_OFFERED[impl, variant]})
                continue
            cmd = [sys.executable, "-m", "benchmarks.memory", impl, variant, "--threads", str(threads)]
            t0 = time.perf_counter()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=_root_dir())
                line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
                res = json.loads(line[-1]) if line else {
                    "impl": impl, "variant": variant, "status": "error",
                    "reason": (p.stderr.strip().splitlines() or ["no output"])[-1][:200],
                }
            except subprocess.TimeoutExpired:
                res = {"impl": impl, "variant": variant, "status": "error", "reason": f"timed out after {timeout:.0f}s"}
            log(f"  {variant:8s} {impl:12s} {res.get('status')} ({time.perf_counter() - t0:.1f}s)")
            results.append(res)
    return results


def _root_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _src_dir() -> str:
    return os.path.join(_root_dir(), "src")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("impl", choices=IMPLS)
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(json.dumps(measure(a.impl, a.variant)))


if __name__ == "__main__":
    main()
