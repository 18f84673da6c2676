"""F2 and VLMOP2 (SVH-PSL's problem.py): objective values computed by hand from the definitions, a literal
transcription of the authors' loop, the closed-form fronts and their hypervolume, bad input, and the recipe's
measure of both."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.methods.pareto import SYNTHETIC_PROBLEMS, hypervolume, non_dominated_archive, synthetic_problem


def f2_as_the_authors_loop(x: np.ndarray) -> np.ndarray:
    """problem.py's F2.evaluate, transcribed line by line (a loop over i = 2..n with running sums and counts)."""
    n = x.shape[1]
    sum1 = sum2 = 0.0
    count1 = count2 = 0.0
    for i in range(2, n + 1):
        theta = 1.0 + 3.0 * (i - 2) / (n - 2)
        yi = (x[:, i - 1] - np.power(x[:, 0], 0.5 * theta)) ** 2
        if i % 2 == 0:
            sum2, count2 = sum2 + yi, count2 + 1.0
        else:
            sum1, count1 = sum1 + yi, count1 + 1.0
    f1 = (1 + 1.0 / count1 * sum1) * x[:, 0]
    f2 = (1 + 1.0 / count2 * sum2) * (1.0 - np.sqrt(x[:, 0] / (1 + 1.0 / count2 * sum2)))
    return np.stack([f1, f2]).T


def staircase_hv(front: np.ndarray, ref: tuple[float, float]) -> float:
    """Hypervolume of a 2-D point set by hand: sort by f1, sum the rectangles between successive f1 up to ref."""
    pts = front[(front[:, 0] <= ref[0]) & (front[:, 1] <= ref[1])]
    pts = pts[np.argsort(pts[:, 0])]
    best = np.minimum.accumulate(pts[:, 1])  # the lowest f2 reached up to each f1
    widths = np.diff(np.append(pts[:, 0], ref[0]))
    return float(np.sum(widths * (ref[1] - best)))


def test_f2_at_hand_computed_points() -> None:
    p = synthetic_problem("f2")
    assert (p.name, p.dims, p.objectives) == ("f2", 6, 2)
    np.testing.assert_array_equal(p.lower, np.zeros(6))
    np.testing.assert_array_equal(p.upper, np.ones(6))
    # x = (0.25, 0.5, ..., 0.5), d = 6: theta_i = 1 + 3 (i - 2) / 4 = 1, 1.75, 2.5, 3.25, 4 for i = 2..6
    # y_i = (0.5 - 0.25^(theta_i / 2))^2: y_2 = 0 (0.25^0.5 = 0.5), y_6 = (0.5 - 0.0625)^2 = 0.19140625
    y3 = (0.5 - 0.25**0.875) ** 2
    y4 = (0.5 - 0.25**1.25) ** 2
    y5 = (0.5 - 0.25**1.625) ** 2
    g1 = 1 + (y3 + y5) / 2  # J1 = {3, 5}
    g2 = 1 + (0.0 + y4 + 0.19140625) / 3  # J2 = {2, 4, 6}
    want = [g1 * 0.25, g2 * (1 - math.sqrt(0.25 / g2))]
    np.testing.assert_allclose(p.evaluate(np.array([[0.25, 0.5, 0.5, 0.5, 0.5, 0.5]])), [want], rtol=1e-14)
    # x_1 = 0: f1 = 0 whatever the rest; y_i = x_i^2, f2 = g2 (1 - 0) = 1 + (0.04 + 0.16 + 0.36) / 3
    np.testing.assert_allclose(p.evaluate(np.array([[0.0, 0.2, 0.3, 0.4, 0.5, 0.6]])), [[0.0, 1 + 0.56 / 3]], rtol=1e-14)
    # on the Pareto set x_i = x_1^(theta_i / 2) every y_i is 0: f = (x_1, 1 - sqrt(x_1))
    x1 = 0.49
    on = np.array([[x1] + [x1 ** (0.5 * (1 + 3 * (i - 2) / 4)) for i in range(2, 7)]])
    np.testing.assert_allclose(p.evaluate(on), [[0.49, 0.3]], rtol=1e-14)
    # the unit box is the box: evaluate_unit is evaluate
    u = np.random.default_rng(0).random((50, 6))
    np.testing.assert_array_equal(p.evaluate_unit(u), p.evaluate(u))


@pytest.mark.parametrize("dims", [3, 6, 10])
def test_f2_equals_the_authors_loop(dims: int) -> None:
    x = np.random.default_rng(dims).random((200, dims))
    np.testing.assert_allclose(synthetic_problem("f2", dims).evaluate(x), f2_as_the_authors_loop(x), rtol=1e-13, atol=1e-15)


