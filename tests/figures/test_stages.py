"""calib.figures.stages: the numbers of the stage figure, and its drawing."""

from __future__ import annotations

import numpy as np
import pytest

from calib.figures.stages import (
    STAGE_METRICS,
    UNCALIBRATED,
    StageSeries,
    plot_stage_series,
    stage_series,
)


def _report(seen, absent, all_, gamma=None):
    out = {"acc_seen": seen, "acc_absent": absent, "acc_all": all_}
    return out if gamma is None else {**out, "gamma": gamma}


REPORTS = [
    {"none": _report(0.9, 0.1, 0.4), "alg": _report(0.8, 0.5, 0.6, 2.0), "pcv": _report(0.85, 0.4, 0.6, 1.5)},
    {"none": _report(0.95, 0.0, 0.7), "alg": _report(0.9, 0.3, 0.75, 3.0), "pcv": _report(0.9, None, 0.7, 2.5)},
]  # fmt: skip


def test_the_series_are_the_reports_in_percent_and_gamma_as_given():
    series = stage_series(REPORTS, seen_classes=[[0, 1, 2], [0, 1, 2, 3, 4]])
    assert isinstance(series, StageSeries)
    assert series.stages == ("1\n|S|=3", "2\n|S|=5")
    assert list(series.values) == list(STAGE_METRICS)
    assert list(series.values["acc_absent"]) == [UNCALIBRATED, "alg", "pcv"]
    for key in STAGE_METRICS:
        for row, name in (("none", UNCALIBRATED), ("alg", "alg"), ("pcv", "pcv")):
            want = [np.nan if r[row][key] is None else 100 * r[row][key] for r in REPORTS]
            np.testing.assert_allclose(series.values[key][name], want, rtol=1e-12)
    assert np.isnan(series.values["acc_absent"]["pcv"][1])  # JSON null: NaN, not 0
    assert series.gamma["alg"].tolist() == [2.0, 3.0]
    assert series.gamma["pcv"].tolist() == [1.5, 2.5]
    assert UNCALIBRATED not in series.gamma
    assert stage_series(REPORTS).stages == ("1", "2")


def test_a_run_s_rows_are_read_with_their_own_before_key():
    reports = [{"finetuned": r["none"], "alg": r["alg"]} for r in REPORTS]
    series = stage_series(reports, before="finetuned")
    np.testing.assert_allclose(series.values["acc_seen"][UNCALIBRATED], [90.0, 95.0])


@pytest.mark.parametrize(
    ("reports", "kwargs", "match"),
    [
        ([], {}, r"reports is empty"),
        ([{"alg": REPORTS[0]["alg"]}], {}, r"reports\[0\] has no 'none' row"),
        ([REPORTS[0], {"none": REPORTS[1]["none"]}], {}, r"reports\[1\] has rows \['none'\]"),
        ([{"none": REPORTS[0]["none"], "alg": _report(1, 1, 1)}], {}, r"\['alg'\] lacks \['gamma'\]"),
        ([{"none": {"acc_seen": 1.0}}], {}, r"reports\[0\]\['none'\] lacks \['acc_absent', 'acc_all'\]"),
        (REPORTS, {"seen_classes": [[0]]}, r"seen_classes has 1 entries for 2 stages"),
    ],
)  # fmt: skip
def test_bad_reports_are_named(reports, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stage_series(reports, **kwargs)


def test_the_figure_draws_every_series_on_every_panel(tmp_path):
    from calib.figures.files import save_figure

    fig = plot_stage_series(stage_series(REPORTS), title="digits")
    axes = fig.axes
    assert len(axes) == len(STAGE_METRICS) + 1
    for ax in axes[:-1]:
        assert [line.get_label() for line in ax.get_lines()] == ["fine-tuned, γ = 0", "alg", "pcv"]
        assert ax.get_ylim()[1] > 100.0  # percent
    gamma_lines = [line for line in axes[-1].get_lines() if line.get_label() in ("alg", "pcv")]
    assert [line.get_ydata().tolist() for line in gamma_lines] == [[2.0, 3.0], [1.5, 2.5]]
    save_figure(fig, tmp_path / "stages.png")
    assert (tmp_path / "stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
