"""The per-sample weights behind every weighted or class-balanced (macro) metric.

Every accuracy of calib is a quotient over a group G of samples (Y: all, S: label in S, U:
label in U): Σ_{i ∈ G} v_i·hit_i / Σ_{i ∈ G} v_i, with v the *effective* weights

- ``average="micro"`` (the default): v = ``sample_weight`` (1 for every sample when None), the
  per-sample (weighted) mean;
- ``average="macro"`` (class-balanced): v_i = w_i / W_{y_i}, with W_c = Σ_{j: y_j = c} w_j the
  total weight of class c. Every class with test samples (W_c > 0) then weighs 1 in total, so
  over any union of classes G — S, U and Y alike — the quotient is the mean over the classes of
  G of the per-class (weighted) accuracy Σ_{y_i = c} w_i·hit_i / W_c. Without ``sample_weight``
  a hit weighs 1 / n_c (n_c the test samples of its class): the balanced accuracy of the
  zero-shot protocol of Xian et al. (2018). Classes without test samples (or with weight 0
  only) take no part.

The same weights make the exact curve exact: a sample's hit weighs v_i instead of 1 at the same
breakpoints (:mod:`calib.metrics.curve`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calib.validation import check_average, check_sample_weight

__all__ = ["effective_weights", "sample_weights", "weighted_mean"]


def effective_weights(
    labels: np.ndarray, weights: np.ndarray | None, average: str
) -> np.ndarray | None:
    """(N,) float64 effective weights v of checked int64 ``labels`` and checked ``weights``
    (None or (N,) float64, finite, ≥ 0), or None for ``micro`` without weights (every metric
    then counts hits in integers, exactly as before weights existed)."""
    if average == "micro":
        return weights
    totals = np.bincount(labels, weights=weights)  # W_c; n_c without weights
    w = np.ones(labels.size) if weights is None else weights
    per_class = totals[labels]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(per_class > 0, w / per_class, 0.0)


def sample_weights(
    sample_weight: Any, average: Any, labels: np.ndarray, rows: str = "logits"
) -> np.ndarray | None:
    """:func:`effective_weights` of the user's ``sample_weight`` and ``average``, both checked
    (:func:`calib.validation.check_sample_weight`, :func:`calib.validation.check_average`) for
    the checked ``labels`` of the rows of ``rows``.

    Raises:
        ValueError / TypeError: an ``average`` other than ``micro``/``macro``, or weights of the
            wrong length or shape, NaN/inf, negative or all zero; the message names them.
    """
    average = check_average(average)
    weights = check_sample_weight(sample_weight, labels.shape[0], rows)
    return effective_weights(labels, weights, average)


def weighted_mean(
    hits: np.ndarray, weights: np.ndarray | None, rows: np.ndarray | None = None
) -> float:
    """Σ v·hits / Σ v over the selected rows (all when None); plain mean without weights.

    NaN (no warning here) when no row is selected or the selected weights sum to 0.
    """
    h = hits if rows is None else hits[rows]
    if weights is None:
        return float(h.mean()) if h.size else float("nan")
    v = weights if rows is None else weights[rows]
    total = float(v.sum())
    if total == 0.0:
        return float("nan")
    return float(np.dot(v, h.astype(np.float64, copy=False)) / total)
