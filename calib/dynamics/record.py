"""One epoch's evaluation as one flat row of the training history (pure: arrays in, numbers out).

Every accuracy comes from the library's metrics (:func:`calib.accuracy_report`,
:func:`calib.seen_absent_curve`, :func:`calib.metrics.ncm.ncm_report`) and the ALG γ from
:class:`calib.LogitBiasCalibrator`, so a history row at epoch k equals what those give on the
model of epoch k. :data:`HISTORY_KEYS` documents every key with its unit.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from calib.dynamics.stats import head_statistics, logit_statistics
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.metrics.accuracy import accuracy_report
from calib.metrics.curve import seen_absent_curve
from calib.metrics.ncm import ncm_report
from calib.validation import as_numpy, check_classes, check_logits

__all__ = ["HISTORY_KEYS", "epoch_record", "epoch_evaluation"]

_ACC = ("acc_all", "acc_seen", "acc_absent", "acc_seen_seen", "acc_absent_absent", "hmean")

#: Every key of a history row → what it holds and its unit. Accuracies are fractions in
#: [0, 1] of the target test set (Acc A/B: samples labelled in A, argmax over columns of B);
#: NaN (``null`` in JSON, empty in CSV) where a value is undefined or its input was not given.
HISTORY_KEYS: dict[str, str] = {
    "epoch": "epochs of fine-tuning done (0 = the pre-trained model); count",
    "acc_all": "Acc Y/Y, γ = 0; fraction",
    "acc_seen": "Acc S/Y, γ = 0; fraction",
    "acc_absent": "Acc U/Y, γ = 0; fraction",
    "acc_seen_seen": "Acc S/S; fraction",
    "acc_absent_absent": "Acc U/U; fraction",
    "hmean": "harmonic mean of acc_seen and acc_absent, γ = 0; fraction",
    "ausuc": "area under the seen–absent curve (Acc S/Y vs Acc U/Y over all γ); fraction",
    "n_samples": "test samples; count",
    "n_seen": "test samples labelled in S; count",
    "n_absent": "test samples labelled in U; count",
    "ncm_acc_all": "NCM (cosine, class means of training features) Acc over S ∪ U; fraction",
    "ncm_acc_seen": "NCM Acc S/(S ∪ U); fraction",
    "ncm_acc_absent": "NCM Acc U/(S ∪ U); fraction",
    "ncm_acc_seen_seen": "NCM Acc S/S; fraction",
    "ncm_acc_absent_absent": "NCM Acc U/U; fraction",
    "ncm_hmean": "harmonic mean of ncm_acc_seen and ncm_acc_absent; fraction",
    "ncm_means": "where the NCM class means come from: 'train' (target train) or 'test'; text",
    "gamma_alg": "ALG γ fitted on this epoch's target-train logits of S samples; logit units",
    "alg_acc_all": "Acc Y/Y with γ = gamma_alg; fraction",
    "alg_acc_seen": "Acc S/Y with γ = gamma_alg; fraction",
    "alg_acc_absent": "Acc U/Y with γ = gamma_alg; fraction",
    "alg_hmean": "hmean with γ = gamma_alg; fraction",
    "logit_seen_mean": "mean over test samples of the mean logit of S columns; logit units",
    "logit_absent_mean": "mean over test samples of the mean logit of U columns; logit units",
    "logit_seen_mean_on_absent": "as logit_seen_mean, over U-labelled samples; logit units",
    "logit_absent_mean_on_absent": "as logit_absent_mean, over U-labelled samples; logit units",
    "logit_gt_absent": "mean ground-truth logit of U-labelled samples; logit units",
    "logit_other_absent_max": "mean largest other absent logit, U-labelled samples; logit units",
    "logit_seen_max_on_absent": "mean largest seen logit, U-labelled samples; logit units",
    "weight_norm_seen_mean": "mean L2 norm of the head rows of S; weight units",
    "weight_norm_absent_mean": "mean L2 norm of the head rows of U; weight units",
    "update_norm_seen_mean": "mean L2 norm of W − W_pre over the rows of S; weight units",
    "update_norm_absent_mean": "mean L2 norm of W − W_pre over the rows of U; weight units",
    "update_cos_absent_absent": "mean cosine between updates of two U classes; in [-1, 1]",
    "update_cos_seen_absent": "mean cosine between updates of an S and a U class; in [-1, 1]",
    "n_train": "target-train samples scored (0 when none given); count",
    "eval_seconds": "wall time of this evaluation (extraction included); seconds",
}

_NAN = float("nan")
_OPTIONAL_NAN = [k for k in HISTORY_KEYS if k.startswith(("ncm_acc", "ncm_h", "alg_", "update_"))]


def _ncm(train_f, train_y, test_f, test_y, seen, absent, num_classes) -> dict[str, float]:
    """``ncm_*`` of the classes of S ∪ U that have mean features; test samples of others dropped."""
    s = np.intersect1d(seen, train_y)
    u = np.intersect1d(absent, train_y)
    if s.size == 0 or u.size == 0:
        return {}
    if s.size + u.size < len(seen) + len(absent):
        warnings.warn(
            f"NCM: {len(seen) + len(absent) - s.size - u.size} class(es) of S ∪ U have no "
            "feature to average; NCM classifies among the others",
            RuntimeWarning,
            stacklevel=3,
        )
    keep = np.isin(test_y, np.concatenate([s, u]))
    report = ncm_report(train_f, train_y, test_f[keep], test_y[keep], s, u, num_classes)
    return {f"ncm_{k}": report[k] for k in _ACC}


def _ncm_row(y, test_features, train_features, train_labels, seen, absent, num_classes) -> dict:
    """The ``ncm_*`` keys; class means from the training features when given, else the test's."""
    if train_features is not None and train_labels is not None:
        means_f, means_y, source = train_features, train_labels, "train"
    else:  # transductive: the test set's own labelled means (analysis only)
        means_f, means_y, source = test_features, y, "test"
    row = _ncm(
        as_numpy(means_f, "train_features"),
        as_numpy(means_y, "train_labels").astype(np.int64),
        as_numpy(test_features, "test_features"),
        y.astype(np.int64),
        seen,
        absent,
        num_classes,
    )
    return row | {"ncm_means": source}


