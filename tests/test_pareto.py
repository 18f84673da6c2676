"""Pareto-front learning (hyperdnn.methods.pareto): each piece against a hand value or a hand-written loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.methods import pareto as P


# ---------------------------------------------------------------- preferences


def test_dirichlet_draws_are_numpys_and_on_the_simplex():
    got = P.sample_dirichlet(4, 3, 0.2, rng=np.random.default_rng(7))
    want = np.random.default_rng(7).dirichlet([0.2, 0.2, 0.2], size=4)
    assert got.dtype == torch.float32 and got.shape == (4, 3)
    assert np.allclose(got.numpy(), want, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(4), atol=1e-6) and (got >= 0).all()


def test_dirichlet_moments_match_the_closed_form():
    # Dirichlet(a, a): mean 1/2, variance a*a / ((2a)^2 (2a + 1)) = 1 / (4 (2a + 1))
    a = 0.2
    r = P.sample_dirichlet(40000, 2, a, rng=np.random.default_rng(0))[:, 0].double()
    assert abs(float(r.mean()) - 0.5) < 0.01
    assert abs(float(r.var()) - 1 / (4 * (2 * a + 1))) < 0.01


@pytest.mark.parametrize("kw", [dict(count=0, objectives=2), dict(count=2, objectives=1), dict(count=2, objectives=2, alpha=0.0),
                                dict(count=2, objectives=2, alpha=float("nan")), dict(count=True, objectives=2)])
def test_dirichlet_refuses_bad_arguments(kw):
    with pytest.raises(hd.ConfigError, match="sample_dirichlet"):
        P.sample_dirichlet(**kw)


def test_circle_rays_are_phns_test_rays():
    rays = P.circle_rays(25)
    t = np.linspace(0.1, math.pi / 2 - 0.1, 25)
    want = np.stack([np.cos(t), np.sin(t)], 1)
    want /= want.sum(1, keepdims=True)
    assert np.allclose(rays.numpy(), want, atol=1e-6)


# ---------------------------------------------------------------- scalarisations


def test_linear_scalarization_hand_value():
    assert float(P.linear_scalarization(torch.tensor([0.5, 2.0]), torch.tensor([0.3, 0.7]))) == pytest.approx(0.3 * 0.5 + 0.7 * 2.0)
    batch = P.linear_scalarization(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    assert batch.tolist() == pytest.approx([1.5, 3.0])
    with pytest.raises(hd.ShapeError, match="2 objectives but the preference has 3"):
        P.linear_scalarization(torch.ones(2), torch.ones(3) / 3)


def test_tchebycheff_hand_value():
    v = P.tchebycheff(torch.tensor([1.0, 3.0]), torch.tensor([0.25, 0.75]), torch.tensor([0.0, 1.0]))
    assert float(v) == pytest.approx(max(0.25 * 1.0, 0.75 * 2.0))


# ---------------------------------------------------------------- EPO


def test_epo_balances_towards_the_larger_weighted_loss():
    # l = (2, 1), r = (1, 1), orthogonal gradients: mu > 0, (C a) = a = (+, -): all weight on loss 1
    sol = P.epo_weights([2.0, 1.0], [1.0, 1.0], np.eye(2))
    l_hat = np.array([2, 1]) / 3
    assert sol.mode == "balance"
    assert sol.non_uniformity == pytest.approx(float(np.sum(l_hat * np.log(2 * l_hat))))
    assert np.allclose(sol.weights, [2.0, 0.0], atol=1e-9)


def test_epo_descends_when_on_the_ray():
    # On the ray (r*l uniform): maximise 1^T C alpha with C alpha >= 0. For C = [[1, -.5], [-.5, 4]]
    # the objective is .5 a0 + 3.5 a1 and the first row needs a0 >= a1 / 2: alpha = (1/3, 2/3), beta = 2 alpha.
    sol = P.epo_weights([1.0, 1.0], [1.0, 1.0], np.array([[1.0, -0.5], [-0.5, 4.0]]))
    assert sol.mode == "descent"
    assert np.allclose(sol.weights, [2 / 3, 4 / 3], atol=1e-7)


def test_epo_loss_uses_the_gram_of_the_parameter_gradients():
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    a, b = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, -1.0])
    losses = torch.stack([(w @ a) ** 2 + 1, (w @ b) ** 2 + 0.5])
    r = torch.tensor([0.4, 0.6])
    total, sol = P.epo_loss(losses, r, [w])
    g1, g2 = 2 * (w @ a) * a, 2 * (w @ b) * b
    G = torch.stack([g1, g2]).detach().double()
    want = P.epo_weights(losses.detach().double().numpy(), r.double().numpy(), (G @ G.T).numpy())
    assert np.allclose(sol.weights, want.weights) and sol.mode == want.mode
    assert float(total.detach()) == pytest.approx(float((losses.detach() * torch.tensor(want.weights, dtype=torch.float32)).sum()), rel=1e-6)


# ---------------------------------------------------------------- hypervolume


def test_hypervolume_hand_computed_2d():
    # (1,3), (2,2), (3,1) up to (4,4): columns x in [1,2] height 1, [2,3] height 2, [3,4] height 3
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert P.hypervolume(pts, (4, 4)) == pytest.approx(6.0)
    # a dominated point and a point beyond the reference add nothing
    assert P.hypervolume(np.vstack([pts, [[3.5, 3.5], [0.5, 5.0]]]), (4, 4)) == pytest.approx(6.0)
    assert P.hypervolume(np.array([[5.0, 1.0]]), (4, 4)) == 0.0
    with pytest.raises(hd.ShapeError):
        P.hypervolume(pts, (4, 4, 4))


# ---------------------------------------------------------------- SVGD


def test_one_svgd_step_equals_the_hand_written_two_particle_update():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e = math.exp(-1.0)  # k(x1, x2) with h = 1
    # phi_i = 1/2 sum_j [k(x_j, x_i) s_j + grad_{x_j} k(x_j, x_i)],  grad_{x_j} k = -2 (x_j - x_i) k
    phi1 = 0.5 * (torch.tensor([1.0, 0.0]) + e * torch.tensor([0.0, 1.0]) - 2 * e * torch.tensor([1.0, 0.0]))
    phi2 = 0.5 * (e * torch.tensor([1.0, 0.0]) + torch.tensor([0.0, 1.0]) + 2 * e * torch.tensor([1.0, 0.0]))
    got = P.svgd_direction(x, s, bandwidth=1.0)
    assert torch.allclose(got, torch.stack([phi1, phi2]), atol=1e-6)


def test_svgd_median_bandwidth_is_numpys_median_over_log_n_plus_1():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    d2 = (x - x.T).pow(2).flatten().numpy()
    assert float(P.rbf_bandwidth(x)) == pytest.approx(np.median(d2) / math.log(4))


def test_svgd_repels_particles_without_a_drive():
    x = torch.tensor([[0.0], [0.5]])
    phi = P.svgd_direction(x, torch.zeros(2, 1), bandwidth=1.0)
    assert phi[0, 0] < 0 < phi[1, 0]


def test_stein_loss_gradient_equals_the_hand_written_two_particle_update():
    # particles v = (0, 1), losses v_j^2, kernel exp(-(v_i - v_j)^2) (h = 1), repulsion alpha:
    # d/dv_j = 1/2 [ (sum_i K_ij) 2 v_j + alpha d/dv_j sum_ij K_ij ], d/dv_1 sum K = 2 K_12 (-2)(v_1 - v_2)
    alpha, e = 0.3, math.exp(-1.0)
    v = torch.tensor([0.0, 1.0], requires_grad=True)
    K = torch.exp(-(v[:, None] - v[None, :]) ** 2)
    P.stein_loss(v**2, K, alpha).backward()
    want = [0.5 * (alpha * 2 * e * (-2) * (0 - 1)), 0.5 * ((1 + e) * 2 * 1 + alpha * 2 * e * (-2) * (1 - 0))]
    assert v.grad.tolist() == pytest.approx(want)


def test_local_kernel_is_svh_psls_per_objective_kernel():
    values = torch.tensor([[0.0, 1.0], [0.5, 0.2], [2.0, 0.0]], dtype=torch.float64)
    active = torch.tensor([1, 0, 1])
    got = P.local_kernel(values, active, c=1.0)
    v = values.numpy()
    h = []
    for k in range(2):
        d2 = (v[:, None, k] - v[None, :, k]) ** 2
        h.append(np.median(d2) ** 2 / math.log(3))
    want = np.array([[math.exp(-((v[i, active[i]] - v[j, active[i]]) ** 2) / h[active[i]]) for j in range(3)] for i in range(3)])
    assert np.allclose(got.numpy(), want)


# ---------------------------------------------------------------- the preference input


def _pref_model() -> hd.HyperDNN:
    torch.manual_seed(0)
    return hd.HyperDNN(nn.Linear(3, 2), inputs=P.Preference(2), body=hd.MLP(hidden=(8,)))


def test_preference_input_refuses_vectors_off_the_simplex():
    model = _pref_model()
    x = torch.randn(4, 3)
    with pytest.raises(hd.ConfigError, match=r"sums to 1\.2.*simplex.*r / r\.sum"):
        model(x, preference=torch.tensor([0.6, 0.6]))
    with pytest.raises(hd.ConfigError, match=r"negative entry -0\.5"):
        model(x, preference=torch.tensor([1.5, -0.5]))
    with pytest.raises(hd.ConfigError, match="NaN"):
        model(x, preference=torch.tensor([float("nan"), 1.0]))
    with pytest.raises(hd.ConfigError, match=r"sums to 0\.5"):
        model(x, preference=torch.tensor([[0.5, 0.5], [0.25, 0.25], [1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(hd.ShapeError, match=r"shape \(3,\); expected \(2,\) or \(B, 2\)"):
        model(x, preference=torch.ones(3) / 3)
    with pytest.raises(hd.HDTypeError, match="floating"):
        model(x, preference=torch.tensor([1, 0]))
    with pytest.raises(hd.ConfigError, match="needs preference="):
        model(x)
    with pytest.raises(hd.ConfigError, match="at least 2"):
        P.Preference(1)


def test_preference_input_static_and_per_sample_agree():
    model = _pref_model()
    x = torch.randn(4, 3)
    r = torch.tensor([0.3, 0.7])
    static = model(x, preference=r)
    per_sample = model(x, preference=r.expand(4, 2))
    assert torch.allclose(static, per_sample, atol=1e-6)
    w = model.weights(preference=r)
    assert torch.allclose(static, F.linear(x, w["weight"], w["bias"]), atol=1e-6)


def test_preference_config_round_trips(tmp_path):
    model = _pref_model()
    hd.save(model, tmp_path / "m")
    loaded = hd.load(tmp_path / "m", target=nn.Linear(3, 2))
    x, r = torch.randn(2, 3), torch.tensor([0.5, 0.5])
    assert torch.equal(loaded(x, preference=r), model(x, preference=r))


def test_the_pareto_extra_loads_only_when_used():
    import subprocess
    import sys

    code = ("import sys, hyperdnn; hyperdnn.methods.ParetoHyperNetwork; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'pymoo', 'gpytorch', 'moocore'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
