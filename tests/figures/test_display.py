"""The public plotting API: ``calib.figures.SeenAbsentDisplay`` / ``ReliabilityDisplay``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.metrics.curve import curve_point, seen_absent_curve
from calib.metrics.probability import reliability_diagram

SEEN = np.arange(4)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 400)
    z = rng.normal(size=(400, 8))
    z[np.arange(400), y] += 2.0
    z[:, 4:] -= 1.5  # the absent columns lag, as after fine-tuning
    return z, y


def test_import_is_lazy():
    code = (
        "import sys, calib.figures\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib at import'\n"
        "from calib.figures import SeenAbsentDisplay, ReliabilityDisplay\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib before drawing'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seen_absent_from_estimator_marks_each_gamma(data):
    from calib.figures import SeenAbsentDisplay

    z, y = data
    cals = {
        "fixed": LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=SEEN, num_classes=8),
        "alg": LogitBiasCalibrator("alg").fit(z[y < 4], y[y < 4], seen_classes=SEEN, num_classes=8),
    }
    disp = SeenAbsentDisplay.from_estimator(cals, z, y)
    curve = seen_absent_curve(z, y, SEEN)
    assert list(disp.curves) == ["fine-tuned"]
    for name, cal in cals.items():
        p = disp.points[name]
        s, u = curve_point(curve, cal.gamma_)
        assert p.gamma == cal.gamma_ and p.selector == name
        # the same computation scaled to %: equal up to the rounding of × 100
        assert p.acc_seen == pytest.approx(100 * s) and p.acc_absent == pytest.approx(100 * u)
    assert disp.figure_ is disp.ax_.figure
    # drawn in %: each marked point at its (Acc S/Y, Acc U/Y) in %
    marks = {line.get_label(): line.get_xydata()[0] for line in disp.ax_.lines}
    np.testing.assert_allclose(marks["γ alg = " + f"{cals['alg'].gamma_:+.2f}"],
                               [disp.points["alg"].acc_seen, disp.points["alg"].acc_absent])  # fmt: skip
    assert disp.ax_.get_xlim() == (0.0, 100.0)


def test_seen_absent_from_predictions_numbers_without_drawing(data):
    from calib.figures import SeenAbsentDisplay

    z, y = data
    disp = SeenAbsentDisplay.from_predictions(
        {"pre-trained": z + 1.0, "fine-tuned": z}, y, SEEN, gammas={"mine": 0.5}, plot=False
    )
    assert disp.figure_ is None and disp.ax_ is None
    assert list(disp.curves) == ["pre-trained", "fine-tuned"]
    assert disp.points["mine"].curve == "fine-tuned" and disp.points["mine"].selector is None
    disp.plot()
    assert disp.ax_ is not None
    with pytest.raises(ValueError, match="gamma"):
        SeenAbsentDisplay.from_predictions(z, y, SEEN, gammas={"bad": float("nan")}, plot=False)


def test_from_estimator_refuses_unfitted(data):
    from calib.figures import ReliabilityDisplay, SeenAbsentDisplay

    z, y = data
    with pytest.raises(ValueError, match=r"calibrators\['alg'\] must be a fitted"):
        SeenAbsentDisplay.from_estimator(LogitBiasCalibrator("alg"), z, y)
    with pytest.raises(ValueError, match="calibrators is empty"):
        ReliabilityDisplay.from_estimator({}, z, y)


def test_reliability_from_estimator(data):
    from calib.figures import ReliabilityDisplay

    z, y = data
    cal = LogitBiasCalibrator("fixed", gamma=1.0, temperature=2.0).fit(
        seen_classes=SEEN, num_classes=8
    )
    disp = ReliabilityDisplay.from_estimator(cal, z, y, n_bins=10)
    assert list(disp.diagrams) == ["all", "seen", "absent"]
    labels = list(disp.diagrams["absent"])
    assert labels == ["uncalibrated", "+ γ (fixed)", "+ γ + T (fixed, T = 2.00)"]
    want = reliability_diagram(z, y, SEEN, gamma=1.0, n_bins=10, group="absent")
    got = disp.diagrams["absent"]["+ γ (fixed)"]
    np.testing.assert_array_equal(got.count, want.count)  # same function, same input
    assert disp.ax_.shape == (3,) and disp.count_ax_.shape == (3,)
    assert disp.figure_ is disp.ax_[0].figure
    assert disp.ax_[0].get_ylabel() == "accuracy (%)"


def test_reliability_from_predictions_checks_input(data):
    from calib.figures import ReliabilityDisplay

    z, y = data
    with pytest.raises(ValueError, match="series is empty"):
        ReliabilityDisplay.from_predictions(z, y, SEEN, series={})
    with pytest.raises(ValueError, match="groups is empty"):
        ReliabilityDisplay.from_predictions(z, y, SEEN, groups=())
    disp = ReliabilityDisplay.from_predictions(z, y, SEEN, groups="seen", plot=False)
    assert list(disp.diagrams) == ["seen"] and disp.figure_ is None


def test_from_predictions_takes_states():
    """A SeenAbsentState in place of logits: the same curve and operating points."""
    from calib import SeenAbsentState
    from calib.figures import SeenAbsentDisplay

    rng = np.random.default_rng(0)
    z, y, seen = rng.normal(size=(50, 8)), rng.integers(0, 8, 50), [0, 1, 2]
    both = {"pre-trained": z, "fine-tuned": z + rng.normal(size=(50, 8))}
    a = SeenAbsentDisplay.from_predictions(both, y, seen, gammas={"alg": 0.7}, plot=False)
    states = {k: SeenAbsentState(8, seen).update(v, y) for k, v in both.items()}
    b = SeenAbsentDisplay.from_predictions(states, None, seen, gammas={"alg": 0.7}, plot=False)
    for k in a.curves:
        np.testing.assert_array_equal(a.curves[k].acc_seen, b.curves[k].acc_seen)
        np.testing.assert_array_equal(a.curves[k].acc_absent, b.curves[k].acc_absent)
    assert a.points == b.points
