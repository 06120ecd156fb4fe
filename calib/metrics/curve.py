"""The exact seen–absent curve and its area (AUSUC), from one sort of the per-sample gaps.

Sweeping the absent-class bias γ over ℝ moves samples one by one from their best
non-absent column to their best absent column: sample i moves exactly when
γ > gᵢ (see :mod:`calib.rules.gaps`). Every accuracy is therefore a step function of γ
whose steps sit at the gaps, and the whole curve comes from sorting the gaps of
the samples that are right on one side or the other: O(N·C + N log N), no loop
over samples or breakpoints.

Weighted and class-balanced curves (``sample_weight=``, ``average="macro"``) have the same
breakpoints; a sample's hit weighs its effective weight (:mod:`calib.metrics.weights`) instead
of 1, summed over the sorted gaps in one cumulative sum per group.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib.class_names import resolve_classes
from calib.metrics.weights import sample_weights
from calib.rules.gaps import gaps_of, scan_checked
from calib.rules.kernels import ABSENT, SEEN
from calib.validation import as_numpy, check_labels, check_logits, like_input

__all__ = [
    "curve_of_samples",
    "SeenAbsentCurve",
    "seen_absent_curve",
    "ausuc",
    "curve_xy",
    "curve_point",
    "weighted_curve_counts",
]


@dataclass(frozen=True, eq=False)
class SeenAbsentCurve:
    """Accuracies as a function of the absent-class bias γ; arrays of shape (M + 1,), γ ascending.

    Point k holds the accuracies at ``γ = gamma[k]`` exactly (``accuracy_report`` at that γ gives
    the same numbers). ``gamma[:-1]`` are the distinct breakpoints; the accuracies at point k hold
    for every γ in ``(gamma[k-1], gamma[k]]``, and the last point, ``gamma[-1] = +inf``, stands for
    every γ above the largest breakpoint (all predictions in U). Accuracies are fractions in [0, 1];
    NaN where the test set has no sample of that group (or only samples of weight 0). With
    ``sample_weight`` or ``average="macro"`` they are weighted means (:mod:`calib.metrics.weights`)
    and ``accuracy_report`` at ``gamma[k]`` gives point k to float rounding.

    Attributes:
        gamma: (M + 1,) γ values in logit units, ascending, last one ``+inf``.
        acc_seen: (M + 1,) Acc S/Y at each γ.
        acc_absent: (M + 1,) Acc U/Y at each γ.
        acc_all: (M + 1,) Acc Y/Y at each γ.
        ausuc: area under (acc_seen, acc_absent), trapezoids in γ order.
        n_seen: number of test samples with a label in S.
        n_absent: number of test samples with a label in U.
    """

    gamma: Any
    acc_seen: Any
    acc_absent: Any
    acc_all: Any
    ausuc: float
    n_seen: int
    n_absent: int

    def __len__(self) -> int:
        return len(self.gamma)

    def interval(self, k: int) -> tuple[float, float]:
        """The γ interval ``(low, high]`` over which point ``k`` holds (low = -inf for k = 0)."""
        g = np.asarray(self.gamma if not hasattr(self.gamma, "cpu") else self.gamma.cpu())
        low = -np.inf if k == 0 else float(g[k - 1])
        return low, float(g[k])


def _fraction(count: np.ndarray, total: float, what: str, n: int | None = None) -> np.ndarray:
    """``count / total``; NaN with a warning when ``total`` is 0 (``n``: the group's sample
    count, when the total is a weight: > 0 means every sample there weighs 0)."""
    if total == 0:
        reason = (
            f"no test sample has a label in {what}"
            if not n
            else f"sample_weight is 0 for every test sample of {what}"
        )
        warnings.warn(f"{reason}: its accuracy is NaN", RuntimeWarning, stacklevel=3)
        return np.full(count.shape, np.nan)
    return count / total


def weighted_curve_counts(
    gap: np.ndarray,
    weights: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray, np.ndarray],
    moving: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The curve's γ (M + 1,) and, at each, the weight (Σ of ``weights``) of the samples of
    ``groups`` = (S right while γ ≤ gap, R right while γ ≤ gap, U right once γ > gap) that are
    right: one sort of the moving samples' gaps (``np.unique``) and one ``bincount`` of their
    weights per distinct gap, summed from the small end of each side (no difference of two
    large sums).

    Args: ``gap`` (N,) float64 gaps; ``weights`` (N,) float64 effective weights
    (:mod:`calib.metrics.weights`); ``groups`` three disjoint (N,) bool masks; ``moving`` (N,)
    bool, their union. The one weighted summation of the curve: a streamed curve that calls it
    on the same rows in the same order gives the same numbers bit for bit."""
    rows = np.flatnonzero(moving)
    distinct, inverse = np.unique(gap[rows], return_inverse=True)
    code = np.select([g[rows] for g in groups], [0, 1, 2])
    per_gap = np.bincount(
        inverse.ravel() * 3 + code, weights=weights[rows], minlength=3 * distinct.size
    ).reshape(distinct.size, 3)
    finite = np.isfinite(distinct)
    first = int(np.isneginf(distinct).sum())  # 0 or 1: a gap of -inf sorts first
    gamma = np.append(distinct[finite], np.inf)
    # point k < M sits at distinct[first + k]; +inf past every finite gap (and -inf ones)
    at = first + np.arange(gamma.size)
    kept = np.concatenate([np.cumsum(per_gap[::-1, :2], axis=0)[::-1], np.zeros((1, 2))])
    moved = np.concatenate([np.zeros(1), np.cumsum(per_gap[:, 2])])
    return gamma, (kept[at, 0], kept[at, 1], moved[at])


