"""The RE problems SVH-PSL is evaluated on: objective values at one point each, computed by hand from
the published definitions (Tanabe & Ishibuchi 2020, supplementary file; reproblems, bug-fixed), and the
non-dominated archive and approximate front."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.methods.pareto import RE_PROBLEMS, approximate_front, hypervolume, non_dominated_archive, re_problem


def at(name: str, x: list[float]) -> np.ndarray:
    return re_problem(name).evaluate(np.array([x]))[0]


def test_re21_four_bar_truss() -> None:
    # f1 = L (2 x1 + sqrt2 x2 + sqrt(x3) + x4), f2 = F L / E (2/x1 + 2 sqrt2/x2 - 2 sqrt2/x3 + 2/x4), F=10, E=2e5, L=200
    # at x = (2, 2, 2, 2): f1 = 200 (4 + 2 sqrt2 + sqrt2 + 2) = 1200 + 600 sqrt2; f2 = 0.01 (1 + 1) = 0.02
    np.testing.assert_allclose(at("re21", [2, 2, 2, 2]), [1200 + 600 * math.sqrt(2), 0.02], rtol=1e-12)


def test_re32_welded_beam() -> None:
    x1, x2, x3, x4 = 2.5625, 5.05, 5.05, 2.5625  # the middle of the box
    f1 = 1.10471 * x1 * x1 * x2 + 0.04811 * x3 * x4 * (14 + x2)
    f2 = 4 * 6000 * 14**3 / (30e6 * x4 * x3**3)
    # every constraint holds here (tau = 7,6xx < 13600, sigma = 1,2xx < 30000, x4 = x1, P_c >> P): no violation
    np.testing.assert_allclose(at("re32", [x1, x2, x3, x4]), [f1, f2, 0.0], rtol=1e-12)
    # the reference implementation (reproblems' Python version) at the same point
    np.testing.assert_allclose(at("re32", [x1, x2, x3, x4]), [48.492596554296874, 0.006651752562671657, 0.0], rtol=1e-12)
    # x4 < x1 violates g3 = x4 - x1 >= 0 by exactly x1 - x4 (the others still hold)
    assert at("re32", [2.5625, 5.05, 5.05, 2.0])[2] == pytest.approx(0.5625, rel=1e-12)


def test_re33_disc_brake() -> None:
    # x = (70, 80, 1000, 11): x2^2 - x1^2 = 1500, x2^3 - x1^3 = 169000
    f1 = 4.9e-5 * 1500 * (11 - 1)  # 0.735
    f2 = 9.82e6 * 1500 / (1000 * 11 * 169000)
    # g1 = (x2 - x1) - 20 = -10 is violated by 10; g2 = 0.4 - 1000 / (3.14 * 1500) > 0, g3 = 1 - 2.22e-3 * 1000 * 169000 / 1500^2 > 0,
    # g4 = 2.66e-2 * 1000 * 11 * 169000 / 1500 - 900 > 0
    np.testing.assert_allclose(at("re33", [70, 80, 1000, 11]), [0.735, f2, 10.0], rtol=1e-12)
    assert f1 == pytest.approx(0.735)


def test_re36_gear_train_rounds_the_numbers_of_teeth() -> None:
    # x rounds to (12, 12, 60, 60): f1 = |6.931 - (60/12)(60/12)| = 18.069, f2 = 60, violation of 0.5 - f1/6.931 >= 0
    want = [18.069, 60.0, 18.069 / 6.931 - 0.5]
    np.testing.assert_allclose(at("re36", [12.4, 11.6, 59.7, 60.0]), want, rtol=1e-12)
    np.testing.assert_allclose(at("re36", [12, 12, 60, 60]), want, rtol=1e-12)


def test_re37_rocket_injector() -> None:
    # x = 0: the constant terms; x = (1, 0, 0, 0): constant + linear + square terms of x_alpha
    np.testing.assert_allclose(at("re37", [0, 0, 0, 0]), [0.692, 0.153, 0.370], rtol=1e-12)
    np.testing.assert_allclose(at("re37", [1, 0, 0, 0]), [0.692 + 0.477 - 0.167, 0.153 - 0.322 + 0.175, 0.370 - 0.205 - 0.135], rtol=1e-12)


def test_re41_car_side_impact() -> None:
    x1, x2, x3, x4, x5, x6, x7 = 1.0, 0.9, 1.0, 1.0, 1.75, 0.8, 0.8  # the middle of the box
    f1 = 1.98 + 4.9 * x1 + 6.67 * x2 + 6.98 * x3 + 4.01 * x4 + 1.78 * x5 + 0.00001 * x6 + 2.73 * x7
    f2 = 4.72 - 0.5 * x4 - 0.19 * x2 * x3  # 4.049
    vmbp, vfd = 10.58 - 0.674 * x1 * x2 - 0.67275 * x2, 16.45 - 0.489 * x3 * x7 - 0.843 * x5 * x6
    # two of the ten constraints are violated here: g7 = 32 - (46.36 - 9.9 x2 - 4.4505 x1) = -0.9995 and
    # g8 = 4 - f2 = -0.049 (the other eight are >= 0), so f4 = 0.9995 + 0.049
    g7 = 32 - (46.36 - 9.9 * x2 - 4.4505 * x1)
    assert g7 == pytest.approx(-0.9995) and 4 - f2 == pytest.approx(-0.049)
    assert 9.9 - vmbp > 0 and 15.7 - vfd > 0
    got = at("re41", [x1, x2, x3, x4, x5, x6, x7])
    np.testing.assert_allclose(got, [f1, f2, 0.5 * (vmbp + vfd), -g7 + 0.049], rtol=1e-12)
    np.testing.assert_allclose(got, [29.172008, 4.049, 12.1232625, 1.0485], rtol=1e-9)  # reproblems' Python version


def test_re42_conceptual_marine_design() -> None:
    # the middle of the box; the values of the reference implementation (reproblems' Python version, bug-fixed
    # sixth constraint 500000 - DWT >= 0), and f2 (light ship weight) by hand
    x = [212.16, 26.155, 19.0, 10.855, 16.0, 0.69]
    got = at("re42", x)
    np.testing.assert_allclose(got, [-569.1666596609458, 9869.900828050933, 9182.95835061098, 2.3285622866307496], rtol=1e-10)
    L, B, D, T, Vk, CB = x
    disp = 1.025 * L * B * T * CB
    fn = 0.5144 * Vk / math.sqrt(9.8065 * L)
    power = disp ** (2 / 3) * Vk**3 / ((4977.06 * CB**2 - 8105.61 * CB + 4456.51) + (-10847.2 * CB**2 + 12817.0 * CB - 6960.32) * fn)
    light = 0.034 * L**1.7 * B**0.7 * D**0.4 * CB**0.5 + L**0.8 * B**0.6 * D**0.3 * CB**0.1 + 0.17 * power**0.9
    assert got[1] == pytest.approx(light, rel=1e-12)


def test_problems_sizes_bounds_and_normalisation() -> None:
    sizes = {"re21": (4, 2), "re32": (4, 3), "re33": (4, 3), "re36": (4, 3), "re37": (4, 3), "re41": (7, 4), "re42": (6, 4)}
    assert set(RE_PROBLEMS) == set(sizes)
    for name, (d, m) in sizes.items():
        p = re_problem(name.upper())
        assert (p.dims, p.objectives) == (d, m)
        u = np.random.default_rng(0).random((50, d))
        y = p.evaluate_unit(u)
        assert y.shape == (50, m) and np.isfinite(y).all()
        np.testing.assert_allclose(p.evaluate_unit(np.zeros((1, d))), p.evaluate(p.lower[None]), rtol=0)
        np.testing.assert_allclose(p.normalize(np.stack([p.ideal, p.nadir])), [[0.0] * m, [1.0] * m], atol=1e-12)
    with pytest.raises(ConfigError, match="re99"):
        re_problem("re99")
    with pytest.raises(ShapeError, match=r"\(n, 4\)"):
        re_problem("re21").evaluate(np.zeros((3, 5)))


def test_non_dominated_archive_against_a_brute_force_filter() -> None:
    rng = np.random.default_rng(1)
    pts = np.round(rng.random((300, 3)), 1)  # many ties and duplicates
    archive = None
    for chunk in np.array_split(pts, 7):
        archive = non_dominated_archive(archive, chunk)

    def dominated(p: np.ndarray) -> bool:
        return bool(((pts <= p).all(1) & (pts < p).any(1)).any())

    want = {tuple(p) for p in pts if not dominated(p)}
    assert {tuple(p) for p in archive} == want and len(archive) == len(want)


def test_approximate_front_is_non_dominated_and_close_to_the_known_one_on_re37() -> None:
    p = re_problem("re37")
    front = approximate_front(p, population=20, generations=10, seed=0)
    assert front.shape[1] == 3 and len(front) >= 20
    assert len(non_dominated_archive(None, front)) == len(front)
    # it is made of evaluated points: each is the objective value of some decision; HV in the paper's space is positive
    assert 0.0 < hypervolume(p.normalize(front), (1.1, 1.1, 1.1)) <= 1.1**3
    np.testing.assert_array_equal(front, approximate_front(p, population=20, generations=10, seed=0))  # deterministic
