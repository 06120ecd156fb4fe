"""The exact seen–absent curve and AUSUC against brute force, accuracy_report, and by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import calib
import tests.brute as brute
from calib.metrics import accuracy_report
from calib.metrics.curve import SeenAbsentCurve, ausuc, seen_absent_curve

SETTINGS = settings(deadline=None, max_examples=100)
TOL = 1e-9


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def same(a: float, b: float, tol: float = TOL) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def finite_stand_in(gamma: float, logits, absent) -> float:
    """The brute force needs a finite γ: above every gap it acts as +inf."""
    return gamma if math.isfinite(gamma) else max(brute.gaps(logits, absent)) + 1.0


@SETTINGS
@given(problem=brute.problems())
def test_every_point_and_every_midpoint_match_brute_force(problem):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    curve = quiet(seen_absent_curve, z, y, s, u)
    g = curve.gamma
    assert np.all(np.diff(g) > 0) and g[-1] == math.inf
    # point k holds on (g[k-1], g[k]]: check its right end, a midpoint, and below the first
    probes = [(k, finite_stand_in(g[k], z, u)) for k in range(len(g))]
    probes += [(k, (g[k - 1] + finite_stand_in(g[k], z, u)) / 2) for k in range(1, len(g))]
    probes.append((0, finite_stand_in(g[0], z, u) - 1.0))
    for k, gamma in probes:
        want = brute.accuracies(z, y, s, u, gamma)
        for key in ("acc_seen", "acc_absent", "acc_all"):
            assert same(float(getattr(curve, key)[k]), want[key]), (key, k, gamma)


@SETTINGS
@given(problem=brute.problems())
def test_ausuc_is_the_rank_statistic_and_the_dense_trapezoids(problem):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    n_seen, n_absent = np.isin(y, s).sum(), np.isin(y, u).sum()
    area = quiet(ausuc, z, y, s, u)
    if n_seen == 0 or n_absent == 0:
        assert math.isnan(area)
        return
    assert same(area, brute.ausuc_rank_statistic(z, y, s, u))
    assert same(area, brute.ausuc_dense_sweep(z, y, s, u))
    assert 0.0 <= area <= 1.0


@SETTINGS
@given(
    problem=brute.problems(),
    noise=st.lists(st.floats(-1, 1, width=32), min_size=70, max_size=70),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_accuracy_report_at_each_gamma_is_the_curve_point_exactly(problem, noise, dtype):
    # non-integer logits too: both go through the same gaps, so the numbers agree bit for bit
    n, c = problem.logits.shape
    z = (problem.logits + np.resize(np.array(noise), (n, c))).astype(dtype)
    y, s, u = problem.labels, problem.seen, problem.absent
    curve = quiet(seen_absent_curve, z, y, s, u)
    for k, gamma in enumerate(curve.gamma):
        report = quiet(accuracy_report, z, y, s, u, gamma=float(gamma), topk=(1,))
        for key in ("acc_seen", "acc_absent", "acc_all"):
            a, b = report[key], float(getattr(curve, key)[k])
            assert (math.isnan(a) and math.isnan(b)) or a == b, (key, k)


@SETTINGS
@given(problem=brute.problems(), shifts=st.lists(st.integers(-9, 9), min_size=10, max_size=10))
def test_row_constants_leave_the_curve_unchanged(problem, shifts):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    a = quiet(seen_absent_curve, z, y, s, u)
    b = quiet(seen_absent_curve, z + np.array(shifts[: len(z)], dtype=float)[:, None], y, s, u)
    for key in ("gamma", "acc_seen", "acc_absent", "acc_all"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert same(a.ausuc, b.ausuc, 0.0)


# ---------------------------------------------------------------------------------------------
# By hand. S = {0, 1}, U = {2, 3}; gaps (max S − max U) and who is right on which side:
#   y=0 [4, 1, 2, 0]  gap  2, right while γ ≤ 2
#   y=1 [0, 3, 2, 2]  gap  1, right while γ ≤ 1
#   y=2 [1, 0, 3, 0]  gap −2, right once γ > −2
#   y=3 [2, 0, 0, 1]  gap  1, right once γ > 1
#   y=2 [0, 1, 0, 1]  gap  0, never right (U's best is column 3)
# Breakpoints of right samples: −2, 1, 2 → γ = [−2, 1, 2, inf];
#   acc_seen  = [2/2, 2/2, 1/2, 0/2]   acc_absent = [0/3, 1/3, 2/3, 2/3]
#   acc_all   = [2/5, 3/5, 3/5, 2/5]
# AUSUC: trapezoids (0 + 0) + (1/2)(1/3 + 2/3)/2 + (1/2)(2/3 + 2/3)/2 = 1/4 + 1/3 = 7/12;
# rank statistic: seen gaps {2, 1} vs absent gaps {−2, 1}: 2 > both (2), 1 > −2 (1), 1 = 1 (½)
#   → 3.5 / (2 · 3) = 7/12.
Z5 = np.array([[4, 1, 2, 0], [0, 3, 2, 2], [1, 0, 3, 0], [2, 0, 0, 1], [0, 1, 0, 1]], dtype=float)
Y5 = np.array([0, 1, 2, 3, 2])


def test_hand_worked_curve():
    curve = seen_absent_curve(Z5, Y5, [0, 1])
    np.testing.assert_array_equal(curve.gamma, [-2, 1, 2, math.inf])
    np.testing.assert_allclose(curve.acc_seen, [1, 1, 0.5, 0])
    np.testing.assert_allclose(curve.acc_absent, [0, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(curve.acc_all, [2 / 5, 3 / 5, 3 / 5, 2 / 5])
    assert curve.ausuc == pytest.approx(7 / 12)
    assert ausuc(Z5, Y5, [0, 1]) == pytest.approx(7 / 12)
    assert (curve.n_seen, curve.n_absent, len(curve)) == (2, 3, 4)
    assert curve.interval(0) == (-math.inf, -2.0) and curve.interval(3) == (2.0, math.inf)


def test_rest_columns_count_in_acc_all_only():
    # add an R column 4 that wins sample 0 (an R label) until U overtakes it at γ > 1
    z = np.array([[0, 0, 1, 0, 2], [3, 0, 0, 0, 0], [0, 0, 2, 0, 0]], dtype=float)
    curve = seen_absent_curve(z, np.array([4, 0, 2]), [0, 1], [2, 3])
    # right samples: R label gap 1 (while γ ≤ 1), S label gap 3, U label gap −2 (once γ > −2)
    np.testing.assert_array_equal(curve.gamma, [-2, 1, 3, math.inf])
    np.testing.assert_allclose(curve.acc_all, [2 / 3, 1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(curve.acc_seen, [1, 1, 1, 0])
    np.testing.assert_allclose(curve.acc_absent, [0, 1, 1, 1])
    assert (curve.n_seen, curve.n_absent) == (1, 1)


def test_no_absent_sample_gives_nan_ausuc_and_warns():
    with pytest.warns(RuntimeWarning, match="absent"):
        curve = seen_absent_curve(Z5[:2], Y5[:2], [0, 1])
    assert math.isnan(curve.ausuc) and np.isnan(curve.acc_absent).all()


def test_torch_in_torch_out(device):
    for dtype in (torch.float32, torch.float64):
        curve = seen_absent_curve(
            torch.tensor(Z5, dtype=dtype, device=device), torch.tensor(Y5), [0, 1]
        )
        assert isinstance(curve, SeenAbsentCurve)
        for key in ("gamma", "acc_seen", "acc_absent", "acc_all"):
            arr = getattr(curve, key)
            assert isinstance(arr, torch.Tensor) and arr.device.type == device.type
        assert curve.ausuc == pytest.approx(7 / 12)
        assert curve.interval(1) == (-2.0, 1.0)


def test_public_names():
    assert calib.seen_absent_curve is seen_absent_curve and calib.ausuc is ausuc


@pytest.mark.parametrize(
    "args, message",
    [
        ((Z5[0], Y5[:1], [0, 1]), "2-D"),
        ((Z5, Y5[:4], [0, 1]), "4 entries"),
        ((Z5, Y5 + 4, [0, 1]), "out of range"),
        ((Z5, Y5, [0, 1], [1, 2]), "overlap"),
        ((Z5, Y5, [0, 1, 2, 3]), "nothing to calibrate"),
        ((np.where(Z5 == 4, np.nan, Z5), Y5, [0, 1]), "non-finite"),
    ],
)
def test_bad_input_is_named(args, message):
    with pytest.raises(ValueError, match=message):
        seen_absent_curve(*args)
