"""Checks for fine-tuning method parameters: each takes a value and returns it normalised.

A check raises ``ValueError("must be ..., got VALUE")``; :meth:`MethodSpec.check_params`
prefixes the method and parameter names, so a user reads e.g.
``fine-tuning method 'wise_ft': parameter 'alpha' must be a number in [0, 1], got 1.5``.
Values from a Hydra config (``ListConfig``) are plain sequences here: checks accept any
non-string sequence where they take a list.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "Check",
    "HEAD_CHECKS",
    "HEAD_PARAMS",
    "boolean",
    "choice",
    "integer",
    "names",
    "real",
    "real_grid",
]

#: ``check(value) -> normalised value``; raises ``ValueError("must be ..., got ...")``.
Check = Callable[[Any], Any]


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "a finite number"
    if hi is None:
        return f"a number {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"a number {'<' if hi_open else '<='} {hi:g}"
    return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def real(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Check:
    """A finite real number (not a bool) within the given bounds; returned as ``float``."""
    need = _interval(lo, hi, lo_open, hi_open)

    def check(value: Any) -> float:
        ok = _is_real(value)
        if ok:
            v = float(value)
            ok = (lo is None or (v > lo if lo_open else v >= lo)) and (
                hi is None or (v < hi if hi_open else v <= hi)
            )
        if not ok:
            raise ValueError(f"must be {need}, got {value!r}")
        return float(value)

    return check


def integer(min_value: int = 0, *, allow_none: bool = False, none_means: str = "") -> Check:
    """An int (not a bool) ``>= min_value``; ``None`` too when ``allow_none``."""
    need = f"an int >= {min_value}" + (f" or None ({none_means})" if allow_none else "")

    def check(value: Any) -> int | None:
        if value is None and allow_none:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or int(value) < min_value
        ):
            raise ValueError(f"must be {need}, got {value!r}")
        return int(value)

    return check


def boolean() -> Check:
    """``True`` or ``False`` (no truthy stand-ins: ``"false"`` and ``0`` are refused)."""

    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value

    return check


def choice(*options: str) -> Check:
    """One of the given strings."""

    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(map(repr, options))}, got {value!r}")
        return value

    return check


def _sequence(value: Any) -> list | None:
    """``value`` as a list when it is a sequence of items (a list, tuple, ListConfig, array)."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        return None
    try:
        return list(value)
    except TypeError:
        return None


def real_grid(lo: float, hi: float) -> Check:
    """A non-empty, strictly ascending sequence of numbers in ``[lo, hi]``; returns a tuple."""
    need = f"a non-empty, strictly ascending list of numbers in [{lo:g}, {hi:g}]"

    def check(value: Any) -> tuple[float, ...]:
        items = _sequence(value)
        ok = bool(items) and all(_is_real(v) and lo <= float(v) <= hi for v in items)
        if ok:
            grid = tuple(float(v) for v in items)
            ok = all(a < b for a, b in zip(grid, grid[1:], strict=False))
        if not ok:
            raise ValueError(f"must be {need}, got {value!r}")
        return grid

    return check


def names(*, allow_none: bool = True, none_means: str = "") -> Check:
    """A non-empty sequence of distinct non-empty strings (module names); ``None`` if allowed."""
    need = "a non-empty list of distinct module names" + (
        f" or None ({none_means})" if allow_none else ""
    )

    def check(value: Any) -> tuple[str, ...] | None:
        if value is None and allow_none:
            return None
        items = _sequence(value)
        ok = bool(items) and all(isinstance(v, str) and v for v in items)
        if not ok or len(set(items)) != len(items):
            raise ValueError(f"must be {need}, got {value!r}")
        return tuple(items)

    return check


#: The head options every method takes (see :mod:`calib.methods.cosine_head`).
HEAD_PARAMS: dict[str, Any] = {
    "head": "linear",
    "head_scale": 10.0,
    "head_scale_learnable": True,
}
HEAD_CHECKS: dict[str, Check] = {
    "head": choice("linear", "cosine"),
    "head_scale": real(0.0, lo_open=True),
    "head_scale_learnable": boolean(),
}