def seen_absent_curve(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    *,
    sample_weight: Any = None,
    average: str = "micro",
    class_names: Sequence[str] | None = None,
) -> SeenAbsentCurve:
    """Trace (acc_seen, acc_absent, acc_all) over every γ, exactly.

    Args:
        logits: (N, C) scores, numpy array or torch tensor (any device).
        labels: (N,) integer labels in [0, C).
        seen_classes: the fine-tuning classes S: column indices, or names of ``class_names``
            (the two may be mixed).
        absent_classes: the classes U that receive γ (indices or names); default every
            column not in S. Columns in neither set stay un-shifted.
        sample_weight: (N,) weights of the test samples (finite, ≥ 0, not all 0): a hit
            weighs its weight instead of 1. None: every sample weighs 1.
        average: ``"micro"`` (default, the per-sample mean) or ``"macro"`` (class-balanced:
            the mean over the classes of each group of the per-class accuracy).
        class_names: (C,) one name per logit column (index = label), so that the classes
            may be given by name (:mod:`calib.class_names`); None: indices only.

    Returns:
        A :class:`SeenAbsentCurve`; its arrays are torch tensors on the logits' device when
        the logits are a tensor, numpy arrays otherwise.

    Raises:
        ValueError: malformed logits, labels, class sets or weights (see
            :mod:`calib.validation`); a class name not in ``class_names`` (with a
            did-you-mean), names without ``class_names``, or ``class_names`` that are not C
            names (one per column).
    """
    z = check_logits(logits, values=False, on_device=True)  # values: checked in the one pass below
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = resolve_classes(seen_classes, absent_classes, z.shape[1], class_names)
    weights = sample_weights(sample_weight, average, y)
    return checked_curve(z, y, seen, absent, reference=logits, weights=weights)


def checked_curve(
    z: Any,
    y: np.ndarray,
    seen: np.ndarray,
    absent: np.ndarray,
    reference: Any = None,
    weights: np.ndarray | None = None,
) -> SeenAbsentCurve:
    """:func:`seen_absent_curve` of logits checked for shape and dtype
    (:func:`calib.validation.check_logits` with ``values=False``), labels and class sets already
    checked (sorted int64 S and U); the values are checked in the one pass. The arrays come
    back like ``reference`` (numpy when None). ``weights``: the effective weights (N,) of
    :func:`calib.metrics.weights.sample_weights`, or None (integer counts)."""
    scanned = scan_checked(z, seen, absent)
    gaps = gaps_of(scanned)

    label_group = scanned["codes"][y]  # O(N), where np.isin sorts
    return curve_of_samples(
        gaps.gap,
        gaps.pred_other == y,  # right while γ ≤ gap
        gaps.pred_absent == y,  # right once γ > gap (only possible for U labels)
        label_group == SEEN,
        label_group == ABSENT,
        weights=weights,
        reference=reference,
    )