def _alg(train_logits, train_labels, test_logits, test_labels, seen, absent) -> dict[str, float]:
    in_seen = np.isin(train_labels, seen)
    if not in_seen.any():
        return {}
    cal = LogitBiasCalibrator(method="alg").fit(
        train_logits[in_seen], train_labels[in_seen], seen, absent
    )
    report = accuracy_report(test_logits, test_labels, seen, absent, cal.gamma_, topk=(1,))
    out = {"gamma_alg": float(cal.gamma_)}
    out |= {f"alg_{k}": report[k] for k in ("acc_all", "acc_seen", "acc_absent", "hmean")}
    return out


def epoch_evaluation(
    epoch: int,
    test_logits: Any,
    test_labels: Any,
    seen: Any,
    absent: Any,
    *,
    test_features: Any = None,
    train_logits: Any = None,
    train_labels: Any = None,
    train_features: Any = None,
    head_weight: Any = None,
    pretrained_head_weight: Any = None,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """:func:`epoch_record` and the epoch's arrays: ``{"curve": {...}, "head": {...}}``.

    ``curve`` holds the seen–absent curve (``gamma``, ``acc_seen``, ``acc_absent``, ``acc_all``,
    each (M + 1,), γ ascending, and ``ausuc`` as a 0-d array); ``head`` (when a head weight is
    given) ``weight_norm`` (C,) and ``seen``, ``absent``, the class indices.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    z = as_numpy(test_logits, "test_logits")
    y = as_numpy(test_labels, "test_labels")
    seen, absent = check_classes(seen, absent, check_logits(z, "test_logits").shape[1])
    report = accuracy_report(z, y, seen, absent, topk=(1,))
    curve = seen_absent_curve(z, y, seen, absent)
    row: dict[str, Any] = {"epoch": int(epoch)} | {k: report[k] for k in _ACC}
    row |= {"ausuc": curve.ausuc, "n_samples": report["n_samples"]}
    row |= {"n_seen": report["n_seen"], "n_absent": report["n_absent"]}
    row |= dict.fromkeys(_OPTIONAL_NAN, _NAN) | {"gamma_alg": _NAN, "ncm_means": ""}
    row["n_train"] = (
        0 if train_labels is None else int(np.size(as_numpy(train_labels, "train_labels")))
    )
    if test_features is not None:
        row |= _ncm_row(y, test_features, train_features, train_labels, seen, absent, z.shape[1])
    if train_logits is not None and train_labels is not None:
        tz = as_numpy(train_logits, "train_logits")
        row |= _alg(tz, as_numpy(train_labels, "train_labels"), z, y, seen, absent)
    row |= logit_statistics(z, y, seen, absent)
    arrays = {"curve": _curve_arrays(curve)}
    if head_weight is not None:
        head = head_statistics(head_weight, pretrained_head_weight, seen, absent)
        arrays["head"] = {"weight_norm": head.pop("weight_norm"), "seen": seen, "absent": absent}
        row |= head
    else:
        row |= {"weight_norm_seen_mean": _NAN, "weight_norm_absent_mean": _NAN}
    ordered = {k: row[k] for k in HISTORY_KEYS if k in row}
    return ordered | {k: v for k, v in row.items() if k not in ordered}, arrays


def _curve_arrays(curve) -> dict[str, np.ndarray]:
    out = {k: np.asarray(getattr(curve, k), dtype=np.float64) for k in _CURVE_FIELDS}
    out["ausuc"] = np.asarray(curve.ausuc, dtype=np.float64)
    return out


_CURVE_FIELDS = ("gamma", "acc_seen", "acc_absent", "acc_all")


def epoch_record(epoch: int, test_logits: Any, test_labels: Any, seen: Any, absent: Any, **kw):
    """One flat history row for ``epoch``: the keys of :data:`HISTORY_KEYS` (but ``n_train``
    counts the given training labels and ``eval_seconds`` is the caller's to add).

    Args:
        epoch: epochs of fine-tuning done (0 = pre-trained).
        test_logits: (N, C) target-test logits; test_labels: (N,) their labels.
        seen, absent: the classes S and U (``absent=None``: every column not in S).
        test_features: (N, D) test features, for NCM (omitted: NCM keys NaN).
        train_logits, train_labels: (M, C), (M,) target-train logits and labels (eval
            transform) of this epoch; the S samples fit ALG γ (omitted: ALG keys NaN).
        train_features: (M, D) their features: the NCM class means (omitted: the test
            features' own class means, ``ncm_means = 'test'``).
        head_weight: (C, D) the linear head now (omitted: head keys NaN).
        pretrained_head_weight: (C, D) the pre-trained head (omitted: update keys NaN).

    Returns:
        A dict of Python numbers (and the text ``ncm_means``).
    """
    return epoch_evaluation(epoch, test_logits, test_labels, seen, absent, **kw)[0]
