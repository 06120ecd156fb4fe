"""Exact maximisation of an average of step functions of γ (the curve-based selectors).

Each step function is ``(gamma, value)`` as in :class:`calib.SeenAbsentCurve`; their average is
constant between consecutive breakpoints of the union, so it is evaluated once inside each
interval, with no γ grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Choice", "maximise"]

#: Two criterion values closer than this count as a tie (float rounding of averages).
_TIE_ATOL = 1e-12


def _interior(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """One γ inside each interval ``(low, high]``: its midpoint.

    Unbounded ends: ``(-inf, h]`` → ``h - 1``; ``(l, +inf)`` → ``l + 1``; ℝ → 0. Where the
    midpoint rounds onto ``low`` (adjacent floats), ``high`` is taken: it belongs to the interval.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mid = low / 2 + high / 2
        above = np.maximum(low + 1.0, np.nextafter(low, np.inf))
    mid = np.where(np.isneginf(low), high - 1.0, mid)
    mid = np.where(np.isposinf(high), above, mid)
    mid = np.where(np.isneginf(low) & np.isposinf(high), 0.0, mid)
    return np.where(mid > low, mid, high)


@dataclass(frozen=True)
class Choice:
    gamma: float
    value: float
    values: np.ndarray  # the criterion of every step function at ``gamma``
    interval: tuple[float, float]


def maximise(steps: Sequence[tuple[np.ndarray, np.ndarray]]) -> Choice:
    """Maximise the average of step functions of γ, exactly.

    Each step function is ``(gamma, value)`` as in :class:`SeenAbsentCurve`: ``value[k]`` holds
    on ``(gamma[k-1], gamma[k]]`` and ``gamma[-1] = +inf``. Their average is constant on the
    intervals between consecutive breakpoints of the union, so it is evaluated once inside
    each of them (``searchsorted``, no loop over breakpoints). Ties — values within 1e-12 —
    go to the interval closest to γ = 0 (then to the lower one): the smallest bias that
    reaches the best value.
    """
    breaks = np.unique(np.concatenate([np.asarray(g[:-1], dtype=np.float64) for g, _ in steps]))
    low = np.concatenate([[-np.inf], breaks])
    high = np.concatenate([breaks, [np.inf]])
    candidates = _interior(low, high)
    per_step = np.stack(
        [np.asarray(v)[np.searchsorted(np.asarray(g), candidates, side="left")] for g, v in steps]
    )
    mean = per_step.mean(axis=0)
    best = np.flatnonzero(mean >= mean.max() - _TIE_ATOL)
    distance = np.where(low >= 0, low, np.where(high < 0, -high, 0.0))  # from 0 to (low, high]
    j = int(best[np.argmin(distance[best])])
    return Choice(
        gamma=float(candidates[j]),
        value=float(mean[j]),
        values=per_step[:, j],
        interval=(float(low[j]), float(high[j])),
    )
