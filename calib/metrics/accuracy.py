"""Accuracy of a biased classifier on the seen (S) and absent (U) classes, at one γ.

"Acc A/B" is the accuracy on the test samples whose label is in A, argmax taken over
the columns of B. With γ added to the absent columns:

=====================  ============  ==========================================
key                    Acc           samples, columns
=====================  ============  ==========================================
``acc_all``            Y/Y           every sample, all columns
``acc_seen``           S/Y           label in S, all columns
``acc_absent``         U/Y           label in U, all columns
``acc_seen_seen``      S/S           label in S, columns of S only
``acc_absent_absent``  U/U           label in U, columns of U only
``hmean``                            harmonic mean of acc_seen and acc_absent
=====================  ============  ==========================================

Columns in neither S nor U (R, e.g. the ImageNet classes ImageNet-R lacks) stay
un-shifted and compete in every "/Y" accuracy; samples labelled in R count in
``acc_all`` only. Top-1 predictions come from :meth:`calib.rules.gaps.Gaps.predict`, the
rule the curve and the calibrators share, so ``accuracy_report`` at ``curve.gamma[k]``
reproduces curve point k exactly; top-k uses :func:`calib.rules.kernels.label_rank`, the
same rule extended to ranks.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from calib.class_names import resolve_classes
from calib.metrics.weights import sample_weights, weighted_mean
from calib.rules.gaps import gaps_of, scan_checked
from calib.rules.kernels import ABSENT, SEEN, group_argmax
from calib.validation import check_labels, check_logits, check_real

__all__ = ["accuracy_report", "harmonic_mean", "restricted_hits"]

_GROUP_KEYS = ("acc_all", "acc_seen", "acc_absent", "acc_seen_seen", "acc_absent_absent", "hmean")


def harmonic_mean(acc_seen: float, acc_absent: float) -> float:
    """2ab / (a + b); 0 when either is 0, NaN when either is NaN."""
    if math.isnan(acc_seen) or math.isnan(acc_absent):
        return float("nan")
    if acc_seen == 0 or acc_absent == 0:
        return 0.0
    return 2 * acc_seen * acc_absent / (acc_seen + acc_absent)


def restricted_hits(logits: np.ndarray, labels: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(N,) bool: the argmax over the sorted ``columns`` only (ties → lowest) equals the label.

    Only meaningful for samples whose label is in ``columns`` (the others are always False).
    """
    pred, _ = group_argmax(logits, columns)
    return pred == labels


def _check_gamma(gamma: Any) -> float:
    """``gamma`` as a Python float (±inf allowed); strings, booleans and NaN are refused."""
    return check_real(gamma, "gamma")


def _check_topk(topk: Iterable[int], num_classes: int) -> list[int]:
    """The distinct k > 1 of ``topk``, ascending (k = 1 is always reported)."""
    if isinstance(topk, (str, bytes)) or not isinstance(topk, Iterable):
        raise ValueError(f"topk must be a collection of integers >= 1, got {topk!r}")
    topk = tuple(topk)
    for k in topk:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"topk must hold integers >= 1, got {topk}")
        if k > num_classes:
            warnings.warn(
                f"topk={topk}: k={int(k)} exceeds the {num_classes} columns of the logits, so "
                f"every label is among the top {int(k)} and the _top{int(k)} accuracies are 1",
                RuntimeWarning,
                stacklevel=3,
            )
    return sorted({int(k) for k in topk if k > 1})