def curve_of_samples(
    gap: np.ndarray,
    right_other: np.ndarray,
    right_absent: np.ndarray,
    label_seen: np.ndarray,
    label_absent: np.ndarray,
    weights: np.ndarray | None = None,
    reference: Any = None,
) -> SeenAbsentCurve:
    """The curve from the rule's per-sample values, all (N,): the float64 gaps, whether the
    best non-U / best U column is the label, whether the label is in S / in U, and the
    effective weights (None: counts). :func:`checked_curve` and the streamed state
    (:class:`calib.metrics.streaming.SeenAbsentState`) both end here, so they cannot differ.
    The arrays come back like ``reference`` (numpy when None)."""
    seen_right = right_other & label_seen  # these leave acc_seen as γ passes their gap
    rest_right = right_other & ~label_seen & ~label_absent  # R-labelled samples
    moving = right_absent | seen_right | rest_right  # U: join acc_absent as γ passes the gap
    n_seen, n_absent = int(label_seen.sum()), int(label_absent.sum())
    if weights is None:
        breaks = np.unique(gap[moving])
        # an infinite gap (-inf columns: a group that cannot win) never moves at a finite γ
        breaks = breaks[np.isfinite(breaks)]
        gamma = np.append(breaks, np.inf)
        g_seen = np.sort(gap[seen_right])
        g_rest = np.sort(gap[rest_right])
        g_absent = np.sort(gap[right_absent])
        # at γ = t: a sample stays put iff gap ≥ t, has moved iff gap < t
        kept_seen = g_seen.size - np.searchsorted(g_seen, gamma, side="left")
        kept_rest = g_rest.size - np.searchsorted(g_rest, gamma, side="left")
        moved_absent = np.searchsorted(g_absent, gamma, side="left")
        total_seen, total_absent, total = n_seen, n_absent, gap.size
    else:
        groups = (seen_right, rest_right, right_absent)
        gamma, counts = weighted_curve_counts(gap, weights, groups, moving)
        kept_seen, kept_rest, moved_absent = counts
        total_seen = float(weights[label_seen].sum())
        total_absent = float(weights[label_absent].sum())
        total = float(weights.sum())

    acc_seen = _fraction(kept_seen, total_seen, "the seen classes", n_seen)
    acc_absent = _fraction(moved_absent, total_absent, "the absent classes", n_absent)
    acc_all = (kept_seen + kept_rest + moved_absent) / total

    if total_seen and total_absent:
        area = float(
            np.sum((acc_seen[:-1] - acc_seen[1:]) * (acc_absent[:-1] + acc_absent[1:])) / 2
        )
    else:
        area = float("nan")

    return SeenAbsentCurve(
        gamma=like_input(gamma, reference),
        acc_seen=like_input(acc_seen, reference),
        acc_absent=like_input(acc_absent, reference),
        acc_all=like_input(acc_all, reference),
        ausuc=area,
        n_seen=n_seen,
        n_absent=n_absent,
    )


def ausuc(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    *,
    sample_weight: Any = None,
    average: str = "micro",
    class_names: Sequence[str] | None = None,
) -> float:
    """Area under the seen–absent curve (x = acc_seen, y = acc_absent), in [0, 1].

    Equals the probability that a correctly-ranked seen sample has a larger gap than a
    correctly-ranked absent sample (ties count one half), scaled by the two group sizes.
    NaN (with a warning) when the test set lacks seen or absent samples. ``sample_weight``
    and ``average``: as in :func:`seen_absent_curve` (each pair of samples then counts the
    product of their weights, over the product of the two groups' total weights);
    ``class_names``: one name per column, so that S and U may be given by name.
    """
    curve = seen_absent_curve(
        logits,
        labels,
        seen_classes,
        absent_classes,
        sample_weight=sample_weight,
        average=average,
        class_names=class_names,
    )
    return curve.ausuc


def curve_xy(curve: SeenAbsentCurve) -> tuple[np.ndarray, np.ndarray]:
    """The curve's vertices as numpy arrays (x = acc_seen, y = acc_absent), in γ order.

    Straight segments between them are the trapezoids whose area is ``curve.ausuc``.
    """
    x = np.asarray(as_numpy(curve.acc_seen, "acc_seen"), dtype=np.float64)
    y = np.asarray(as_numpy(curve.acc_absent, "acc_absent"), dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"curve arrays must be 1-D of one length, got {x.shape} and {y.shape}")
    return x, y


def curve_point(curve: SeenAbsentCurve, gamma: float = 0.0) -> tuple[float, float]:
    """(acc_seen, acc_absent) of ``curve`` at bias ``gamma`` (the point whose interval holds it).

    Point k holds for γ in ``(gamma[k-1], gamma[k]]``, so this is what
    :func:`calib.accuracy_report` gives at ``gamma``.
    """
    g = np.asarray(as_numpy(curve.gamma, "gamma"), dtype=np.float64)
    x, y = curve_xy(curve)
    k = min(int(np.searchsorted(g, float(gamma), side="left")), g.size - 1)
    return float(x[k]), float(y[k])
