"""Head and logit statistics and the epoch row, against brute-force loops and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib import accuracy_report, seen_absent_curve
from calib.dynamics import (
    HISTORY_KEYS,
    epoch_evaluation,
    epoch_record,
    head_statistics,
    logit_statistics,
    mean_cosine,
)
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.metrics.ncm import ncm_report

SEEN, ABSENT = [0, 2, 5], [1, 3, 6]  # column 4 is an "other" class R


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def heads():
    rng = np.random.default_rng(1)
    w_pre = rng.normal(size=(7, 5))
    return w_pre + rng.normal(scale=0.3, size=(7, 5)), w_pre


def test_head_statistics_match_loops(heads):
    w, w_pre = heads
    stats = head_statistics(torch.tensor(w), w_pre, SEEN, ABSENT)
    norms = [math.sqrt(sum(x * x for x in row)) for row in w]
    np.testing.assert_allclose(stats["weight_norm"], norms)
    assert stats["weight_norm_seen_mean"] == pytest.approx(np.mean([norms[c] for c in SEEN]))
    assert stats["weight_norm_absent_mean"] == pytest.approx(np.mean([norms[c] for c in ABSENT]))
    d = w - w_pre
    uu = [_cos(d[i], d[j]) for i in ABSENT for j in ABSENT if i != j]
    su = [_cos(d[i], d[j]) for i in SEEN for j in ABSENT]
    assert stats["update_cos_absent_absent"] == pytest.approx(np.mean(uu))
    assert stats["update_cos_seen_absent"] == pytest.approx(np.mean(su))
    assert stats["update_norm_seen_mean"] == pytest.approx(
        np.mean([np.linalg.norm(d[c]) for c in SEEN])
    )
    assert stats["update_norm_absent_mean"] == pytest.approx(
        np.mean([np.linalg.norm(d[c]) for c in ABSENT])
    )


def test_identical_updates_have_cosine_one_and_no_update_is_nan(heads):
    w, w_pre = heads
    moved = w_pre.copy()
    moved[ABSENT] += np.array([1.0, 2.0, 0.0, 0.0, 0.5])  # one shared direction
    moved[SEEN] -= np.array([1.0, 2.0, 0.0, 0.0, 0.5])
    stats = head_statistics(moved, w_pre, SEEN, ABSENT)
    assert stats["update_cos_absent_absent"] == pytest.approx(1.0)
    assert stats["update_cos_seen_absent"] == pytest.approx(-1.0)
    still = head_statistics(w_pre, w_pre, SEEN, ABSENT)
    assert math.isnan(still["update_cos_absent_absent"]) and still["update_norm_seen_mean"] == 0
    assert "update_cos_seen_absent" not in head_statistics(w, None, SEEN, ABSENT)


def test_mean_cosine_leaves_out_zero_rows():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert mean_cosine(a) == pytest.approx(_cos(a[0], a[2]))
    assert math.isnan(mean_cosine(a[:2]))


def test_head_statistics_reject_bad_shapes(heads):
    w, w_pre = heads
    with pytest.raises(ValueError, match="pretrained_head_weight has shape"):
        head_statistics(w, w_pre[:, :3], SEEN, ABSENT)
    with pytest.raises(ValueError, match="head_weight must be a non-empty 2-D"):
        head_statistics(w[0], None, SEEN, ABSENT)


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(90, 7))
    y = rng.integers(0, 7, size=90)
    z[np.arange(90), y] += 1.5
    z[:, SEEN] += 1.0
    return z, y


def test_logit_statistics_match_loops(logits):
    z, y = logits
    stats = logit_statistics(z, y, SEEN, ABSENT)
    on_u = [i for i in range(len(y)) if y[i] in ABSENT]
    assert stats["logit_seen_mean"] == pytest.approx(
        np.mean([np.mean(z[i, SEEN]) for i in range(90)])
    )
    assert stats["logit_absent_mean"] == pytest.approx(
        np.mean([np.mean(z[i, ABSENT]) for i in range(90)])
    )
    assert stats["logit_seen_mean_on_absent"] == pytest.approx(
        np.mean([np.mean(z[i, SEEN]) for i in on_u])
    )
    assert stats["logit_absent_mean_on_absent"] == pytest.approx(
        np.mean([np.mean(z[i, ABSENT]) for i in on_u])
    )
    assert stats["logit_gt_absent"] == pytest.approx(np.mean([z[i, y[i]] for i in on_u]))
    other = [max(z[i, c] for c in ABSENT if c != y[i]) for i in on_u]
    assert stats["logit_other_absent_max"] == pytest.approx(np.mean(other))
    assert stats["logit_seen_max_on_absent"] == pytest.approx(
        np.mean([max(z[i, SEEN]) for i in on_u])
    )


def test_logit_statistics_without_absent_samples_are_nan(logits):
    z, y = logits
    keep = ~np.isin(y, ABSENT)
    stats = logit_statistics(z[keep], y[keep], SEEN, ABSENT)
    assert math.isnan(stats["logit_gt_absent"]) and math.isnan(stats["logit_seen_max_on_absent"])
    assert not math.isnan(stats["logit_seen_mean"])


def test_epoch_record_equals_the_library_metrics(logits, heads):
    z, y = logits
    rng = np.random.default_rng(3)
    features, train_features = rng.normal(size=(90, 4)), rng.normal(size=(70, 4))
    train_logits, train_y = rng.normal(size=(70, 7)), np.arange(70) % 7
    w, w_pre = heads
    row, arrays = epoch_evaluation(
        5, z, y, SEEN, ABSENT, test_features=features, train_logits=train_logits,
        train_labels=train_y, train_features=train_features, head_weight=w,
        pretrained_head_weight=w_pre,
    )  # fmt: skip
    report = accuracy_report(z, y, SEEN, ABSENT)
    for key in ("acc_all", "acc_seen", "acc_absent", "acc_seen_seen", "acc_absent_absent", "hmean"):
        assert row[key] == report[key]
    curve = seen_absent_curve(z, y, SEEN, ABSENT)
    assert row["ausuc"] == curve.ausuc
    np.testing.assert_array_equal(arrays["curve"]["acc_absent"], curve.acc_absent)
    s = np.isin(train_y, SEEN)
    gamma = LogitBiasCalibrator("alg").fit(train_logits[s], train_y[s], SEEN, ABSENT).gamma_
    assert row["gamma_alg"] == gamma
    assert row["alg_acc_absent"] == accuracy_report(z, y, SEEN, ABSENT, gamma)["acc_absent"]
    keep = np.isin(y, SEEN + ABSENT)  # NCM scores S ∪ U only: the R sample is left out
    ncm = ncm_report(train_features, train_y, features[keep], y[keep], SEEN, ABSENT, 7)
    assert row["ncm_acc_absent"] == ncm["acc_absent"] and row["ncm_means"] == "train"
    assert (
        row["weight_norm_seen_mean"]
        == head_statistics(w, w_pre, SEEN, ABSENT)["weight_norm_seen_mean"]
    )
    np.testing.assert_array_equal(arrays["head"]["weight_norm"], np.linalg.norm(w, axis=1))
    assert set(row) == set(HISTORY_KEYS) - {"eval_seconds"}
    assert list(row) == [k for k in HISTORY_KEYS if k in row]  # documented order


def test_epoch_record_without_optional_inputs_has_nan_keys(logits):
    z, y = logits
    row = epoch_record(0, z, y, SEEN, ABSENT)
    assert set(row) == set(HISTORY_KEYS) - {"eval_seconds"}
    for key in ("gamma_alg", "ncm_acc_all", "weight_norm_seen_mean", "update_cos_absent_absent"):
        assert math.isnan(row[key]), key
    assert row["n_train"] == 0 and row["ncm_means"] == ""
    test_means = epoch_record(0, z, y, SEEN, ABSENT, test_features=np.eye(7)[y])
    assert test_means["ncm_means"] == "test" and test_means["ncm_acc_all"] == 1.0


@pytest.mark.parametrize("epoch", [-1, 1.5, True])
def test_epoch_record_rejects_a_bad_epoch(logits, epoch):
    z, y = logits
    with pytest.raises(ValueError, match="epoch must be an integer"):
        epoch_record(epoch, z, y, SEEN, ABSENT)


def test_absent_none_means_every_other_column(logits):
    z, y = logits
    implicit = epoch_record(1, z, y, SEEN, None)
    explicit = epoch_record(1, z, y, SEEN, [1, 3, 4, 6])
    assert implicit.keys() == explicit.keys()
    assert all(implicit[k] == explicit[k] or implicit[k] != implicit[k] for k in implicit)
    with pytest.raises(ValueError, match="seen_classes and absent_classes overlap"):
        epoch_record(1, z, y, SEEN, [0, 1])
