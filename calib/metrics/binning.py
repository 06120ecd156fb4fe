"""Confidence bins of the calibration errors: equal-width and equal-mass, closed on the right.

The rules (and the references they follow) are spelled out in :mod:`calib.metrics.probability`.
With sample weights (:mod:`calib.metrics.weights`) a sample counts its weight instead of 1:
in the bins' sums and in the equal-mass edges (a weight of k is k copies of the sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Bins", "bin_edges", "bin_indices", "bin_statistics"]


def bin_edges(
    confidence: np.ndarray, n_bins: int, adaptive: bool, weights: np.ndarray | None = None
) -> np.ndarray:
    """(n_bins + 1,) edges 0 = e_0 ≤ … ≤ e_M = 1; bin m holds e_{m−1} < confidence ≤ e_m.

    Equal-width: e_m = m / M. Adaptive (equal mass): e_m = c_(⌈mN/M⌉), the ⌈mN/M⌉-th smallest
    confidence, for 0 < m < M (see the module docstring); with no sample every bin is
    (0, 1]'s equal-width split. With ``weights`` (N,): e_m is the smallest confidence at which
    the cumulative weight of the sorted confidences reaches m·W/M (W the total weight), which
    is c_(⌈mN/M⌉) for weights of 1 and, for integer weights, the edge of repeated samples.
    """
    if not adaptive or confidence.size == 0:
        return np.arange(n_bins + 1, dtype=np.float64) / n_bins
    if weights is not None:
        order = np.argsort(confidence, kind="stable")
        cumulative = np.cumsum(weights[order])
        targets = np.arange(1, n_bins) * cumulative[-1] / n_bins
        k = np.minimum(np.searchsorted(cumulative, targets, side="left"), order.size - 1)
        edges = np.empty(n_bins + 1)
        edges[0], edges[-1] = 0.0, 1.0
        edges[1:-1] = confidence[order[k]]
        return edges
    n = confidence.size
    ranks = (np.arange(1, n_bins) * n + n_bins - 1) // n_bins  # ⌈mN/M⌉ in exact integers
    edges = np.empty(n_bins + 1)
    edges[0], edges[-1] = 0.0, 1.0
    edges[1:-1] = np.sort(confidence)[ranks - 1]
    return edges


def bin_indices(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) bin of each confidence: the first m with confidence ≤ e_{m+1} (right-closed bins)."""
    idx = np.searchsorted(edges[1:-1], confidence, side="left")
    return idx.astype(np.int64)


@dataclass(frozen=True)
class Bins:
    count: np.ndarray  # (M,) int64
    confidence_sum: np.ndarray  # (M,) float64 (weighted: Σ weight · confidence)
    hits: np.ndarray  # (M,) int64, correct predictions per bin (weighted: float64 Σ weight)
    weight: np.ndarray | None = None  # (M,) float64 Σ weight per bin; None: unweighted

    def ece(self) -> float:
        """Σ_m |hits_m − confidence_sum_m| / (N, or the total weight); NaN when that is 0."""
        n = int(self.count.sum()) if self.weight is None else float(self.weight.sum())
        if n == 0:
            return float("nan")
        return float(np.abs(self.hits - self.confidence_sum).sum() / n)


def bin_statistics(
    confidence: np.ndarray,
    correct: np.ndarray,
    edges: np.ndarray,
    weights: np.ndarray | None = None,
) -> Bins:
    n_bins = edges.size - 1
    idx = bin_indices(confidence, edges)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    if weights is None:
        return Bins(
            count=count,
            confidence_sum=np.bincount(idx, weights=confidence, minlength=n_bins),
            hits=np.bincount(idx, weights=correct, minlength=n_bins).round().astype(np.int64),
        )
    return Bins(
        count=count,
        confidence_sum=np.bincount(idx, weights=weights * confidence, minlength=n_bins),
        hits=np.bincount(idx, weights=weights * correct, minlength=n_bins),
        weight=np.bincount(idx, weights=weights, minlength=n_bins),
    )