def test_vlmop2_at_hand_computed_points() -> None:
    p = synthetic_problem("VLMOP2")  # any case
    assert (p.name, p.dims, p.objectives) == ("vlmop2", 6, 2)
    np.testing.assert_array_equal(p.lower, np.full(6, -2.0))
    np.testing.assert_array_equal(p.upper, np.full(6, 2.0))
    c = 1 / math.sqrt(6)
    # x = 0: sum_i (0 -+ 1/sqrt6)^2 = 6 / 6 = 1 for both objectives
    np.testing.assert_allclose(p.evaluate(np.zeros((1, 6))), [[1 - math.exp(-1), 1 - math.exp(-1)]], rtol=1e-14)
    # x = 1/sqrt6 everywhere: f1 = 1 - e^0 = 0, f2 = 1 - exp(-6 (2/sqrt6)^2) = 1 - e^-4
    np.testing.assert_allclose(p.evaluate(np.full((1, 6), c)), [[0.0, 1 - math.exp(-4)]], atol=1e-15)
    # x = (1, 0, 0, 0, 0, 0): f1 = 1 - exp(-((1 - c)^2 + 5 c^2)), f2 = 1 - exp(-((1 + c)^2 + 5 c^2))
    want = [1 - math.exp(-((1 - c) ** 2 + 5 * c * c)), 1 - math.exp(-((1 + c) ** 2 + 5 * c * c))]
    np.testing.assert_allclose(p.evaluate(np.array([[1.0, 0, 0, 0, 0, 0]])), [want], rtol=1e-14)
    # the unit box maps linearly onto [-2, 2]: u = 0.5 is x = 0, u = 0.75 is x = 1
    np.testing.assert_allclose(p.evaluate_unit(np.array([[0.5] * 6, [0.75] + [0.5] * 5])),
                               [[1 - math.exp(-1)] * 2, want], rtol=1e-14)


def test_the_fronts_are_non_dominated_and_on_the_closed_form() -> None:
    f2 = synthetic_problem("f2")
    front = f2.pareto_front(101)
    np.testing.assert_allclose(front[:, 0], np.linspace(0, 1, 101), atol=1e-15)
    np.testing.assert_allclose(front[:, 1], 1 - np.sqrt(front[:, 0]), atol=1e-15)
    assert non_dominated_archive(None, front).shape == front.shape  # none dominates another
    assert ((f2.pareto_set(101) >= 0) & (f2.pareto_set(101) <= 1)).all()

    vl = synthetic_problem("vlmop2")
    s = np.linspace(-1, 1, 400)  # x_i = s / sqrt(d): sum_i (x_i -+ 1/sqrt d)^2 = (s -+ 1)^2
    front = vl.pareto_front(400)
    np.testing.assert_allclose(front, np.stack([1 - np.exp(-((s - 1) ** 2)), 1 - np.exp(-((s + 1) ** 2))], axis=1), atol=1e-15)
    assert non_dominated_archive(None, front).shape == front.shape
    # the ends: (1 - e^-4, 0) at s = -1 and (0, 1 - e^-4) at s = 1
    np.testing.assert_allclose(front[[0, -1]], [[1 - math.exp(-4), 0.0], [0.0, 1 - math.exp(-4)]], atol=1e-15)
    # a point off the set, x = (0.3, 0, ..., 0) = (0.570, 0.737), is dominated by the front's points with
    # (s - 1)^2 <= 0.845 and (s + 1)^2 <= 1.335, i.e. s in [0.081, 0.155]
    off = vl.evaluate(np.array([[0.3, 0, 0, 0, 0, 0]]))
    assert (front <= off).all(axis=1).any()


def test_front_hypervolume_in_closed_form_and_against_a_dense_staircase() -> None:
    f2 = synthetic_problem("f2")
    # F2's front is ZDT1's: the area under (1.1, 1.1) above f2 = 1 - sqrt(f1) is 1.21 - int_0^1 (1 - sqrt a) da = 1.21 - 1/3
    assert f2.front_hypervolume((1.1, 1.1)) == pytest.approx(1.21 - 1 / 3, rel=1e-12)
    vl = synthetic_problem("vlmop2")
    for p in (f2, vl):
        dense = p.pareto_front(200_001)
        for ref in ((1.1, 1.1), (0.5, 0.7), (2.0, 0.3)):  # the last two cut the front
            exact = p.front_hypervolume(ref)
            stairs = staircase_hv(dense, ref)
            assert stairs <= exact + 1e-12  # a finite subset covers less
            assert exact - stairs < 2e-5, (p.name, ref, exact, stairs)
            assert hypervolume(dense, ref) == pytest.approx(stairs, rel=1e-9)  # pymoo agrees with the hand staircase
    # the notebook's VLMOP2 front (Ground_truth_approximate_PF/VLMOP2.npy, 400 points s = linspace(-1, 1, 400)):
    # its hypervolume at (1.1, 1.1), read once from the authors' file, is 0.5508081583474007
    assert hypervolume(vl.pareto_front(400), (1.1, 1.1)) == pytest.approx(0.5508081583474007, rel=1e-12)


