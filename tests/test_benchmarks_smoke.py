"""Smoke test of the benchmark harness: runs without peers, and its correctness check
catches a library that gives every sample the first sample's weights."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from benchmarks import limit, memory, report
from benchmarks.__main__ import main
from benchmarks.run import BUILDERS, check, data, run_workload
from benchmarks.spec import HyperSpec, TargetSpec, Workload, body_mlp, mlp_target_forward
from benchmarks.subject import Subject, Unavailable

TINY_T = TargetSpec(in_dim=12, hidden=6, out_dim=3)
TINY_H = HyperSpec(num_tasks=3, task_dim=4, body=(8,), chunk_size=16, chunk_dim=4, cond_dim=4, rank=2, task=1)


@pytest.fixture(autouse=True)
def _no_peers(monkeypatch):
    monkeypatch.setenv("HYPERDNN_BENCH_NO_PEERS", "1")
    torch.set_num_threads(1)


def tiny(key: str) -> Workload:
    return Workload(key, target=TINY_T, hyper=TINY_H, batch=6)


class FirstSampleWeights(nn.Module):
    """A dynamic hypernetwork with hyper-nn's fault: the batch gets sample 0's weights."""

    def __init__(self, wl: Workload) -> None:
        super().__init__()
        self.inner = limit.DynamicFull(wl)

    def forward(self, x):
        m = self.inner
        theta = m.head(m.body(m.encoder(x)))[0]  # (P,): sample 0 only, no error
        return mlp_target_forward(x, *limit.split_theta(theta, m.target))


def wrong_builder(wl: Workload) -> Subject:
    mod = FirstSampleWeights(wl)
    return Subject("wrong-lib", mod, mod.forward, lambda x: torch.cat([mod(x[i : i + 1]) for i in range(len(x))]))


def refusing_builder(wl: Workload) -> Subject:
    def forward(x):
        raise AssertionError("parameter tensor shape mismatch")

    return Subject("refusing-lib", nn.Linear(1, 1), forward, forward)


@pytest.mark.parametrize("key", ["static_full", "static_chunked", "dynamic_full", "dynamic_lowrank"])
def test_harness_runs_without_peers(key):
    rows = {r.name: r for r in run_workload(tiny(key), rounds=2, log=lambda m: None)}
    assert rows["limit"].status == "ok" and rows["limit"].ratio == pytest.approx(1.0)
    assert rows["limit"].ms > 0
    for peer in ("hypnettorch", "hyperlight", "hyper-nn"):
        assert rows[peer].status == "missing", rows[peer]
    hd = rows["hyperdnn"]
    if hd.status != "missing":  # hyperdnn is importable in a checkout with src/ on the path
        assert hd.status == "ok", hd
        assert hd.n_params == rows["limit"].n_params  # same math, same parameter count
    assert ("limit-dense" in rows) == (key == "dynamic_lowrank")


def test_check_catches_first_sample_weights_and_refusal(monkeypatch):
    wl = tiny("dynamic_full")
    x, _ = data(wl)
    check(limit.build(wl), wl, x)  # the right answer passes
    with pytest.raises(Unavailable) as e:
        check(wrong_builder(wl), wl, x)
    assert e.value.status == "wrong"
    with pytest.raises(Unavailable) as e:
        check(refusing_builder(wl), wl, x)
    assert e.value.status == "refuses"
    monkeypatch.setitem(BUILDERS, "wrong-lib", wrong_builder)
    rows = {r.name: r for r in run_workload(wl, names=["limit", "wrong-lib"], rounds=2, log=lambda m: None)}
    assert rows["wrong-lib"].status == "wrong" and rows["wrong-lib"].ms is None  # never timed


def test_limit_matches_a_plain_loop():
    """The hand-written dynamic limit equals running the target once per sample by hand."""
    wl = tiny("dynamic_full")
    torch.manual_seed(0)
    m = limit.DynamicFull(wl)
    x, _ = data(wl)
    ref = []
    for i in range(x.shape[0]):
        theta = m.head(m.body(m.encoder(x[i])))
        w1, b1, w2, b2 = limit.split_theta(theta, wl.target)
        ref.append(torch.relu(x[i] @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(m(x), torch.stack(ref), rtol=1e-5, atol=1e-5)
    lr = limit.DynamicLowRank(wl)
    lr_dense = limit.DynamicLowRank(wl, dense=True)
    lr_dense.load_state_dict(lr.state_dict())
    torch.testing.assert_close(lr(x), lr_dense(x), rtol=1e-5, atol=1e-5)


def test_peak_rss_sees_an_allocation():
    with memory.PeakRSS() as p:
        t = torch.ones(16 * 2**20)  # 64 MiB
        del t
    assert p.peak_bytes >= 60 * 2**20


def test_main_writes_json_tables_and_plots(tmp_path):
    assert main(["--only", "1b", "--threads", "1", "--quick", "--impls", "limit", "hyperlight", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    rows = {r["name"]: r for r in res["timings"]["1"]["1b"]}
    assert rows["limit"]["status"] == "ok" and rows["hyperlight"]["status"] == "missing"
    assert "Workload 1b" in (tmp_path / "tables.md").read_text()
    curves = {"limit": {"x": [1, 2], "ms": [1.0, 2.0]}, "hyperlight": {"x": [1, 2], "ms": [None, None], "status": "refuses"}}
    report.plot_scaling(curves, "size", "t", tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_body_mlp_shapes():
    assert body_mlp(4, (8, 5))(torch.randn(3, 4)).shape == (3, 5)


def test_loop_detector():
    from benchmarks.run import loops_over_samples

    wl = tiny("dynamic_full")
    x, _ = data(wl)
    lim = limit.build(wl)
    assert not loops_over_samples(lim, x)
    looped = Subject("looped", lim.module, lim.loop_forward)
    assert loops_over_samples(looped, x)
    rows = {r.name: r for r in run_workload(wl, names=["limit", "hyperdnn"], rounds=2, log=lambda m: None)}
    assert "op count independent of batch" in rows["limit"].note
    if rows["hyperdnn"].status == "ok":
        assert "op count independent of batch" in rows["hyperdnn"].note
