"""hd.methods.uncertainty metrics against closed forms, hand-written loops and torchmetrics."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import hyperdnn.methods.uncertainty as U
from hyperdnn.errors import ConfigError, ShapeError


def test_entropy_of_a_uniform_prediction_is_log_c() -> None:
    p = torch.full((3, 7), 1 / 7)
    assert torch.allclose(U.entropy(p), torch.full((3,), math.log(7)))
    assert torch.allclose(U.entropy(torch.eye(4)), torch.zeros(4))


def test_mutual_information_is_zero_for_identical_members_and_log_k_for_disjoint_certain_ones() -> None:
    p = torch.softmax(torch.randn(1, 5, 3), -1).expand(4, 5, 3)
    assert torch.allclose(U.mutual_information(p), torch.zeros(5), atol=1e-6)
    certain = torch.eye(3).unsqueeze(1)  # member i puts all mass on class i
    assert torch.allclose(U.mutual_information(certain), torch.tensor([math.log(3)]))
    with pytest.raises(ShapeError, match=r"\(k, N, C\)"):
        U.mutual_information(torch.rand(5, 3))


def test_nll_and_brier_equal_a_per_sample_loop() -> None:
    torch.manual_seed(0)
    mean = torch.softmax(torch.randn(50, 4), -1)
    y = torch.randint(0, 4, (50,))
    nll = sum(-math.log(mean[i, y[i]]) for i in range(50)) / 50
    brier = sum(sum((float(mean[i, c]) - float(c == int(y[i]))) ** 2 for c in range(4)) for i in range(50)) / 50
    assert U.negative_log_likelihood(mean, y) == pytest.approx(nll, rel=1e-5)
    assert U.brier_score(mean, y) == pytest.approx(float(brier), rel=1e-5)
    with pytest.raises(ShapeError, match="labels must be"):
        U.brier_score(mean, y[:3])


def test_ece_is_zero_for_a_perfectly_calibrated_predictor() -> None:
    # confidence 0.8 on 10 inputs, 8 of them right; confidence 0.6 on 5 inputs, 3 right
    mean = torch.tensor([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 5)
    y = torch.tensor([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2)
    assert U.calibration_error(mean, y) == pytest.approx(0.0, abs=1e-6)
    # and a miscalibrated one: all right at confidence 0.6 -> ECE 0.4
    assert U.calibration_error(torch.tensor([[0.6, 0.4]] * 4), torch.zeros(4, dtype=torch.long)) == pytest.approx(0.4)


def test_ece_equals_a_hand_written_binning_and_the_reliability_data() -> None:
    torch.manual_seed(1)
    mean = torch.softmax(3 * torch.randn(400, 5), -1)
    y = torch.randint(0, 5, (400,))
    conf, pred = mean.max(1)
    ece = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = [i for i in range(400) if lo < conf[i] <= hi]
        if inside:
            acc = sum(float(pred[i] == y[i]) for i in inside) / len(inside)
            c = sum(float(conf[i]) for i in inside) / len(inside)
            ece += len(inside) / 400 * abs(acc - c)
    assert U.calibration_error(mean, y) == pytest.approx(ece, abs=1e-5)
    r = U.reliability(mean, y)
    full = r.count > 0
    from_diagram = float((r.count[full] / 400 * (r.accuracy[full] - r.confidence[full]).abs()).sum())
    assert from_diagram == pytest.approx(ece, abs=1e-5)
    assert int(r.count.sum()) == 400


def test_auroc_and_aupr_of_separable_scores_are_one_and_match_a_pair_count() -> None:
    auroc, aupr = U.ood_auroc_aupr(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.9]))
    assert (auroc, aupr) == (pytest.approx(1.0), pytest.approx(1.0))
    auroc, _ = U.ood_auroc_aupr(torch.tensor([0.5, 0.9]), torch.tensor([0.1, 0.2, 0.3]))
    assert auroc == pytest.approx(0.0)
    torch.manual_seed(2)
    a, b = torch.randn(30), torch.randn(20) + 0.5
    pairs = sum(float(bj > ai) for ai in a for bj in b) / (30 * 20)
    assert U.ood_auroc_aupr(a, b)[0] == pytest.approx(pairs, abs=1e-5)
    with pytest.raises(ShapeError, match="non-empty 1-D"):
        U.ood_auroc_aupr(torch.tensor([]), b)


def _nets(k: int) -> list[nn.Module]:
    torch.manual_seed(3)
    return [nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)) for _ in range(k)]


def test_evaluate_a_list_of_networks_equals_the_metrics_written_out() -> None:
    nets = _nets(4)
    torch.manual_seed(4)
    x, y, xo = torch.randn(40, 6), torch.randint(0, 3, (40,)), 3 * torch.randn(30, 6)
    loader = [(x[:25], y[:25]), (x[25:], y[25:])]
    res = U.evaluate(nets, loader, ood=[xo])
    with torch.no_grad():
        probs = torch.stack([torch.softmax(n(x), -1) for n in nets])
        probs_o = torch.stack([torch.softmax(n(xo), -1) for n in nets])
    mean = probs.mean(0)
    assert res.members == 4
    assert res.accuracy == pytest.approx(float((mean.argmax(1) == y).float().mean()))
    assert res.nll == pytest.approx(float(-mean[torch.arange(40), y].log().mean()), rel=1e-5)
    mi = U.entropy(mean) - U.entropy(probs).mean(0)
    assert res.mutual_information == pytest.approx(float(mi.mean()), rel=1e-4)
    mi_o = U.entropy(probs_o.mean(0)) - U.entropy(probs_o).mean(0)
    assert res.ood["mutual_information"][0] == pytest.approx(U.ood_auroc_aupr(mi, mi_o)[0], rel=1e-5)
    assert set(res.row()) >= {"accuracy", "nll", "brier", "ece", "auroc_entropy", "aupr_max_prob"}


def test_evaluate_one_network_and_mc_dropout_go_through_the_same_code() -> None:
    net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    single = U.evaluate(net, (x, y))
    assert single.members == 1 and single.mutual_information == pytest.approx(0.0, abs=1e-6)
    net.train()
    mc = U.MCDropout(net, 8)
    res = U.evaluate(mc, (x, y))
    assert res.members == 8 and res.mutual_information > 1e-3  # masks differ
    assert net.training and net[2].training  # modes restored
    net.eval()
    mc(x)
    assert not net[2].training
    with pytest.raises(ConfigError, match="no nn.Dropout"):
        U.MCDropout(nn.Linear(2, 2), 4)
    with pytest.raises(ConfigError, match="samples=3 for a plain"):
        U.evaluate(net, (x, y), samples=3)


def test_importing_the_method_does_not_load_torchmetrics() -> None:
    code = ("import sys, hyperdnn, hyperdnn.methods.uncertainty as u; print('torchmetrics' in sys.modules); "
            "import torch; u.calibration_error(torch.tensor([[0.5, 0.5]]), torch.tensor([0])); "
            "print('torchmetrics' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]
