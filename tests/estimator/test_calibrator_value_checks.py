"""fit checks the logits' values once: in the built-in selectors' own pass, or before a user's."""

from __future__ import annotations

import numpy as np
import pytest

from calib import LogitBiasCalibrator
from calib.selectors import SELECTORS, register_selector

SEEN = [0, 2, 4, 6]


def _logits(bad: float | None = None, row_all_neg_inf: bool = False) -> np.ndarray:
    z = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    if bad is not None:
        z[5, 3] = bad
    if row_all_neg_inf:
        z[7] = -np.inf
    return z


def _fit(method: str, z: np.ndarray) -> LogitBiasCalibrator:
    labels = np.array(SEEN * 10)  # S labels: valid for alg, oracle and prior alike
    if method == "prior":
        return LogitBiasCalibrator(method).fit(z, seen_classes=SEEN)
    return LogitBiasCalibrator(method).fit(z, labels, SEEN)


@pytest.mark.parametrize("method", ["alg", "oracle", "prior"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_builtin_selectors_refuse_non_finite_logits(method, bad):
    with pytest.raises(ValueError, match=r"logits has 1 non-finite value\(s\).*sample 5, class 3"):
        _fit(method, _logits(bad))


@pytest.mark.parametrize("method", ["alg", "oracle", "prior"])
def test_builtin_selectors_refuse_rows_without_a_predictable_class(method):
    with pytest.raises(ValueError, match="sample 7 has -inf in every column"):
        _fit(method, _logits(row_all_neg_inf=True))


def test_a_user_selector_gets_logits_whose_values_are_checked():
    calls = []

    @register_selector("value_probe", data="target_unlabelled")
    def value_probe(logits, seen_classes, absent_classes, num_classes):
        calls.append(np.isfinite(logits).all())
        return 0.0, {}

    try:
        with pytest.raises(ValueError, match="non-finite"):
            LogitBiasCalibrator("value_probe").fit(_logits(np.nan), seen_classes=SEEN)
        assert calls == []  # refused before the selector ran
        LogitBiasCalibrator("value_probe").fit(_logits(), seen_classes=SEEN)
        assert calls == [True]
    finally:
        if "value_probe" in SELECTORS:
            SELECTORS.unregister("value_probe")


def test_report_checks_the_values_in_the_reports_pass():
    cal = LogitBiasCalibrator("fixed", gamma=0.5).fit(seen_classes=SEEN, num_classes=8)
    labels = np.array(SEEN * 10)
    want = cal.report(_logits(), labels)
    assert want["acc_all"] == cal.score(_logits(), labels)
    with pytest.raises(ValueError, match=r"non-finite value\(s\).*sample 5, class 3"):
        cal.report(_logits(np.nan), labels)
