"""Quantities vs fine-tuning epoch, from the history rows (:mod:`calib.dynamics`).

Three compute functions turn history rows into an :class:`EpochSeries` (numbers only), and
one helper draws any of them:

- :func:`accuracy_series`: Acc S/Y, U/Y (at γ = 0 and after ALG's γ), U/U, NCM Acc U/Y and
  AUSUC, in %.
- :func:`logit_series`: mean seen and absent logits; on U samples the ground-truth absent
  logit against the largest other absent and the largest seen logit (logit units).
- :func:`update_similarity_series`: cosine similarity of the head's weight updates among U
  classes and between S and U classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.figures._common import finish_axes, new_axes
from calib.figures.style import metric_look

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "EpochSeries",
    "epoch_series",
    "accuracy_series",
    "logit_series",
    "update_similarity_series",
    "plot_epoch_series",
    "ACCURACY_KEYS",
    "LOGIT_KEYS",
    "UPDATE_KEYS",
]

#: history key → legend label, for each figure (in drawing order).
ACCURACY_KEYS: dict[str, str] = {
    "acc_seen": "Acc S/Y (seen)",
    "acc_absent": "Acc U/Y (absent), γ = 0",
    "alg_acc_absent": "Acc U/Y after γ (ALG's γ of that epoch)",
    "acc_absent_absent": "Acc U/U (absent among absent)",
    "ncm_acc_absent": "NCM Acc U/Y (nearest class mean on the features)",
    "ausuc": "AUSUC (all γ)",
}
LOGIT_KEYS: dict[str, str] = {
    "logit_seen_mean": "mean seen logit (all samples)",
    "logit_absent_mean": "mean absent logit (all samples)",
    "logit_gt_absent": "U samples: ground-truth absent logit",
    "logit_other_absent_max": "U samples: largest other absent logit",
    "logit_seen_max_on_absent": "U samples: largest seen logit",
}
UPDATE_KEYS: dict[str, str] = {
    "update_cos_absent_absent": "between two absent classes (U–U)",
    "update_cos_seen_absent": "between a seen and an absent class (S–U)",
}


@dataclass(frozen=True)
class EpochSeries:
    """Series over epochs, ready to draw.

    Attributes:
        epochs: (E,) the evaluated epochs, ascending (0 = pre-trained).
        values: history key → (E,) values in the figure's unit (NaN where undefined).
        labels: history key → legend label.
        ylabel: the y-axis label, with its unit.
        what: what the figure shows (the start of its title).
    """

    epochs: np.ndarray
    values: dict[str, np.ndarray]
    labels: dict[str, str]
    ylabel: str
    what: str


def _value(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    return float("nan") if v is None or isinstance(v, str) else float(v)


def epoch_series(
    rows: Sequence[Mapping[str, Any]],
    keys: Mapping[str, str],
    *,
    scale: float = 1.0,
    ylabel: str,
    what: str,
) -> EpochSeries:
    """The ``keys`` of the history ``rows`` as series × ``scale``; all-NaN series are left out.

    Raises:
        ValueError: no rows, or none of ``keys`` has a value.
    """
    if not rows:
        raise ValueError("no history rows: was the run evaluated per epoch (eval.every_epochs)?")
    epochs = np.array([int(r["epoch"]) for r in rows])
    values = {}
    for key in keys:
        v = np.array([_value(r, key) for r in rows]) * scale
        if not np.isnan(v).all():
            values[key] = v
    if not values:
        raise ValueError(f"the history has no values for any of {list(keys)}")
    return EpochSeries(epochs, values, {k: keys[k] for k in values}, ylabel, what)


def accuracy_series(rows: Sequence[Mapping[str, Any]]) -> EpochSeries:
    """Acc S/Y, U/Y (γ = 0 and after ALG's γ), U/U, NCM Acc U/Y and AUSUC, in %, per epoch."""
    return epoch_series(rows, ACCURACY_KEYS, scale=100.0, ylabel="test accuracy / AUSUC (%)",
                        what="Accuracies during fine-tuning, before and after γ")  # fmt: skip


def logit_series(rows: Sequence[Mapping[str, Any]]) -> EpochSeries:
    """Mean seen / absent logits and, on U samples, ground truth vs the strongest rivals."""
    return epoch_series(rows, LOGIT_KEYS, ylabel="mean test logit (logit units)",
                        what="Logits during fine-tuning")  # fmt: skip


def update_similarity_series(rows: Sequence[Mapping[str, Any]]) -> EpochSeries:
    """Mean cosine similarity of the head's weight updates W − W_pre, U–U and S–U."""
    return epoch_series(rows, UPDATE_KEYS, ylabel="mean cosine similarity of updates W − W_pre (−1 to 1)",
                        what="Similarity of the head's weight updates")  # fmt: skip


def _defined_epochs(series: EpochSeries) -> tuple[int, int]:
    """The first and last epoch where some series has a value."""
    defined = np.zeros(series.epochs.shape, dtype=bool)
    for v in series.values.values():
        defined |= ~np.isnan(v)
    epochs = series.epochs[defined]
    return int(epochs.min()), int(epochs.max())


def _cosine_limits(series: EpochSeries) -> tuple[float, float]:
    """y limits that fit the cosines, 0 included, with a margin (within −1…1)."""
    values = np.concatenate([v[~np.isnan(v)] for v in series.values.values()] + [np.zeros(1)])
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.08 * (hi - lo), 0.02)
    return max(lo - pad, -1.05), min(hi + pad, 1.05)


def plot_epoch_series(
    series: EpochSeries, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Draw ``series``: one line per key, in its :func:`calib.figures.style.metric_look`.

    ``title``: which run (e.g. its overrides), appended to the figure's subject.
    """
    from matplotlib.ticker import MaxNLocator

    ax = new_axes(ax)
    many = series.epochs.size > 25  # long runs: lines only, markers would clutter
    for key, values in series.values.items():
        look = metric_look(key)
        ax.plot(series.epochs, values, color=look.color, linestyle=look.linestyle,
                marker=None if many else look.marker, markersize=look.markersize * 0.75,
                linewidth=1.6, label=series.labels[key], zorder=look.zorder)  # fmt: skip
    first, last = _defined_epochs(series)
    if set(series.values) <= set(UPDATE_KEYS):  # cosines: the data's range, 0 always in view
        ax.axhline(0.0, color="0.5", linewidth=0.8, zorder=1)
        ax.set_ylim(*_cosine_limits(series))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # from the first epoch with a value: updates W − W_pre are undefined at epoch 0
    span = max(last - first, 1)
    ax.set_xlim(first - 0.04 * span, last + 0.04 * span)
    finish_axes(ax, title, "fine-tuning epoch (0 = pre-trained)", series.ylabel, series.what)
    return ax
