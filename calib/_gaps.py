"""The one decision rule every metric, curve and calibrator in calib shares.

With a bias γ added to the absent columns U, a sample's prediction is the best
absent column if that one wins, else the best of the other columns (S and any
un-shifted extra columns R). Per sample let

    g = max_{c ∉ U} z_c − max_{c ∈ U} z_c        (the *gap*)

then the prediction moves to U exactly when γ > g: at γ = g (a tie between the
two groups) the non-absent column keeps it. Within a group, ties go to the
lowest column index, as ``argmax`` does. Computing g once and comparing γ with
it — rather than comparing z + γ column by column — makes ``accuracy_report``,
``seen_absent_curve`` and ``LogitBiasCalibrator.predict`` agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Gaps", "compute_gaps", "absent_mask"]


def absent_mask(absent: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean (C,) mask of the absent columns."""
    mask = np.zeros(num_classes, dtype=bool)
    mask[absent] = True
    return mask


@dataclass(frozen=True)
class Gaps:
    """Per-sample quantities of the biased decision rule; all arrays have shape (N,).

    Attributes:
        gap: max over non-absent columns − max over absent columns (logit units).
        pred_other: best non-absent column (the prediction while γ ≤ gap).
        pred_absent: best absent column (the prediction once γ > gap).
    """

    gap: np.ndarray
    pred_other: np.ndarray
    pred_absent: np.ndarray

    def predict(self, gamma: float) -> np.ndarray:
        """Predicted column of every sample under bias ``gamma`` (γ > gap → absent)."""
        return np.where(gamma > self.gap, self.pred_absent, self.pred_other)


def _group_argmax(logits: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax column, max value) over the columns ``cols`` (sorted), ties → lowest column."""
    if cols.size == logits.shape[1]:
        sub = logits
    elif cols.size and cols[-1] - cols[0] + 1 == cols.size:  # contiguous: a view, no copy
        sub = logits[:, cols[0] : cols[-1] + 1]
    else:
        sub = logits[:, cols]
    idx = sub.argmax(axis=1)
    val = np.take_along_axis(sub, idx[:, None], axis=1)[:, 0]
    return cols[idx], val


def compute_gaps(logits: np.ndarray, absent: np.ndarray) -> Gaps:
    """Gaps of validated (N, C) ``logits`` for the sorted absent column indices ``absent``.

    Needs at least one absent and one non-absent column.
    """
    num_classes = logits.shape[1]
    mask = absent_mask(absent, num_classes)
    other = np.flatnonzero(~mask)
    if other.size == 0 or absent.size == 0:
        raise ValueError("the bias rule needs at least one absent and one non-absent column")
    pred_other, max_other = _group_argmax(logits, other)
    pred_absent, max_absent = _group_argmax(logits, absent)
    # float64 so that γ is compared with the gap at full precision whatever the logits' dtype
    gap = max_other.astype(np.float64) - max_absent.astype(np.float64)
    return Gaps(gap=gap, pred_other=pred_other, pred_absent=pred_absent)
