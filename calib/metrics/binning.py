"""Confidence bins of the calibration errors: equal-width and equal-mass, closed on the right.

The rules (and the references they follow) are spelled out in :mod:`calib.metrics.probability`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Bins", "bin_edges", "bin_indices", "bin_statistics"]


def bin_edges(confidence: np.ndarray, n_bins: int, adaptive: bool) -> np.ndarray:
    """(n_bins + 1,) edges 0 = e_0 ≤ … ≤ e_M = 1; bin m holds e_{m−1} < confidence ≤ e_m.

    Equal-width: e_m = m / M. Adaptive (equal mass): e_m = c_(⌈mN/M⌉), the ⌈mN/M⌉-th smallest
    confidence, for 0 < m < M (see the module docstring); with no sample every bin is
    (0, 1]'s equal-width split.
    """
    if not adaptive or confidence.size == 0:
        return np.arange(n_bins + 1, dtype=np.float64) / n_bins
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
    confidence_sum: np.ndarray  # (M,) float64
    hits: np.ndarray  # (M,) int64, correct predictions per bin

    def ece(self) -> float:
        n = int(self.count.sum())
        if n == 0:
            return float("nan")
        return float(np.abs(self.hits - self.confidence_sum).sum() / n)


def bin_statistics(confidence: np.ndarray, correct: np.ndarray, edges: np.ndarray) -> Bins:
    n_bins = edges.size - 1
    idx = bin_indices(confidence, edges)
    return Bins(
        count=np.bincount(idx, minlength=n_bins).astype(np.int64),
        confidence_sum=np.bincount(idx, weights=confidence, minlength=n_bins),
        hits=np.bincount(idx, weights=correct, minlength=n_bins).round().astype(np.int64),
    )
