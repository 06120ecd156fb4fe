"""Nearest class mean: class means, cosine scores, the report, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import calib
from calib.metrics import accuracy_report
from calib.metrics.ncm import class_means, ncm_report, ncm_scores

# Training features in 2-D. Unit vectors per class, averaged, normalised:
#   class 0: [1, 0], [2, 0]     → mean [1, 0]
#   class 1: [0, 1], [0, 3]     → mean [0, 1]
#   class 2: [-1, 0], [-3, 0]   → mean [-1, 0]
#   class 3: [1, 1]             → mean [1, 1]/√2 (not in S ∪ U below: ignored)
TRAIN_F = np.array([[1, 0], [0, 1], [-1, 0], [2, 0], [0, 3], [-3, 0], [1, 1]], dtype=float)
TRAIN_Y = np.array([0, 1, 2, 0, 1, 2, 3])
# Test features; cosines to the means of classes 0, 1, 2:
#   [5, 1]  y=0: ( 5,  1, −5)/√26  → 0 right
#   [0, 2]  y=1: ( 0,  1,  0)      → 1 right
#   [-1, 2] y=2: (−1,  2,  1)/√5   → 1 wrong; among U = {2} alone: right
#   [-2,-1] y=2: (−2, −1,  2)/√5   → 2 right
TEST_F = np.array([[5, 1], [0, 2], [-1, 2], [-2, -1]], dtype=float)
TEST_Y = np.array([0, 1, 2, 2])


def test_class_means_by_hand():
    means = class_means(TRAIN_F, TRAIN_Y, [2, 0, 1])
    np.testing.assert_allclose(means, [[-1, 0], [1, 0], [0, 1]])


def test_scores_by_hand_follow_the_class_order():
    scores = ncm_scores(TRAIN_F, TRAIN_Y, TEST_F, [2, 0])
    r26, r5 = math.sqrt(26), math.sqrt(5)
    want = [[-5 / r26, 5 / r26], [0, 0], [1 / r5, -1 / r5], [2 / r5, -2 / r5]]
    np.testing.assert_allclose(scores, want, atol=1e-12)


def test_report_by_hand():
    # right: samples 1, 2, 4 → acc_all 3/4; S samples both right → 1; U samples 1 of 2 → 1/2;
    # restricted: S/S both right, U/U (a single column) both right; hmean 2·1·½ / 1½ = 2/3;
    # three classes, so every top-5 accuracy is 1.
    got = ncm_report(TRAIN_F, TRAIN_Y, TEST_F, TEST_Y, [0, 1], [2])
    want = {
        "acc_all": 3 / 4,
        "acc_seen": 1.0,
        "acc_absent": 0.5,
        "acc_seen_seen": 1.0,
        "acc_absent_absent": 1.0,
        "hmean": 2 / 3,
        "acc_all_top5": 1.0,
        "hmean_top5": 1.0,
        "gamma": 0.0,
        "n_samples": 4,
        "n_seen": 2,
        "n_absent": 2,
    }
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert set(got) == set(accuracy_report(np.eye(3), [0, 1, 2], [0, 1]))
    assert calib.ncm_report is ncm_report


def test_default_absent_and_num_classes():
    # classes are inferred up to the largest index given (3), and U = every one of them not in S
    test_f, test_y = np.vstack([TEST_F, [[3, 3]]]), np.append(TEST_Y, 3)  # [3, 3] is nearest to 3
    got = ncm_report(TRAIN_F, TRAIN_Y, test_f, test_y, [0, 1])
    assert got == ncm_report(TRAIN_F, TRAIN_Y, test_f, test_y, [0, 1], [2, 3])
    assert got["n_absent"] == 3 and got["acc_absent"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no training sample"):
        ncm_report(TRAIN_F, TRAIN_Y, test_f, test_y, [0, 1], num_classes=5)  # U gets class 4


def _brute_cosine(train_f, train_y, f, classes):
    out = np.zeros((len(f), len(classes)))
    for j, c in enumerate(classes):
        units = [v / np.linalg.norm(v) for v, y in zip(train_f, train_y, strict=True) if y == c]
        mean = np.sum(units, axis=0)
        mean = mean / np.linalg.norm(mean)
        for i, v in enumerate(f):
            out[i, j] = float(np.dot(v, mean) / np.linalg.norm(v))
    return out


finite = st.floats(-10, -0.01) | st.floats(0.01, 10)  # no all-zero feature


@settings(deadline=None, max_examples=100)
@given(
    train=hnp.arrays(np.float64, st.tuples(st.integers(6, 12), st.just(3)), elements=finite),
    test=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.just(3)), elements=finite),
    scale=st.floats(0.01, 100),
)
def test_scores_match_a_plain_loop_and_ignore_feature_scale(train, test, scale):
    labels = np.arange(len(train)) % 3
    classes = [2, 0, 1]
    if np.any(np.linalg.norm(_unit_sums(train, labels, classes), axis=1) < 1e-6):
        return  # opposite unit vectors cancel: the mean direction is undefined
    scores = ncm_scores(train, labels, test, classes)
    np.testing.assert_allclose(scores, _brute_cosine(train, labels, test, classes), atol=1e-9)
    np.testing.assert_allclose(
        ncm_scores(train * scale, labels, test / scale, classes), scores, atol=1e-9
    )
    assert np.all(np.abs(scores) <= 1 + 1e-12)


def _unit_sums(train, labels, classes):
    units = train / np.linalg.norm(train, axis=1, keepdims=True)
    return np.stack([units[labels == c].sum(axis=0) for c in classes])


def test_torch_in_torch_scores_and_same_report(device):
    t = {k: torch.tensor(v, device=device) for k, v in [("a", TRAIN_F), ("b", TEST_F)]}
    scores = ncm_scores(t["a"].float(), torch.tensor(TRAIN_Y), t["b"].float(), [0, 1, 2])
    assert isinstance(scores, torch.Tensor) and scores.device.type == device.type
    np.testing.assert_allclose(
        scores.cpu().numpy(), ncm_scores(TRAIN_F, TRAIN_Y, TEST_F, [0, 1, 2]), atol=1e-6
    )
    got = ncm_report(t["a"], torch.tensor(TRAIN_Y), t["b"], torch.tensor(TEST_Y), [0, 1], [2])
    assert got == ncm_report(TRAIN_F, TRAIN_Y, TEST_F, TEST_Y, [0, 1], [2])


def test_zero_feature_scores_zero_instead_of_nan():
    scores = ncm_scores(TRAIN_F, TRAIN_Y, np.zeros((1, 2)), [0, 1])
    np.testing.assert_array_equal(scores, [[0.0, 0.0]])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_f": np.where(TRAIN_F == 2, np.nan, TRAIN_F)}, "train_features has 1 non-finite"),
        ({"test_f": np.where(TEST_F == 5, np.inf, TEST_F)}, "test_features has 1 non-finite"),
        ({"test_f": TEST_F[:, :1]}, "1 dims but train_features have 2"),
        ({"train_f": TRAIN_F[0]}, "2-D"),
        ({"test_f": TEST_F[:0]}, "empty"),
        ({"train_y": TRAIN_Y[:-1]}, "6 entries but features have 7 rows"),
        ({"test_y": TEST_Y[:-1]}, "3 entries but features have 4 rows"),
        ({"train_y": TRAIN_Y - 1}, "out of range"),
        ({"test_y": TEST_Y + 0.5}, "integer"),
        ({"test_y": np.array([0, 1, 2, 3])}, "outside seen ∪ absent"),
        (
            {"train_f": TRAIN_F[[0, 1, 3, 4, 6]], "train_y": TRAIN_Y[[0, 1, 3, 4, 6]]},
            r"\[2\] have no",
        ),
        ({"seen": [0, 2]}, "overlap"),
        ({"seen": []}, "empty"),
    ],
)
def test_bad_input_is_named(change, message):
    args = {
        "train_f": TRAIN_F,
        "train_y": TRAIN_Y,
        "test_f": TEST_F,
        "test_y": TEST_Y,
        "seen": [0, 1],
        "absent": [2],
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        ncm_report(
            args["train_f"],
            args["train_y"],
            args["test_f"],
            args["test_y"],
            args["seen"],
            args["absent"],
            num_classes=4,
        )


def test_scores_reject_repeated_classes():
    with pytest.raises(ValueError, match="more than once"):
        ncm_scores(TRAIN_F, TRAIN_Y, TEST_F, [0, 0])
