"""``fixed``: a given γ (logit units), checked; no data."""

from __future__ import annotations

from typing import Any

from calib.selectors.spec import (
    REQUIRED,
    check_gamma,
    register_selector,
)

__all__ = ["select_fixed"]


@register_selector(
    "fixed",
    data=None,
    params={"gamma": REQUIRED},
    checks={"gamma": check_gamma},
    description="a given γ (logit units)",
)
def select_fixed(
    gamma: float,
    seen_classes: Any = None,
    absent_classes: Any = None,
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """A given γ (logit units), checked to be a finite real number (strings are refused)."""
    return check_gamma(gamma), {"method": "fixed"}
