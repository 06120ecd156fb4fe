"""Small input checks of :class:`calib.LogitBiasCalibrator` (kept apart: calibrator.py is long)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_num_classes", "has_bad_values"]


def has_bad_values(t: Any) -> bool:
    """On the tensor's device: a NaN, a +inf, a complex dtype or an all -inf row."""
    if t.is_complex():
        return True
    if not t.is_floating_point():
        return False
    return bool(t.isnan().any() or t.isposinf().any() or t.isneginf().all(dim=1).any())


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` as an int ≥ 2 (booleans refused)."""
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 2
    ):
        raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
    return int(num_classes)
