"""PSL / SVH-PSL model updates against the authors' code written out with loops (run_svh.py, SVGD/moosvgd.py, run_psl_mobo.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hyperdnn as hd
from hyperdnn.methods import pareto as P


def _objectives(x: torch.Tensor) -> torch.Tensor:
    """A smooth two-objective stand-in for the GPs' lower confidence bound: ``(n, d) -> (n, 2)``.

    Scaled by 1000 so that the particles' objective values differ by more than 1: the code's
    bandwidth ``c med(d^2)^2 / log n`` makes the kernel nearly the identity for small differences.
    """
    return 1000 * torch.stack([x.pow(2).sum(1) + 0.3 * x[:, 0], (x - 1).pow(2).sum(1) * (1 + 0.2 * x[:, -1])], 1)


def _setup(n: int = 4, dims: int = 3):
    torch.manual_seed(0)
    model = P.pareto_set_model(2, dims, hidden=(5, 4)).double()
    prefs = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.8, 0.2], [0.35, 0.65]], dtype=torch.float64)[:n]
    params = [p for p in model.parameters() if p.requires_grad]
    return model, prefs, params


def _flat(ts) -> torch.Tensor:
    return torch.cat([t.flatten() for t in ts])


def _authors_svh_gradient(model, prefs, shift, z, alpha, c) -> torch.Tensor:
    """run_svh.py lines 176-213 with moosvgd.get_gradient and kernel_functional_rbf_local, as the code writes them."""
    params = [p for p in model.parameters() if p.requires_grad]
    pref_vec = prefs + shift
    x = torch.sigmoid(model.weights(preference=prefs)["x"])
    value = _objectives(x)
    loss, idx = torch.max((value - z) * pref_vec, dim=1)
    grad = []
    for loss_ in loss:  # one backward per particle
        grad.append(_flat(torch.autograd.grad(loss_, params, retain_graph=True)))
    grad = torch.stack(grad)
    grad_1 = torch.nn.functional.normalize(grad, dim=0)
    n, m = value.shape
    ps = [(value[:, k, None] - value[None, :, k]).pow(2) for k in range(m)]
    new_ray = torch.zeros_like(pref_vec)
    for i in range(n):
        new_ray[i][idx[i]] = 1.0
    h = [c * float(np.median(p.detach().numpy())) ** 2 / math.log(n) for p in ps]
    kernel = new_ray[:, 0] * torch.exp(-ps[0] / h[0])  # (n,) * (n, n): weights the columns
    for k in range(1, m):
        kernel = kernel + new_ray[:, k] * torch.exp(-ps[k] / h[k])
    grad__ = torch.stack([_flat(torch.autograd.grad(row, params, retain_graph=True)) for row in kernel.sum(dim=1)])
    gradient = (kernel.detach().mm(grad_1) + alpha * grad__) / n
    return gradient.sum(dim=0)


def test_svh_update_equals_the_authors_loop():
    model, prefs, params = _setup()
    z = torch.tensor([-0.1, -0.2], dtype=torch.float64)
    want = _authors_svh_gradient(model, prefs, 1e-4, z, alpha=0.3, c=1.0)
    psl = P.ParetoSetLearning(lambda a: a, 3, 2, repulsion=0.3)
    x = torch.sigmoid(model.weights(preference=prefs)["x"])
    psl._svh_update(x, _objectives(x), prefs + 1e-4, z, params)
    got = _flat(p.grad for p in params)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    # the kernel weighting matters: local_kernel's own orientation (rows) gives another update here
    assert not torch.allclose(got, _authors_svh_gradient_rows(model, prefs, z), atol=1e-6)


def _authors_svh_gradient_rows(model, prefs, z) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.sigmoid(model.weights(preference=prefs)["x"])
    values = _objectives(x)
    losses, active = ((values - z) * (prefs + 1e-4)).max(dim=1)
    grads = torch.stack([_flat(torch.autograd.grad(l_, params, retain_graph=True)) for l_ in losses])
    grads = torch.nn.functional.normalize(grads, dim=0)
    kernel = P.local_kernel(values, active, 1.0)
    rep = _flat(torch.autograd.grad(kernel.sum(), params))
    return (kernel.detach().sum(0) @ grads + 0.3 * rep) / len(losses)


def test_psl_update_equals_psl_mobos_unit_tchebycheff_gradient():
    model, prefs, params = _setup()
    z = torch.tensor([-0.1, -0.2], dtype=torch.float64)
    pref_vec = prefs + 1e-4
    # run_psl_mobo.py lines 228-240: the gradient of the LCB values w.r.t. x, by hand per particle
    x = torch.sigmoid(model.weights(preference=prefs)["x"])
    xd = x.detach().requires_grad_(True)
    value = _objectives(xd)
    value_grad = torch.stack([torch.stack(list(torch.autograd.grad(value[:, k].sum(), xd, retain_graph=True)[0])) for k in range(2)], 1)  # (n, m, d)
    tch_idx = torch.argmax((1 / pref_vec) * (value - z), dim=1)
    rows = torch.arange(len(tch_idx))
    tch_grad = (1 / pref_vec)[rows, tch_idx].view(-1, 1) * value_grad[rows, tch_idx] + 0.01 * value_grad.sum(dim=1)
    tch_grad = tch_grad / torch.norm(tch_grad, dim=1)[:, None]
    want = _flat(torch.autograd.grad(x, params, grad_outputs=tch_grad.detach()))
    for p in params:
        p.grad = None
    x = torch.sigmoid(model.weights(preference=prefs)["x"])
    P.ParetoSetLearning._psl_update(x, _objectives(x), pref_vec, z)
    assert torch.allclose(_flat(p.grad for p in params), want, rtol=1e-10, atol=1e-12)


class _FakeGP:
    def lower_confidence_bound(self, x: torch.Tensor, beta: float = 0.1, uncertainty: str = "std") -> torch.Tensor:
        return _objectives(x)


def test_svh_keeps_the_step_with_the_best_predicted_hypervolume(monkeypatch):
    # predicted hypervolumes per step 1, 3, 2, 0.5: the model after step 2 is the one returned
    hvs = iter([1.0, 3.0, 2.0, 0.5])
    states = []

    def fake_hv(self, model, gp, front):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(hvs)

    monkeypatch.setattr(P.ParetoSetLearning, "_predicted_hypervolume", fake_hv)
    psl = P.ParetoSetLearning(lambda a: a, 3, 2, steps=4, particles=3, seed=0)
    psl._front = np.array([[1.0, 1.0]])
    torch.manual_seed(0)
    model = psl.train_model(_FakeGP(), torch.zeros(2, dtype=torch.float64), np.random.default_rng(0))
    got = model.state_dict()
    assert all(torch.equal(got[k], states[1][k]) for k in got)
    assert not all(torch.equal(got[k], states[3][k]) for k in got)


def test_predicted_hypervolume_is_the_codes_measure():
    # the reference point is the maximum over the evaluated front and the predictions, as in run_svh.py
    psl = P.ParetoSetLearning(lambda a: a, 3, 2, seed=0)
    torch.manual_seed(0)
    model = P.pareto_set_model(2, 3).double()
    prefs = torch.from_numpy(P.psl._test_preferences(2).copy())
    assert prefs.shape == (200, 2) and torch.allclose(prefs.sum(1), torch.ones(200, dtype=torch.float64))
    front = np.array([[0.5, 4.0], [3.0, 0.2]])
    with torch.no_grad():
        y = _objectives(torch.sigmoid(model.weights(preference=prefs)["x"])).numpy()
    ref = np.max(np.vstack([front, y]), axis=0)
    assert psl._predicted_hypervolume(model, _FakeGP(), front) == pytest.approx(P.hypervolume(y, ref))


def test_log_hypervolume_difference_floors_and_bases():
    y = np.array([[0.0, 1.0], [1.0, 0.0]])  # HV at (2, 2): 3
    assert P.log_hypervolume_difference(y, 3.5, np.array([2.0, 2.0])) == pytest.approx(math.log10(0.5))
    assert P.log_hypervolume_difference(y, 3.5, np.array([2.0, 2.0]), base=math.e) == pytest.approx(math.log(0.5))
    # a set beyond a discretised true front: the floor
    assert P.log_hypervolume_difference(y, 2.9, np.array([2.0, 2.0]), base=math.e, floor=1e-14) == pytest.approx(math.log(1e-14))
    with pytest.raises(hd.ConfigError, match="base"):
        P.log_hypervolume_difference(y, 3.5, np.array([2.0, 2.0]), base=1.0)


def test_gp_lcb_with_the_codes_variance_and_raw_outputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 2, generator=gen, dtype=torch.float64)
    y = torch.stack([4 + 3 * torch.sin(3 * x[:, 0]), 10 * (x - 0.5).pow(2).sum(1)], 1)
    gp = P.GPSurrogate(x, y, steps=60, lr=0.1, standardize=False, noise_floor=1e-5)
    assert torch.equal(gp.mean, torch.zeros(2, dtype=torch.float64)) and torch.equal(gp.scale, torch.ones(2, dtype=torch.float64))
    q = torch.rand(5, 2, generator=gen, dtype=torch.float64)
    mean, std = gp.predict(q)
    assert torch.allclose(gp.lower_confidence_bound(q, 0.3), mean - 0.3 * std)
    assert torch.allclose(gp.lower_confidence_bound(q, 0.3, "variance"), mean - 0.3 * std**2)
    assert all(float(m.likelihood.noise) >= 1e-5 for m in gp.models)
    with pytest.raises(hd.ConfigError, match="uncertainty"):
        gp.lower_confidence_bound(q, 0.3, "var")
    with pytest.raises(hd.ConfigError, match="uncertainty"):
        P.ParetoSetLearning(lambda a: a, 2, 2, uncertainty="var")
