"""LogitBiasCalibrator with sample weights and the class-balanced average: fit routes
``sample_weight`` to the selectors that declare it (and names the refusal), ``score`` and
``report`` take ``sample_weight=`` and ``average=``."""

from __future__ import annotations

import numpy as np
import pytest

import tests.brute as brute
from calib import LogitBiasCalibrator, accuracy_report
from calib.selectors import select_oracle


def problem(seed: int = 0, n: int = 80, c: int = 7):
    rng = np.random.default_rng(seed)
    z = rng.integers(-16, 16, size=(n, c)) / 4.0
    z[:, :3] += 1.0
    y = rng.integers(0, c, size=n)
    w = rng.integers(0, 4, size=n).astype(float)
    w[0] = 1.0
    return z, y, w


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_oracle_fit_takes_sample_weight_and_average(average):
    z, y, w = problem()
    cal = LogitBiasCalibrator("oracle", options={"average": average}).fit(
        z, y, [0, 1, 2], sample_weight=w
    )
    gamma, info = select_oracle(z, y, [0, 1, 2], average=average, sample_weight=w)
    assert cal.gamma_ == gamma and cal.info_["value"] == info["value"]
    assert cal.info_["average"] == average and cal.info_["weighted"] is True
    k = w.astype(int)
    rows = LogitBiasCalibrator("oracle", options={"average": average}).fit(
        np.repeat(z, k, 0), np.repeat(y, k), [0, 1, 2]
    )
    assert rows.info_["value"] == pytest.approx(cal.info_["value"], abs=1e-12)


def test_a_selector_that_weighs_nothing_refuses_sample_weight():
    z, y, w = problem()
    s = np.isin(y, [0, 1, 2])
    with pytest.raises(ValueError, match="method 'alg' does not take sample_weight"):
        LogitBiasCalibrator("alg").fit(z[s], y[s], [0, 1, 2], sample_weight=w[s])
    with pytest.raises(
        ValueError, match="'pcv' does not take sample_weight: give each PseudoSplit"
    ):
        LogitBiasCalibrator("pcv").fit(seen_classes=[0, 1, 2], pseudo_splits=[], sample_weight=w)
    with pytest.raises(ValueError, match="sample_weight has 3 entries but logits have 80 rows"):
        LogitBiasCalibrator("oracle").fit(z, y, [0, 1, 2], sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="average must be one of"):
        LogitBiasCalibrator("oracle", options={"average": "mean"}).fit(z, y, [0, 1, 2])


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_score_and_report_take_weights_and_average(average):
    z, y, w = problem(1)
    cal = LogitBiasCalibrator("fixed", gamma=0.75).fit(seen_classes=[0, 1, 2], num_classes=7)
    want = brute.weighted_accuracies(z, y, [0, 1, 2], range(3, 7), 0.75, 1, w, average)
    assert cal.score(z, y, sample_weight=w, average=average) == pytest.approx(
        want["acc_all"], abs=1e-12
    )
    report = cal.report(z, y, topk=(1,), sample_weight=w, average=average)
    for key in brute.KEYS:
        assert report[key] == pytest.approx(want[key], abs=1e-12), key
    plain = accuracy_report(z, y, [0, 1, 2], gamma=0.75, topk=(1,), average=average)
    assert cal.report(z, y, topk=(1,), average=average) == plain
    with pytest.raises(ValueError, match="average must be one of"):
        cal.score(z, y, average="weighted")