def group_accuracies(
    hit_all: np.ndarray,
    hit_seen_seen: np.ndarray,
    hit_absent_absent: np.ndarray,
    label_seen: np.ndarray,
    label_absent: np.ndarray,
    suffix: str,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """The report's accuracies (keys with ``suffix``) from per-sample hits, all (N,) bool: right
    at the γ of the report, right among S, right among U; the labels' groups and the effective
    weights (None: counts). :func:`accuracy_report` and the streamed state
    (:meth:`calib.metrics.streaming.SeenAbsentState.report`) both end here."""
    acc_seen = weighted_mean(hit_all, weights, label_seen)
    acc_absent = weighted_mean(hit_all, weights, label_absent)
    values = (
        weighted_mean(hit_all, weights),
        acc_seen,
        acc_absent,
        weighted_mean(hit_seen_seen, weights, label_seen),
        weighted_mean(hit_absent_absent, weights, label_absent),
        harmonic_mean(acc_seen, acc_absent),
    )
    return {key + suffix: value for key, value in zip(_GROUP_KEYS, values, strict=True)}


def warn_empty_groups(
    label_seen: np.ndarray, label_absent: np.ndarray, weights: np.ndarray | None
) -> tuple[int, int]:
    """(n_seen, n_absent): the samples labelled in S and in U ((N,) bool masks); a
    RuntimeWarning, at the report's caller, for a group whose accuracies are NaN (no sample,
    or all of its ``weights`` 0)."""
    n_seen, n_absent = int(label_seen.sum()), int(label_absent.sum())
    for rows, count, group in ((label_seen, n_seen, "seen"), (label_absent, n_absent, "absent")):
        if count == 0:
            warnings.warn(
                f"no test sample has a label in the {group} classes: its accuracies are NaN",
                RuntimeWarning,
                stacklevel=3,
            )
        elif weights is not None and not weights[rows].any():
            warnings.warn(
                f"sample_weight is 0 for every test sample of the {group} classes: its "
                "accuracies are NaN",
                RuntimeWarning,
                stacklevel=3,
            )
    return n_seen, n_absent


def accuracy_report(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    gamma: float = 0.0,
    topk: Iterable[int] = (1, 5),
    *,
    sample_weight: Any = None,
    average: str = "micro",
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Every accuracy of the table above, with bias ``gamma`` added to the absent columns.

    Args:
        logits: (N, C) scores, numpy array or torch tensor (any device, any float dtype).
        labels: (N,) integer labels in [0, C).
        seen_classes: the fine-tuning classes S: column indices, or names of ``class_names``
            (the two may be mixed).
        absent_classes: the classes U that receive γ (indices or names); default every
            column not in S.
        gamma: the bias, in logit units; -inf / +inf put no / every top-1 prediction in U.
        topk: besides top-1 (the unsuffixed keys), each k > 1 adds the same keys suffixed
            ``_top{k}``: the label is among the k best columns under the same rule.
        sample_weight: (N,) weights of the test samples (finite, ≥ 0, not all 0): a hit
            weighs its weight instead of 1. None: every sample weighs 1.
        average: ``"micro"`` (default): the (weighted) mean over the samples of each group;
            ``"macro"``: class-balanced, the mean over the classes of each group (Y, S, U) of
            the per-class (weighted) accuracy (:mod:`calib.metrics.weights`).
        class_names: (C,) one name per logit column (index = label), so that the classes
            may be given by name (:mod:`calib.class_names`); None: indices only.

    Returns:
        A dict of Python numbers: the accuracies (fractions in [0, 1]) under the keys
        ``acc_all acc_seen acc_absent acc_seen_seen acc_absent_absent hmean`` (and their
        ``_top{k}`` versions), plus ``gamma``, ``n_samples``, ``n_seen``, ``n_absent``
        (test samples in total, with a label in S, with a label in U; counts, whatever the
        weights). Accuracies over a group without test samples (or whose weights are all 0)
        are NaN, with a RuntimeWarning.

    Raises:
        ValueError: malformed logits, labels or class sets (see :mod:`calib.validation`), a NaN or
            non-scalar gamma, topk entries that are not integers >= 1, bad ``sample_weight``
            (length, NaN/inf, negative, all 0) or an ``average`` other than micro/macro; a
            class name that is not in ``class_names`` (with a did-you-mean), names without
            ``class_names``, or ``class_names`` that are not C names (one per column).
        TypeError: a gamma that is not a number.
    """
    z = check_logits(logits, values=False, on_device=True)  # values: checked in the one pass below
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = resolve_classes(seen_classes, absent_classes, z.shape[1], class_names)
    gamma = _check_gamma(gamma)
    ks = _check_topk(topk, z.shape[1])
    weights = sample_weights(sample_weight, average, y)
    scanned = scan_checked(z, seen, absent, y if ks else None, gamma)

    label_group = scanned["codes"][y]  # O(N), where np.isin sorts
    label_seen = label_group == SEEN
    label_absent = label_group == ABSENT
    n_seen, n_absent = warn_empty_groups(label_seen, label_absent, weights)

    report = group_accuracies(
        gaps_of(scanned).predict(gamma) == y,
        scanned["pred_seen"] == y,
        scanned["pred_absent"] == y,
        label_seen,
        label_absent,
        suffix="",
        weights=weights,
    )
    for k in ks:
        report |= group_accuracies(
            scanned["rank"] < k,
            scanned["rank_seen"] < k,
            scanned["rank_absent"] < k,
            label_seen,
            label_absent,
            suffix=f"_top{k}",
            weights=weights,
        )
    report |= {"gamma": gamma, "n_samples": int(z.shape[0]), "n_seen": n_seen, "n_absent": n_absent}
    return report