def test_bad_input_raises_the_library_errors() -> None:
    assert SYNTHETIC_PROBLEMS == ("f2", "vlmop2")
    with pytest.raises(ConfigError, match="unknown problem 'f3'"):
        synthetic_problem("f3")
    with pytest.raises(ConfigError, match="F2 needs an int number of variables >= 3"):
        synthetic_problem("f2", 2)
    with pytest.raises(ConfigError, match="VLMOP2 needs"):
        synthetic_problem("vlmop2", 0)
    p = synthetic_problem("f2")
    with pytest.raises(ShapeError, match=r"decisions must be \(n, 6\)"):
        p.evaluate(np.zeros((3, 5)))
    with pytest.raises(ShapeError, match=r"\(n, 6\)"):
        p.evaluate(np.zeros(6))
    with pytest.raises(ConfigError, match=r"within \[0.0, 1.0\]"):
        p.evaluate(np.array([[-0.1, 0, 0, 0, 0, 0]]))  # x_1 < 0 would make x_1^(theta/2) NaN
    with pytest.raises(ConfigError, match="finite"):
        p.evaluate(np.array([[np.nan, 0, 0, 0, 0, 0]]))
    with pytest.raises(ConfigError, match=r"within \[0, 1\] in every variable \(got \[1.5, "):
        synthetic_problem("vlmop2").evaluate_unit(np.full((1, 6), 1.5))
    with pytest.raises(ShapeError, match="2 values"):
        p.front_hypervolume((1.1, 1.1, 1.1))
    # a reference below the front's f1 axis dominates nothing: 0, not a negative volume
    assert p.front_hypervolume((2.0, -1.0)) == 0.0
    assert synthetic_problem("vlmop2").front_hypervolume((2.0, 0.0)) == 0.0
    # problems are compared by identity (their bounds are arrays), not by raising
    assert synthetic_problem("f2") != synthetic_problem("f2") and len({p, p}) == 1
    with pytest.raises(ConfigError, match="front points"):
        p.pareto_front(1)


def test_pareto_psl_measures_them_as_the_notebook(tmp_path: Path) -> None:
    from hyperdnn.experiments.recipes.pareto_psl import F2_NOTEBOOK_HV, _problem
    from hyperdnn.experiments.registry import get_recipe

    cfg = get_recipe("pareto-psl").config(problems=("f2", "vlmop2"))
    f2, vl = _problem("f2", cfg, tmp_path), _problem("vlmop2", cfg, tmp_path)
    for p in (f2, vl):
        assert p.reference == (1.1, 1.1) and p.dims == 6 and p.objectives == 2
        assert p.standardize  # run_svh.py standardises the objectives on every problem but ZDT
        y = np.random.default_rng(0).random((4, 2))
        np.testing.assert_array_equal(p.measured(y), y)  # the notebook does not normalise them
    assert f2.true_hv == F2_NOTEBOOK_HV
    assert f2.true_hv_exact == pytest.approx(1.21 - 1 / 3, rel=1e-12)
    assert 0 < f2.true_hv_exact - f2.true_hv < 6e-3  # the notebook's 200 points cover less than the whole front
    assert vl.true_hv == pytest.approx(0.5508081583474007, rel=1e-12)
    assert 0 < vl.true_hv_exact - vl.true_hv < 2e-3
    np.testing.assert_array_equal(f2.evaluate(np.full((1, 6), 0.5)), synthetic_problem("f2").evaluate(np.full((1, 6), 0.5)))
    np.testing.assert_array_equal(vl.evaluate(np.full((1, 6), 0.75)), synthetic_problem("vlmop2").evaluate(np.ones((1, 6))))
    # pymoo's NSGA-II sees the same problem on the unit box
    u = np.random.default_rng(1).random((5, 6))
    np.testing.assert_array_equal(vl.pymoo.evaluate(u), vl.evaluate(u))


def test_pareto_psl_short_on_f2_and_vlmop2(tmp_path: Path) -> None:
    from hyperdnn.experiments.registry import get_recipe
    from hyperdnn.experiments.runs import run_recipe

    r = get_recipe("pareto-psl")
    res = run_recipe(r, r.config(problems=("f2", "vlmop2"), initial=6, iterations=1, batch=2, steps=3, candidates=20, gp_steps=5),
                     data_dir=tmp_path, out_dir=tmp_path / "runs", show_progress=False, print_tables=False, checkpoint_every=0, threads=1)
    for name in ("f2", "vlmop2"):
        got = res.results["problems"][name]
        assert got["reference"] == [1.1, 1.1]
        y = np.load(res.run_dir / "evaluations" / f"{name}_svh-psl_run1.npz")["y"]
        # the first value is the notebook's measure of the 6 initial points, by hand
        assert got["methods"]["SVH-PSL"]["curve_mean"][0] == pytest.approx(
            math.log(max(got["true_hv"] - staircase_hv(y[:6], (1.1, 1.1)), 1e-14)), rel=1e-9)
        for m in ("SVH-PSL", "PSL", "NSGA-II"):
            curve = got["methods"][m]["curve_mean"]
            assert len(curve) == 2 and all(np.isfinite(curve)) and curve[1] <= curve[0] + 1e-12
        assert (res.run_dir / f"psl_{name}.png").is_file()
