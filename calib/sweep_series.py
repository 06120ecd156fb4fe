"""The series behind the sweep figures, from the groups of :mod:`calib.sweep_groups` (pure).

:func:`sweep_series` gives each model variant's group means and stds of one metric (the bar
or line chart of a sweep); :func:`histories_by_group` and :func:`group_history_curves` the
per-epoch history of each group's runs and their mean (the training-dynamics panels).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .sweep_groups import RunGroup

__all__ = ["sweep_series", "group_history_curves", "histories_by_group"]


def sweep_series(
    groups: Sequence[RunGroup], metric: str, variants: Sequence[str] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, the group means, stds and counts of ``metric``: ``{variant: {"mean": (G,),
    "std": (G,), "n": (G,)}}``, groups in the order given (NaN / 0 where a group lacks it).

    ``variants`` default: every variant of any group, ``pre-trained`` and ``fine-tuned`` first.
    """
    if variants is None:
        seen: dict[str, None] = {}
        for group in groups:
            seen.update(dict.fromkeys(group.stats))
        variants = list(seen)
    out = {}
    for variant in variants:
        stats = [g.stats.get(variant, {}).get(metric) for g in groups]  # None: group lacks it
        out[variant] = {
            "mean": np.array([math.nan if s is None else s.mean for s in stats]),
            "std": np.array([math.nan if s is None else s.std for s in stats]),
            "n": np.array([0 if s is None else s.n for s in stats]),
        }
    return out


def group_history_curves(
    histories_by_group: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], metric: str
) -> dict[str, dict[str, Any]]:
    """Per group, each run's ``metric`` over epochs and their mean over the group's runs.

    Args:
        histories_by_group: group label → run name → history rows (:func:`calib.dynamics.read_history`).
        metric: a history key.

    Returns:
        ``{label: {"runs": {run: (epochs (E,), values (E,))}, "mean": (epochs, values)}}``; the
        mean is over the epochs every run of the group has (NaNs skipped).
    """
    out = {}
    for label, histories in histories_by_group.items():
        runs = {}
        for run, rows in histories.items():
            epochs = np.array([int(r["epoch"]) for r in rows])
            vals = np.array([float(r.get(metric, math.nan)) if r.get(metric) is not None else math.nan
                             for r in rows])  # fmt: skip
            runs[run] = (epochs, vals)
        common = (
            sorted(set.intersection(*(set(e.tolist()) for e, _ in runs.values()))) if runs else []
        )
        stacked = np.array([[v[list(e).index(x)] for x in common] for e, v in runs.values()])
        with warnings.catch_warnings():  # an all-NaN epoch gives NaN, as documented
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stacked, axis=0) if common else np.array([])
        out[label] = {"runs": runs, "mean": (np.array(common, dtype=int), mean)}
    return out


def histories_by_group(
    groups: Sequence[RunGroup], histories: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, dict[str, Sequence[Mapping[str, Any]]]]:
    """``{group label: {run name: history rows}}`` for the runs that have a (non-empty) history.

    ``histories``: run name → rows (e.g. :func:`calib.dynamics.read_history` of its folder).
    Groups without any history are left out.
    """
    out = {}
    for group in groups:
        have = {run: histories[run] for run in group.runs if histories.get(run)}
        if have:
            out[group.label] = have
    return out
