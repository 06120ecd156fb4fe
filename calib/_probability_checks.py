"""Validation of the parameters of the probability metrics and temperature fits.

Each helper returns the value in a canonical form or raises an error that names the
parameter and the value given.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._checks import as_numpy, is_tensor

__all__ = [
    "GROUPS",
    "check_gamma",
    "check_positive",
    "temperature_pair",
    "temperature_value",
    "check_absent",
    "check_n_bins",
    "check_group",
]

#: The sample groups of the per-group metrics and diagrams.
GROUPS = ("all", "seen", "absent")


def _real(value: Any, name: str) -> float:
    """``value`` as a Python float (a one-element array or tensor is accepted)."""
    if is_tensor(value) or isinstance(value, np.ndarray):
        values = as_numpy(value, name)
        if values.size != 1:
            raise ValueError(f"{name} must be a scalar, got shape {values.shape}")
        value = values.item()
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number, got {value!r}") from err


def check_gamma(gamma: Any) -> float:
    """``gamma`` as a finite Python float."""
    value = _real(gamma, "gamma")
    if not math.isfinite(value):
        raise ValueError(f"gamma must be finite for probabilities, got {value}")
    return value


def check_positive(value: Any, name: str) -> float:
    t = _real(value, name)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"{name} must be finite and > 0, got {t}")
    return t


def _temperature_pair(temperature: Any) -> list[Any] | None:
    """The two entries of a pair ``temperature`` (list, tuple, or 1-D array/tensor of any
    length), or None for a scalar (a number, or a 0-d / one-element array or tensor)."""
    if isinstance(temperature, (tuple, list)):
        return list(temperature)
    if is_tensor(temperature) or isinstance(temperature, np.ndarray):
        values = as_numpy(temperature, "temperature")
        if values.ndim == 0 or (values.ndim == 1 and values.size == 1):
            return None  # one T as a one-element array, as before
        if values.ndim != 1:
            raise ValueError(
                f"temperature must be one number or a pair (T_S, T_U), got an array of shape "
                f"{values.shape}"
            )
        return list(values)
    return None


def temperature_pair(temperature: Any) -> tuple[float, float]:
    """(T_S, T_U) of a temperature ``T`` (both T) or of a pair ``(T_S, T_U)``; each finite > 0.

    A pair is a list, a tuple or a 1-D numpy array / torch tensor of two entries; one T is a
    number or a one-element array / tensor.
    """
    pair = _temperature_pair(temperature)
    if pair is not None:
        if len(pair) != 2:
            shown = temperature if isinstance(temperature, (tuple, list)) else pair
            raise ValueError(
                f"temperature must be one number or a pair (T_S, T_U), got {len(pair)} "
                f"values: {shown!r}"
            )
        return (
            check_positive(pair[0], "temperature T_S"),
            check_positive(pair[1], "temperature T_U"),
        )
    t = check_positive(temperature, "temperature")
    return t, t


def temperature_value(temperature: Any) -> float | tuple[float, float]:
    """``temperature`` checked (:func:`temperature_pair`), in canonical form: one float, or a
    (T_S, T_U) tuple of floats when a pair was given (a list, tuple, array or tensor)."""
    temps = temperature_pair(temperature)
    return temps if _temperature_pair(temperature) is not None else temps[0]


def check_absent(absent_classes: Any, num_classes: int) -> np.ndarray:
    """The absent columns U on their own (S = every other column): sorted int64 indices.

    Raises:
        ValueError / TypeError: not a 1-D collection of distinct integers in
            [0, num_classes), empty, or every column.
    """
    if absent_classes is None:
        raise ValueError("absent_classes is required here (the columns that receive γ)")
    if isinstance(absent_classes, (str, bytes)):
        raise TypeError("absent_classes must be a collection of class indices, got a string")
    if isinstance(absent_classes, (set, frozenset)):
        absent_classes = sorted(absent_classes)
    u = np.atleast_1d(as_numpy(absent_classes, "absent_classes"))
    if u.ndim != 1:
        raise ValueError(f"absent_classes must be 1-D, got shape {u.shape}")
    if u.size == 0:
        raise ValueError("absent_classes is empty: at least one class is needed")
    if not np.issubdtype(u.dtype, np.integer):
        if not (np.issubdtype(u.dtype, np.floating) and np.all(u == np.round(u))):
            raise ValueError(
                f"absent_classes must hold integer class indices, got {u.tolist()[:10]}"
            )
    u = u.astype(np.int64)
    if u.min() < 0 or u.max() >= num_classes:
        bad = u[(u < 0) | (u >= num_classes)]
        raise ValueError(
            f"absent_classes out of range: {bad.tolist()[:10]} not in [0, {num_classes})"
        )
    uniq = np.unique(u)
    if uniq.size != u.size:
        raise ValueError(f"absent_classes lists a class more than once: {u.tolist()[:10]}")
    if uniq.size == num_classes:
        raise ValueError(f"absent_classes covers all {num_classes} columns: nothing stays seen")
    return uniq


def check_n_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    return int(n_bins)


def check_group(group: Any) -> str:
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    return group
