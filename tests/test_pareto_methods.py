"""The Pareto method objects: PHN steps against a hand-written loop, evaluation, state, misuse; GP and PSL runs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.methods import pareto as P


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(4, 6)
        self.a = nn.Linear(6, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return self.a(h), self.b(h)


def _setup(solver: str):
    torch.manual_seed(0)
    model = hd.HyperDNN(TwoHeads(), inputs=P.Preference(2), body=hd.MLP(hidden=(16,)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, opt, P.ParetoHyperNetwork(model, opt, solver=solver, alpha=0.2, seed=3)


def _losses(model, x, y, r):
    o1, o2 = model(x, preference=r)
    return torch.stack([F.cross_entropy(o1, y[:, 0]), F.cross_entropy(o2, y[:, 1])])


@pytest.mark.parametrize("solver", ["ls", "epo"])
def test_phn_steps_equal_a_hand_written_loop(solver):
    model, opt, phn = _setup(solver)
    ref_model = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    rng = np.random.default_rng(3)
    gen = torch.Generator().manual_seed(1)
    modes = set()
    for _ in range(4):
        x, y = torch.randn(8, 4, generator=gen), torch.randint(3, (8, 2), generator=gen)
        r = phn.sample_preference()
        r_ref = torch.from_numpy(rng.dirichlet([0.2, 0.2])).float()
        r_ref = r_ref / r_ref.sum()
        assert torch.equal(r, r_ref)
        step = phn.step(_losses(model, x, y, r), r)
        modes.add(step.mode)
        # by hand: LS weighs by r; EPO by m * alpha from the LP on the hypernetwork's gradient Gram matrix
        losses = _losses(ref_model, x, y, r_ref)
        if solver == "ls":
            total = (losses * r_ref).sum()
        else:
            params = list(ref_model.hypernetwork.parameters())
            G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(l, params, retain_graph=True)]) for l in losses]).double()
            sol = P.epo_weights(losses.detach().double().numpy(), r_ref.double().numpy(), (G @ G.T).numpy())
            total = (losses * torch.tensor(sol.weights, dtype=torch.float32)).sum()
            assert np.allclose(step.weights.numpy(), sol.weights, atol=1e-6)
        ref_opt.zero_grad()
        total.backward()
        ref_opt.step()
        assert float(step.loss) == pytest.approx(float(total.detach()), rel=1e-5)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert modes <= ({"ls"} if solver == "ls" else {"balance", "descent", "fallback"})


def test_phn_evaluate_runs_every_ray_in_eval_mode_and_restores_the_mode():
    model, opt, phn = _setup("ls")
    x, y = torch.randn(16, 4), torch.randint(3, (16, 2))
    seen = []

    def at(r):
        seen.append((r.clone(), model.training))
        return _losses(model, x, y, r)

    res = phn.evaluate(at, reference=(5.0, 5.0))
    assert len(seen) == 25 and not any(t for _, t in seen) and model.training
    assert torch.allclose(torch.stack([r for r, _ in seen]), P.circle_rays(25))
    by_hand = np.stack([_losses(model, x, y, r).detach().numpy() for r, _ in seen])
    assert np.allclose(res.losses, by_hand, atol=1e-6)
    assert res.hypervolume == pytest.approx(P.hypervolume(by_hand, (5.0, 5.0)))


def test_phn_state_dict_round_trip_repeats_the_draws():
    _, _, phn = _setup("ls")
    phn.sample_preference()
    state = phn.state_dict()
    ahead = [phn.sample_preference() for _ in range(3)]
    _, _, other = _setup("ls")
    other.load_state_dict(state)
    assert all(torch.equal(a, other.sample_preference()) for a in ahead)
    _, _, epo = _setup("epo")
    with pytest.raises(hd.ConfigError, match="differ"):
        epo.load_state_dict(state)


def test_phn_misuse_names_the_fix():
    model = hd.HyperDNN(TwoHeads(), inputs=hd.External(2), body=hd.MLP(hidden=(4,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(hd.ConfigError, match="Preference"):
        P.ParetoHyperNetwork(model, opt)
    model, opt, phn = _setup("ls")
    with pytest.raises(hd.ConfigError, match="'ls' or 'epo'"):
        P.ParetoHyperNetwork(model, opt, solver="mgda")
    with pytest.raises(hd.HDTypeError, match="HyperDNN"):
        P.ParetoHyperNetwork(nn.Linear(2, 2), opt)  # type: ignore[arg-type]
    with pytest.raises(hd.ShapeError, match="torch.stack"):
        phn.step(torch.tensor(1.0), torch.tensor([0.5, 0.5]))
    with pytest.raises(hd.ConfigError, match="simplex"):
        phn.step(torch.ones(2, requires_grad=True), torch.tensor([0.9, 0.9]))


def test_gp_surrogate_interpolates_and_is_differentiable():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(15, 2, generator=gen, dtype=torch.float64)
    y = torch.stack([torch.sin(3 * x[:, 0]) + x[:, 1], (x - 0.5).pow(2).sum(1)], 1)
    gp = P.GPSurrogate(x, y, steps=60)
    mean, std = gp.predict(x)
    assert torch.allclose(mean, y, atol=0.05) and (std < 0.2).all()
    q = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    gp.lower_confidence_bound(q).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("svgd", [True, False])
def test_psl_loop_spends_the_budget_and_keeps_the_start(svgd):
    def problem(x):  # a convex two-objective problem: f1 = |x|^2, f2 = |x - 1|^2
        return np.stack([(x**2).sum(1), ((x - 1) ** 2).sum(1)], 1)

    seen = []
    kw = dict(svgd=svgd, initial=6, iterations=1, batch=3, steps=5, candidates=30, gp_steps=5, seed=1)
    hist = P.ParetoSetLearning(problem, 3, 2, **kw).run(callback=lambda h: seen.append(len(h.x)))
    assert hist.evaluations == [6, 9] == seen
    assert hist.x.shape == (9, 3) and np.allclose(hist.y, problem(hist.x))
    assert ((hist.x >= 0) & (hist.x <= 1)).all() and len(np.unique(hist.x[6:], axis=0)) == 3
    if svgd:  # the same seed repeats the run
        assert np.array_equal(P.ParetoSetLearning(problem, 3, 2, **kw).run().x, hist.x)
    with pytest.raises(hd.ConfigError, match="steps"):
        P.ParetoSetLearning(problem, 3, 2, steps=0)


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SHARED = __import__("pathlib").Path(__import__("os").environ.get("HYPERDNN_DATA") or REPO.parent / "shared" / "data").resolve()
MNIST_DIR = next((d for d in (SHARED, SHARED / "mnist") if (d / "t10k-images-idx3-ubyte.gz").exists()), None)


@pytest.mark.slow  # builds the 140,000-image data set and writes its 180 MB cache
@pytest.mark.skipif(MNIST_DIR is None, reason="shared MNIST files not present")
def test_the_documented_phn_loop_runs_as_written(tmp_path, monkeypatch, capsys):
    text = (REPO / "docs" / "methods" / "pareto.md").read_text()
    block = text.split("## PHN in your own loop", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    # MNIST linked into a fresh data directory, so the Multi-MNIST cache is written there
    (tmp_path / "mnist").mkdir()
    for f in MNIST_DIR.iterdir():
        if f.name.startswith(("train-", "t10k-")):
            (tmp_path / "mnist" / f.name).symlink_to(f)
    monkeypatch.setenv("HYPERDNN_DATA", str(tmp_path))
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(block, "docs/methods/pareto.md", "exec"), scope)
    front = scope["front"]
    assert front.losses.shape == (25, 2) and np.isfinite(front.losses).all()
    assert front.hypervolume == pytest.approx(P.hypervolume(front.losses, (2, 2)))
    assert (tmp_path / "multi_mnist" / "multi_mnist-shift6-seed0-copies2.npz").is_file()
    assert str(front.hypervolume) in capsys.readouterr().out
