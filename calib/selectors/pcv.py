"""``pcv``: the γ-selection half of Pseudo Cross-Validation, exact over all of ℝ, from the
held-out S data of models fine-tuned on pseudo-seen classes (no U data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from calib.metrics.curve import checked_curve
from calib.metrics.streaming import SeenAbsentState
from calib.metrics.weights import sample_weights
from calib.rules.stepmax import maximise as _maximise
from calib.selectors.checks import check_groups as _check_groups
from calib.selectors.checks import criterion_values as _criterion_values
from calib.selectors.spec import (
    PseudoSplit,
    check_average,
    check_criterion,
    check_pseudo_splits,
    register_selector,
)
from calib.validation import check_classes, check_labels, check_logits

__all__ = ["select_pcv"]


@register_selector(
    "pcv",
    data="pseudo_splits",
    params={"criterion": "hmean", "average": "micro"},
    checks={"criterion": check_criterion, "average": check_average},
    description="Pseudo Cross-Validation: best mean criterion on held-out S data of pseudo splits",
)
def select_pcv(
    pseudo_splits: Sequence[PseudoSplit],
    seen_classes: Any,
    absent_classes: Any = None,
    criterion: str = "hmean",
    num_classes: int | None = None,
    average: str = "micro",
) -> tuple[float, dict[str, Any]]:
    """The γ-selection half of Pseudo Cross-Validation: best average criterion over splits.

    Each split's criterion (pseudo-seen vs pseudo-absent accuracy on its held-out S data)
    is a step function of γ; their average is a step function over the union of all
    breakpoints, maximised exactly (ties → the interval closest to γ = 0). No absent-class
    (U) data may appear: every split label must be a fine-tuning class.

    Args:
        pseudo_splits: one or more :class:`PseudoSplit`, all with C columns; or one
            :class:`~calib.metrics.streaming.SeenAbsentState` per split, each built with its
            split's pseudo-seen and pseudo-absent classes and fed its held-out S data (with
            its weights): the same γ, exactly (from each state's curve).
        seen_classes: the real S; absent_classes: the real U (default every column not in S).
        criterion: ``"hmean"`` (default) or ``"acc_all"``.
        average: ``"micro"`` (default, per-sample accuracies) or ``"macro"`` (class-balanced:
            the mean over each split's pseudo-seen / pseudo-absent classes of the per-class
            accuracy). A split's ``sample_weight`` weighs its held-out samples.
        num_classes: C, checked against the splits' logits when given.

    Returns:
        ``(gamma, info)``; ``info["value"]`` is the average criterion at γ,
        ``info["split_values"]`` each split's.

    Raises:
        ValueError: no split, a split label in U (or outside S), a label outside its split's
            classes, pseudo-seen classes outside S, mismatched column counts.
    """
    check_criterion(criterion)
    check_average(average)
    states = isinstance(pseudo_splits, Sequence) and any(
        isinstance(s, SeenAbsentState) for s in pseudo_splits
    )
    if states:  # one streamed state per split: its labels, classes and weights inside
        splits = _check_states(pseudo_splits)
        widths = {s.num_classes for s in splits}
        logits = [None] * len(splits)
    else:
        splits = check_pseudo_splits(pseudo_splits)
        logits = [
            check_logits(s.logits, f"pseudo_splits[{j}].logits") for j, s in enumerate(splits)
        ]
        widths = {z.shape[1] for z in logits}
    if num_classes is not None:
        widths.add(int(num_classes))
    if len(widths) != 1:
        raise ValueError(
            f"pseudo splits and num_classes disagree on the number of columns: {sorted(widths)}"
        )
    (c,) = widths
    seen, absent = check_classes(seen_classes, absent_classes, c)

    steps = []
    for j, (split, z) in enumerate(zip(splits, logits, strict=True)):
        where = f"pseudo_splits[{j}]: "
        if states:
            y = split.checked_columns(f"{where}PCV")["label"]
            _check_split_labels(where, y, seen, absent)
            p_seen, p_absent = split.seen_classes, split.absent_classes
        else:
            y = check_labels(split.labels, z.shape[0], c, f"pseudo_splits[{j}].labels")
            _check_split_labels(where, y, seen, absent)
            try:
                p_seen, p_absent = check_classes(split.seen_classes, split.absent_classes, c)
            except ValueError as err:
                raise ValueError(f"{where}{err}") from None
        _check_split_classes(where, y, p_seen, p_absent, seen, absent)
        try:
            weights = (
                split.weights(average)
                if states
                else sample_weights(split.sample_weight, average, y, rows="its logits")
            )
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None
        _check_groups(y, p_seen, p_absent, criterion, where, weights=weights)
        if states:
            curve = split.curve(average)
        else:
            curve = checked_curve(z, y, p_seen, p_absent, weights=weights)
        steps.append((curve.gamma, _criterion_values(curve, criterion)))

    choice = _maximise(steps)
    return choice.gamma, {
        "method": "pcv",
        "criterion": criterion,
        "average": average,
        "value": choice.value,
        "split_values": [float(v) for v in choice.values],
        "n_splits": len(splits),
        "interval": choice.interval,
    }


def _check_states(states: Sequence[Any]) -> list[SeenAbsentState]:
    """One :class:`~calib.metrics.streaming.SeenAbsentState` per split, nothing else."""
    for j, s in enumerate(states):
        if not isinstance(s, SeenAbsentState):
            raise TypeError(
                f"pseudo_splits[{j}] must be a SeenAbsentState like the others (one per split), "
                f"got {type(s).__name__}"
            )
    return list(states)


def _check_split_labels(where: str, y: np.ndarray, seen: np.ndarray, absent: np.ndarray) -> None:
    """A split's labels: held-out S data only, never U."""
    in_absent = np.isin(y, absent)
    if in_absent.any():
        raise ValueError(
            f"{where}{int(in_absent.sum())} label(s) lie in the absent classes U, e.g. "
            f"{int(y[in_absent][0])}: PCV may not touch U data (score held-out S data only)"
        )
    not_seen = ~np.isin(y, seen)
    if not_seen.any():
        raise ValueError(f"{where}label {int(y[not_seen][0])} is not a fine-tuning (S) class")


def _check_split_classes(
    where: str,
    y: np.ndarray,
    p_seen: np.ndarray,
    p_absent: np.ndarray,
    seen: np.ndarray,
    absent: np.ndarray,
) -> None:
    """A split's pseudo classes: γ on its pseudo-absent classes and on U, pseudo-seen within S,
    every label in one of them."""
    left_out = np.setdiff1d(absent, p_absent)
    if left_out.size:
        raise ValueError(
            f"{where}absent_classes {p_absent.tolist()[:10]} leave out the real absent "
            f"classes {left_out.tolist()[:10]}: the deployed γ shifts U too, so a pseudo "
            "split must be scored with γ on its pseudo-absent classes and on U"
        )
    if not np.isin(p_seen, seen).all():
        extra = np.setdiff1d(p_seen, seen)
        raise ValueError(f"{where}pseudo-seen classes {extra.tolist()[:10]} are not in S")
    stray = ~np.isin(y, np.union1d(p_seen, p_absent))
    if stray.any():
        raise ValueError(
            f"{where}label {int(y[stray][0])} is in neither the split's seen nor absent classes"
        )
