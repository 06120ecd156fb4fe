"""The corrections' operating points on the seen–absent figure: one point each, where the
corrected logits' accuracies are, beside the γ curve."""

from __future__ import annotations

import numpy as np
import pytest

from calib.estimator.weight_aligning import WeightAligning
from calib.metrics.accuracy import accuracy_report


@pytest.fixture
def task():
    rng = np.random.default_rng(0)
    n, c, d = 300, 6, 8
    y = rng.integers(0, c, n)
    means = rng.normal(size=(c, d)) * 2
    f = means[y] + rng.normal(size=(n, d))
    w = means.copy()
    w[:3] *= 2.5  # S = {0, 1, 2}: rows grown by fine-tuning
    return f @ w.T, y, w


def test_correction_points_are_drawn_at_their_accuracies(task, tmp_path):
    from calib.figures import SeenAbsentDisplay
    from calib.figures.files import save_figure

    z, y, w = task
    wa = WeightAligning().fit(w, None, [0, 1, 2])
    rep = accuracy_report(wa.transform(z), y, [0, 1, 2])
    disp = SeenAbsentDisplay.from_predictions(
        {"fine-tuned": z}, y, [0, 1, 2], gammas={"alg": 1.0},
        corrections={"wa": (rep["acc_seen"], rep["acc_absent"])},
        title="corrections beside γ",
    )  # fmt: skip
    assert disp.corrections == {"wa": (100 * rep["acc_seen"], 100 * rep["acc_absent"])}
    lines = {ln.get_label(): ln for ln in disp.ax_.get_lines()}
    label = "wa (its own logits, not a γ)"
    assert label in lines
    np.testing.assert_allclose(lines[label].get_xdata(), [100 * rep["acc_seen"]])
    np.testing.assert_allclose(lines[label].get_ydata(), [100 * rep["acc_absent"]])
    assert rep["acc_absent"] > accuracy_report(z, y, [0, 1, 2])["acc_absent"]  # WA moved it
    save_figure(disp.figure_, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_a_point_outside_zero_one_is_refused(task):
    from calib.figures import SeenAbsentDisplay

    z, y, _ = task
    with pytest.raises(ValueError, match=r"corrections\['bic'\] must be \(acc_seen, acc_absent\)"):
        SeenAbsentDisplay.from_predictions(z, y, [0, 1, 2], corrections={"bic": (55.0, 40.0)})
