"""Nearest class mean (NCM, cosine) accuracy: are the features of the absent classes still good?

Fine-tuning on S alone inflates the logits of S, but the features of the absent classes U
often improve too; NCM on the features, with one mean per class, shows it without going
through the biased head. The class means come from *labelled training features of every
class of S ∪ U*, so NCM over U uses labelled U data that the fine-tuning never saw: like the
oracle γ, it is an analysis tool (an upper reference), not a method one can deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from calib.class_names import check_class_names, class_ids, describe_classes
from calib.metrics.accuracy import accuracy_report
from calib.validation import (
    as_numpy,
    check_average,
    check_classes,
    check_labels,
    check_sample_weight,
    like_input,
)

__all__ = ["class_means", "ncm_scores", "ncm_report"]

_EPS = 1e-12  # as torch.nn.functional.normalize: an all-zero vector stays zero


def _check_features(features: Any, name: str) -> np.ndarray:
    f = as_numpy(features, name)
    if f.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, feature dims), got shape {f.shape}")
    if f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {f.shape}")
    if not (np.issubdtype(f.dtype, np.number) or f.dtype == np.bool_):
        raise TypeError(f"{name} must be numeric, got dtype {f.dtype}")
    if f.dtype not in (np.float32, np.float64):
        f = f.astype(np.float64)
    finite = np.isfinite(f)
    if not finite.all():
        row = int(np.argwhere(~finite)[0, 0])
        raise ValueError(
            f"{name} has {int((~finite).sum())} non-finite value(s) (NaN or inf); first in sample {row}"
        )
    return f


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def _label(column: int, names: Sequence[str] | None) -> str:
    """``"7 dog"`` for a named column, ``"7"`` otherwise (a label past the names: unnamed)."""
    c = int(column)
    return f"{c} {names[c]}" if names is not None and 0 <= c < len(names) else str(c)


def class_means(
    train_features: Any,
    train_labels: Any,
    classes: Any,
    *,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """(len(classes), D) unit class means: L2-normalise each feature, average per class, normalise.

    Row j is the mean of class ``classes[j]``; training samples of other classes are ignored.
    ``classes``: label indices, or names of ``class_names`` (one name per class, index =
    label; the two may be mixed).

    Raises:
        ValueError: bad shapes or values, repeated classes, a class without a training sample,
            or a class name not in ``class_names`` (with a did-you-mean).
    """
    f = _check_features(train_features, "train_features")
    y = check_labels(train_labels, f.shape[0], None, "train_labels", rows="features")
    names = check_class_names(class_names)
    classes = np.ravel(as_numpy(class_ids(classes, names, "classes"), "classes")).astype(np.int64)
    if np.unique(classes).size != classes.size:
        raise ValueError(f"classes lists a class more than once: {classes.tolist()[:20]}")
    present = np.isin(classes, y)
    if not present.all():
        missing = classes[~present]
        shown = missing.tolist()[:10] if names is None else describe_classes(missing, names)
        raise ValueError(
            f"class(es) {shown} have no training sample: "
            "NCM needs labelled training features of every class it scores"
        )
    keep = np.isin(y, classes)
    by_index = np.argsort(classes)
    rows = by_index[np.searchsorted(classes[by_index], y[keep])]  # row j of class classes[j]
    sums = np.zeros((classes.size, f.shape[1]), dtype=np.float64)
    np.add.at(sums, rows, _normalize(f[keep]))
    return _normalize(sums)


def ncm_scores(
    train_features: Any,
    train_labels: Any,
    features: Any,
    classes: Any,
    *,
    class_names: Sequence[str] | None = None,
) -> Any:
    """Cosine similarity of each feature to each class mean: (N, len(classes)), in [-1, 1].

    Args:
        train_features: (M, D) training features (numpy or torch) from which the means come.
        train_labels: (M,) their integer labels; samples of classes not in ``classes`` are ignored.
        features: (N, D) features to score.
        classes: the classes to score, in the order of the output columns: label indices, or
            names of ``class_names``.
        class_names: one name per class (index = label), so that ``classes`` may hold names.

    Returns:
        The scores, as numpy or as a torch tensor on ``features``' device, like ``features``.
    """
    means = class_means(train_features, train_labels, classes, class_names=class_names)
    f = _check_features(features, "features")
    if f.shape[1] != means.shape[1]:
        raise ValueError(
            f"features have {f.shape[1]} dims but train_features have {means.shape[1]}"
        )
    return like_input(_normalize(f) @ means.T, features)


def ncm_report(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    num_classes: int | None = None,
    *,
    sample_weight: Any = None,
    average: str = "micro",
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """:func:`calib.accuracy_report` (γ = 0) of the NCM classifier over the classes S ∪ U.

    NCM over U needs labelled training features of U, which the fine-tuning never had: use
    it to analyse features (like the oracle γ), not as a calibration method.

    The classifier scores the classes of S ∪ U only (extra head columns R play no part), so the
    "/Y" accuracies here are over S ∪ U.

    Args:
        train_features: (M, D) labelled training features, every class of S ∪ U present.
        train_labels: (M,) their labels (samples of other classes are ignored).
        test_features: (N, D) test features.
        test_labels: (N,) test labels, each in S ∪ U.
        seen_classes: S; absent_classes: U (default: every class in [0, num_classes) not in S);
            label indices, or names of ``class_names`` (the two may be mixed).
        num_classes: number of classes Y; default ``len(class_names)`` when names are given,
            else 1 + the largest label or class index given.
        sample_weight: (N,) weights of the test samples; average: ``"micro"`` or
            ``"macro"`` (class-balanced), as in :func:`calib.accuracy_report`.
        class_names: (Y,) one name per class (index = label), so that the classes may be
            given by name (:mod:`calib.class_names`) and errors show them.

    Returns:
        The keys of :func:`calib.accuracy_report` (top-1 and top-5), with ``gamma`` = 0.

    Raises:
        ValueError: bad shapes or values, a class of S ∪ U without a training sample, a test
            label outside S ∪ U, a class name not in ``class_names`` (with a did-you-mean),
            names without ``class_names``, or ``class_names`` that are not Y names (one per column).
    """
    train_f = _check_features(train_features, "train_features")
    train_y = check_labels(train_labels, train_f.shape[0], None, "train_labels", rows="features")
    test_f = _check_features(test_features, "test_features")
    test_y = check_labels(test_labels, test_f.shape[0], None, "test_labels", rows="features")
    check_average(average)
    weights = check_sample_weight(sample_weight, test_f.shape[0], rows="test_features")
    names = check_class_names(class_names, num_classes)
    seen_classes = class_ids(seen_classes, names, "seen_classes")
    absent_classes = class_ids(absent_classes, names, "absent_classes")
    if num_classes is None and names is not None:
        num_classes = len(names)
    elif num_classes is None:
        indices = [train_y, test_y, np.ravel(as_numpy(seen_classes, "seen_classes"))]
        if absent_classes is not None:
            indices.append(np.ravel(as_numpy(absent_classes, "absent_classes")))
        num_classes = 1 + max(int(np.max(i)) for i in indices if np.size(i))
    seen, absent = check_classes(seen_classes, absent_classes, num_classes)
    classes = np.concatenate([seen, absent])
    outside = ~np.isin(test_y, classes)
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} test label(s) outside seen ∪ absent, e.g. "
            f"{_label(test_y[outside][0], names)}: NCM classifies among S ∪ U only"
        )
    scores = ncm_scores(train_f, train_y, test_f, classes, class_names=names)
    # column j of the sub-problem is class classes[j]: S first, then U
    remap = np.empty(num_classes, dtype=np.int64)
    remap[classes] = np.arange(classes.size)
    return accuracy_report(
        scores,
        remap[test_y],
        np.arange(seen.size),
        np.arange(seen.size, classes.size),
        gamma=0.0,
        sample_weight=weights,
        average=average,
    )
