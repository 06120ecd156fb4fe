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
from typing import Any

import numpy as np

from calib.rules.kernels import (
    ABSENT,
    REST,
    SEEN,
    absent_mask,
    group_argmax,
    scan,
    scan_torch,
    shift,
)
from calib.validation import check_stats, is_tensor

__all__ = [
    "Gaps",
    "compute_gaps",
    "absent_mask",
    "shifted_logits",
]


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


def group_codes(num_classes: int, seen: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """(C,) int8 column groups for :mod:`calib.rules.kernels`: 0 = S, 1 = U, 2 = neither (R)."""

    codes = np.full(num_classes, REST, dtype=np.int8)
    codes[seen] = SEEN
    codes[absent] = ABSENT
    return codes


def scan_checked(
    logits: np.ndarray,
    seen: np.ndarray,
    absent: np.ndarray,
    labels: np.ndarray | None = None,
    gamma: float = 0.0,
    name: str = "logits",
) -> dict[str, np.ndarray]:
    """One pass over ``logits`` (checked for shape and dtype only): the value checks of
    :func:`calib.validation.check_logits` and everything :func:`calib.rules.kernels.scan` returns."""

    if absent.size == 0 or absent.size + seen.size == 0:
        raise ValueError("the bias rule needs at least one absent and one non-absent column")
    codes = group_codes(logits.shape[1], seen, absent)
    if labels is not None:
        labels = np.ascontiguousarray(labels, dtype=np.int64)
    if is_tensor(logits):  # a GPU tensor: computed on its device
        result = scan_torch(logits, codes, labels, gamma)
        # the rare checks that need more than the row statistics (an error's first bad value,
        # the probability-looking rows of non-negative logits such as CLIP's) reduce on the
        # tensor's device: the N × C values never come to the host
        check_stats(logits, name, result["lo"], result["hi"], result["nan"])
        result["codes"] = codes
        return result
    result = scan(logits, codes, labels, gamma)
    check_stats(logits, name, result["lo"], result["hi"], result["nan"])
    result["codes"] = codes  # (C,) group of each column: codes[labels] is each label's group
    return result


def gaps_of(result: dict[str, np.ndarray]) -> Gaps:
    """The :class:`Gaps` of a :func:`scan_checked` result."""
    return Gaps(
        gap=result["gap"], pred_other=result["pred_other"], pred_absent=result["pred_absent"]
    )


# Deployed logits: z + γ on U, as float64, with the U entries lowered by 2-4 float64 rounding
# units so that an exact tie z_a + γ = z_o goes to the non-absent column, as the rule says.
_NUDGE_REL = 2.0**-51
_NUDGE_ABS = 2.0**-1000


def shifted_logits(
    logits: np.ndarray,
    absent: np.ndarray,
    gamma: float,
    name: str | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(N, C) float64 logits whose argmax is the rule's prediction: z + γ on U, lowered a hair.

    For every column c in U the entry is s − (|s|·2⁻⁵¹ + 2⁻¹⁰⁰⁰) with s = z_c + γ in float64:
    the addition is exact in float64 for float16 logits (and for bfloat16/float32 logits that
    span less than 2²⁹ in magnitude), and the lowering (2-4 units in the last place of s) makes
    an exact tie z_a + γ = z_o go to the non-absent column. ``argmax`` of the result therefore
    equals :meth:`Gaps.predict` except when γ exceeds a sample's gap by less than ~5 float64
    units in the last place of its logits (≈1e-15 relative) or two logits of U differ by that
    little. ``-inf`` entries stay ``-inf``. Other columns are copied unchanged (v − 0).

    ``name``: check the values (NaN, +inf, all ``-inf`` rows) in the same pass, naming them so.
    ``out``: a C-contiguous, writeable float64 array of the logits' shape, not overlapping
    them, to write the result into (and return); a fresh array otherwise.
    """

    if out is not None:
        _check_out(out, logits)

    num_classes = logits.shape[1]
    mask = absent_mask(absent, num_classes)
    add = np.where(mask, float(gamma), 0.0)
    rel = np.where(mask, _NUDGE_REL, 0.0)
    tiny = np.where(mask, _NUDGE_ABS, 0.0)
    out, lo, hi, nan = shift(logits, add, rel, tiny, out)
    if name is not None:
        check_stats(logits, name, lo, hi, nan)
    return out


def _check_out(out: Any, logits: np.ndarray) -> None:
    """``out`` can take the shifted logits: float64, C-contiguous, writeable, no overlap."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.dtype != np.float64 or out.shape != logits.shape:
        raise ValueError(
            f"out must be float64 of the logits' shape {logits.shape}, got {out.dtype} {out.shape}"
        )
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be a C-contiguous, writeable array")
    if np.may_share_memory(out, logits):
        raise ValueError("out overlaps the logits: pass a separate array")
