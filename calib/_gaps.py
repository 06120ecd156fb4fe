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
:func:`label_rank` extends the same rule to top-k accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Gaps", "compute_gaps", "absent_mask", "group_argmax", "label_rank"]


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


def group_argmax(logits: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax column, max value) of each row over the columns ``cols`` (sorted, non-empty).

    Ties go to the lowest column, as ``argmax`` does. Both arrays have shape (N,).
    """
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
    pred_other, max_other = group_argmax(logits, other)
    pred_absent, max_absent = group_argmax(logits, absent)
    # float64 so that γ is compared with the gap at full precision whatever the logits' dtype
    gap = max_other.astype(np.float64) - max_absent.astype(np.float64)
    return Gaps(gap=gap, pred_other=pred_other, pred_absent=pred_absent)


def label_rank(
    logits: np.ndarray,
    labels: np.ndarray,
    absent: np.ndarray,
    gamma: float,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """How many columns beat each sample's own label under bias ``gamma``: (N,) int64, 0 = predicted.

    The top-k extension of :meth:`Gaps.predict` (a sample is top-k right iff its rank < k, and
    rank 0 is exactly ``Gaps.predict(gamma) == labels``). Column c beats label y when
      - both or neither are absent: z_c > z_y, or z_c = z_y and c < y (argmax order);
      - c absent, y not: γ > z_y − z_c (the gap form of the rule);
      - y absent, c not: not (γ > z_c − z_y).
    Differences are taken in float64, as in :func:`compute_gaps`, so γ is compared with the
    same numbers there and here. O(N·C), in row blocks that bound the temporary memory.

    Args:
        logits: validated (N, C) scores.
        labels: validated (N,) labels.
        absent: sorted absent column indices.
        gamma: the bias added to the absent columns (may be ±inf).
        columns: optional sorted column subset; only these columns compete (labels must lie in it).
    """
    n, num_classes = logits.shape
    is_absent = absent_mask(absent, num_classes)
    competes = (
        np.ones(num_classes, dtype=bool) if columns is None else absent_mask(columns, num_classes)
    )
    col_index = np.arange(num_classes)
    rank = np.empty(n, dtype=np.int64)
    block = max(1, (1 << 20) // num_classes)
    for start in range(0, n, block):
        rows = slice(start, start + block)
        z = logits[rows].astype(np.float64)
        y = labels[rows]
        # diff = z_c − z_y; its negation is exactly z_y − z_c (IEEE subtraction is antisymmetric)
        diff = z - z[np.arange(z.shape[0]), y][:, None]
        same_group = (diff > 0) | ((diff == 0) & (col_index < y[:, None]))
        absent_beats_other = gamma > -diff
        other_beats_absent = ~(gamma > diff)
        label_absent = is_absent[y][:, None]
        beats = np.where(
            is_absent == label_absent,
            same_group,
            np.where(is_absent, absent_beats_other, other_beats_absent),
        )
        rank[rows] = np.count_nonzero(beats & competes, axis=1)
    return rank
