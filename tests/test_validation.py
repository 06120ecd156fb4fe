"""calib.validation: one validator per parameter, so every entry point refuses the same bad value
with the same message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import calib
from calib.metrics.probability import probability_report, shifted_probabilities
from calib.validation import check_gamma

Z = np.array([[2.0, 1.0, 0.5], [0.1, 0.2, 3.0]])
Y = np.array([0, 2])


def _entry_points(gamma):
    """Every public place that takes a finite γ, called with ``gamma``. (``accuracy_report`` also
    takes ±inf, the ends of the seen–absent curve; it refuses what is not a real number alike.)"""
    finite = isinstance(gamma, float) and not np.isfinite(gamma)
    return [
        *([] if finite else [lambda: calib.accuracy_report(Z, Y, [0, 1], gamma=gamma, topk=(1,))]),
        lambda: shifted_probabilities(Z, [2], gamma),
        lambda: probability_report(Z, Y, [0, 1], gamma=gamma),
        lambda: calib.LogitBiasCalibrator("fixed", gamma=gamma).fit(
            seen_classes=[0, 1], num_classes=3
        ),
        lambda: calib.CalibratedClassifier(torch.nn.Linear(2, 3), gamma, [2], 3),
    ]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1.5", "gamma must be a real number, got '1.5'"),
        (True, "gamma must be a real number, got True"),
        (float("nan"), "gamma must be finite, got nan"),
        (float("inf"), "gamma must be finite, got inf"),
        (np.array([1.0, 2.0]), r"gamma must be a scalar, got an array of shape \(2,\)"),
    ],
)
def test_every_entry_point_refuses_a_bad_gamma_alike(bad, message):
    for call in _entry_points(bad):
        with pytest.raises(ValueError, match=message):
            call()


def test_gamma_takes_numbers_and_one_element_arrays():
    assert check_gamma(2) == 2.0 and isinstance(check_gamma(np.float32(0.5)), float)
    assert check_gamma(torch.tensor([1.25], dtype=torch.float64)) == 1.25


def test_sample_weight_and_average_checks():
    from calib.validation import check_average, check_sample_weight

    assert check_sample_weight(None, 3) is None
    w = check_sample_weight(torch.tensor([1, 0, 2]), 3)
    assert w.dtype == np.float64 and w.tolist() == [1.0, 0.0, 2.0]
    assert check_average("micro") == "micro" and check_average("macro") == "macro"
    for bad in ("Macro", "weighted", None, 1):
        with pytest.raises(ValueError, match=f"average must be one of .*got {bad!r}"):
            check_average(bad)
    with pytest.raises(ValueError, match="sample_weight has 2 entries but test_features have 3"):
        check_sample_weight([1.0, 1.0], 3, rows="test_features")
    with pytest.raises(TypeError, match="sample_weight must be real, got complex"):
        check_sample_weight(np.ones(3) + 1j, 3)
