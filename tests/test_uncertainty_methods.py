"""Fixed/fresh members of a noise-conditioned HyperDNN and the objectives that keep draws diverse."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hyperdnn as hd
import hyperdnn.methods.uncertainty as U
from hyperdnn.errors import ConfigError, HDTypeError, ShapeError


def _model(seed: int = 0, outputs=None) -> hd.HyperDNN:
    torch.manual_seed(seed)
    target = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1))
    return hd.HyperDNN(target, inputs=hd.Noise(8), outputs=outputs or hd.MultiHead(), body=hd.MLP(hidden=(32,)))


def _cnn_model() -> hd.HyperDNN:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    return hd.HyperDNN(target, inputs=hd.Noise(5), outputs=hd.ChunkWise(64, 8))


@pytest.mark.parametrize("make", [_model, _cnn_model])
def test_per_draw_outputs_equal_separate_calls_with_the_same_noise(make) -> None:
    model = make()
    x = torch.randn(6, 1, 8, 8) if isinstance(model.target[0], nn.Conv2d) else torch.randn(6, 1)
    z = torch.randn(4, model.hypernetwork.inputs.dim)
    batched = model(x, samples=z)
    assert batched.shape[:2] == (4, 6)
    for i in range(4):
        alone = model(x, samples=z[i])  # one weight set: the target's own forward
        assert torch.allclose(batched[i], alone, atol=1e-5), i


def test_fixed_members_give_identical_outputs_across_calls_and_fresh_draws_do_not() -> None:
    model = _model()
    x = torch.randn(10, 1)
    fixed = U.FixedMembers(model, 5, seed=7)
    assert torch.equal(fixed(x), fixed(x))
    assert torch.equal(fixed(x[:4]), fixed(x)[:, :4])  # same members on every batch
    again = U.FixedMembers(model, 5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again.z, fixed.z)
    assert not torch.equal(model(x, samples=5), model(x, samples=5))  # fresh by default
    assert "z" in fixed.state_dict()
    with pytest.raises(ConfigError, match="k=3 but z has 5 rows"):
        U.FixedMembers(model, 3, z=fixed.z)


def test_fixed_members_in_chunks_equal_one_batched_call() -> None:
    model = _model()
    x = torch.randn(600, 1)
    fixed = U.FixedMembers(model, 5, seed=1)
    assert U.members_per_call(5, 600, torch.device("cpu")) == 1  # large batch on a CPU: one member per call
    assert U.members_per_call(64, 32, torch.device("cpu")) == 16
    assert U.members_per_call(64, 512, torch.device("cuda")) == 64
    chunked = fixed(x)
    whole = model(x, samples=fixed.z)
    assert torch.allclose(chunked, whole, atol=1e-6)
    assert torch.allclose(U.FixedMembers(model, z=fixed.z, per_call=2)(x[:8]), whole[:, :8], atol=1e-6)
    with pytest.raises(ConfigError, match="per_call must be a positive int"):
        U.FixedMembers(model, 5, per_call=0)


def test_noise_draws_given_with_a_wrong_shape_are_refused() -> None:
    model = _model()
    with pytest.raises(ShapeError, match=r"\(k, 8\)"):
        model(torch.randn(2, 1), samples=torch.randn(3, 5))
    with pytest.raises(ConfigError, match="positive int or a"):
        model(torch.randn(2, 1), samples=0)


def test_objectives_need_a_noise_input() -> None:
    task_model = hd.HyperDNN(nn.Linear(2, 2), inputs=hd.TaskEmbedding(2, 3))
    with pytest.raises(ConfigError, match="needs\nHyperDNN|inputs=hd.Noise"):
        U.HyperGAN(task_model)
    with pytest.raises(HDTypeError, match="needs a hd.HyperDNN"):
        U.FunctionalSVGD(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="samples >= 2"):
        U.HyperGAN(_model(), samples=1, beta=1.0)
    with pytest.raises(ConfigError, match="beta must be"):
        U.HyperGAN(_model(), beta=-1.0)


def test_kernel_entropy_equals_the_formula_and_grows_with_the_spread() -> None:
    torch.manual_seed(0)
    theta = torch.randn(6, 10)
    d = torch.cdist(theta, theta) ** 2
    off = d[~torch.eye(6, dtype=torch.bool)]
    h = off.median() / math.log(7)
    by_hand = -sum(math.log(sum(math.exp(-float(d[i, j]) / float(h)) for j in range(6)) / 6) for i in range(6)) / 6
    assert float(U.kernel_entropy(theta)) == pytest.approx(by_hand, rel=1e-4)
    # with the bandwidth fixed by the median, spreading one draw away raises the estimate
    far = theta.clone()
    far[0] += 10
    assert float(U.kernel_entropy(far)) > float(U.kernel_entropy(theta))


def test_stein_direction_equals_a_loop_over_particles() -> None:
    torch.manual_seed(1)
    f, g = torch.randn(5, 7), torch.randn(5, 7)
    drive, repulse = U.stein_direction(f, g, alpha=2.0)
    d = torch.cdist(f, f) ** 2
    h = d[~torch.eye(5, dtype=torch.bool)].median() / math.log(6)
    for i in range(5):
        di = sum(torch.exp(-d[j, i] / h) * g[j] for j in range(5)) / 5
        # grad_{f_j} exp(-|f_j - f_i|^2 / h) = -2 / h (f_j - f_i) K
        ri = sum(-2 / h * (f[j] - f[i]) * torch.exp(-d[j, i] / h) for j in range(5)) * 2.0 / 5
        assert torch.allclose(drive[i], di, atol=1e-5) and torch.allclose(repulse[i], ri, atol=1e-5)


def test_hypergan_loss_is_the_members_nll_minus_beta_times_the_entropy_of_the_same_draws() -> None:
    model = _model()
    method = U.HyperGAN(model, samples=4, beta=0.5, likelihood=U.Gaussian(0.5))
    x, y = torch.randn(9, 1), torch.randn(9, 1)
    torch.manual_seed(5)
    total, task, div = method.terms(x, y)
    torch.manual_seed(5)
    z = torch.randn(4, 8)  # the same draws (Noise std 1)
    theta = model.weights(samples=z)
    f = model(x, samples=z)
    nll = ((f - y) ** 2 / (2 * 0.25)).mean() + math.log(0.5 * math.sqrt(2 * math.pi))
    flat = torch.cat([t.reshape(4, -1) for t in theta.values()], 1)
    assert torch.allclose(task, nll, atol=1e-5)
    assert torch.allclose(div, -0.5 * U.kernel_entropy(flat), atol=1e-5)
    assert torch.allclose(total, nll + div, atol=1e-5)


def _toy(steps: int, method_of) -> tuple[float, float]:
    """Trains on y = x^3 / 100 with x in [-4, -1] u [1, 4]; returns the members' mean std on the
    data and off it (|x| in [5, 6])."""
    torch.manual_seed(0)
    x = torch.cat([torch.rand(10, 1) * 3 - 4, torch.rand(10, 1) * 3 + 1])
    y = x**3 / 100 + 0.03 * torch.randn_like(x)
    model = _model(1)
    method = method_of(model)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        method.step(x, y, opt)
    members = method.members(16, seed=0)
    with torch.no_grad():
        on = members(x).std(0).mean()
        off = members(torch.cat([torch.linspace(-6, -5, 5), torch.linspace(5, 6, 5)]).unsqueeze(1)).std(0).mean()
    return float(on), float(off)


def test_draws_stay_diverse_with_the_diversity_term_and_collapse_without_it() -> None:
    # measured: off-data member std 0.16 plain, 0.35 HyperGAN (beta 10), 0.26 f-SVGD (alpha 10)
    lik = U.Gaussian(0.03)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and immune to a busy machine
    try:
        _diversity_check(lik)
    finally:
        torch.set_num_threads(threads)


def _diversity_check(lik: U.Gaussian) -> None:
    on_plain, off_plain = _toy(1000, lambda m: U.HyperGAN(m, samples=8, beta=0.0, likelihood=lik))
    on_gan, off_gan = _toy(1000, lambda m: U.HyperGAN(m, samples=8, beta=10.0, likelihood=lik))
    on_svgd, off_svgd = _toy(1000, lambda m: U.FunctionalSVGD(m, samples=8, alpha=10.0, likelihood=lik,
                                                              measurement=lambda x: torch.linspace(-6, 6, 13).unsqueeze(1)))
    assert max(on_plain, on_gan, on_svgd) < 0.1  # all fit the data (noise std 0.03)
    assert off_gan > 1.6 * off_plain, (off_gan, off_plain)
    assert off_svgd > 1.3 * off_plain, (off_svgd, off_plain)


def test_evaluate_a_hyperdnn_uses_fixed_draws_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    model = hd.HyperDNN(target, inputs=hd.Noise(6))
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    a = U.evaluate(model, [(x[:10], y[:10]), (x[10:], y[10:])], samples=6, generator=torch.Generator().manual_seed(1))
    b = U.evaluate(U.FixedMembers(model, 6, seed=1), (x, y))
    assert a.nll == pytest.approx(b.nll, rel=1e-6) and a.mutual_information == pytest.approx(b.mutual_information, rel=1e-5)
    assert model.training
    with pytest.raises(ConfigError, match="needs samples=k"):
        U.evaluate(model, (x, y))
    method = U.FunctionalSVGD(model, samples=4)
    step = method.step(x, y, torch.optim.SGD(model.parameters(), 0.1))
    assert isinstance(step, U.UncertaintyStep) and math.isfinite(step.loss)
    assert method.evaluate((x, y), samples=6, seed=1).members == 6


def test_the_loop_on_the_method_page_runs_as_written() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "methods" / "uncertainty.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(code, "docs/methods/uncertainty.md", "exec"), scope)
    assert scope["probs"].shape == (16, 256, 3)
    assert 0.0 <= scope["results"].ece <= 1.0 and set(scope["results"].ood) == set(U.OOD_SCORES)
