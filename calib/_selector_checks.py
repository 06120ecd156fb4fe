"""Checks and criteria shared by the γ selectors of :mod:`calib.selectors`."""

from __future__ import annotations

import numpy as np

from .curve import SeenAbsentCurve

__all__ = ["check_width", "check_groups", "criterion_values"]


def check_width(num_classes: int | None, width: int) -> None:
    """``num_classes``, when given, must be the logits' width."""
    if num_classes is not None and int(num_classes) != width:
        raise ValueError(f"num_classes={num_classes!r} but the logits have {width} columns")


def check_groups(
    y: np.ndarray, seen: np.ndarray, absent: np.ndarray, criterion: str, where: str = ""
) -> None:
    """``hmean`` is undefined unless the labels cover both S and U: say so before any curve."""
    if criterion != "hmean":
        return
    for group, classes in (("seen", seen), ("absent", absent)):
        if not np.isin(y, classes).any():
            raise ValueError(
                f"{where}criterion 'hmean' needs samples of both groups, but none has a label "
                f"in the {group} classes"
            )


def criterion_values(curve: SeenAbsentCurve, criterion: str) -> np.ndarray:
    """The criterion at every point of ``curve`` (a numpy curve), shape (M + 1,)."""
    if criterion == "acc_all":
        return np.asarray(curve.acc_all, dtype=np.float64)
    s = np.asarray(curve.acc_seen, dtype=np.float64)
    a = np.asarray(curve.acc_absent, dtype=np.float64)
    total = s + a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * s * a / total, 0.0)
