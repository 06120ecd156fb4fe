"""The seen–absent curve at selected epochs of fine-tuning (from ``history/curve_epoch<k>.npz``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.figures._common import new_axes
from calib.figures.seen_absent import plot_seen_absent_curves
from calib.figures.style import sequential_colors
from calib.metrics.curve import SeenAbsentCurve

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["select_epochs", "curve_from_arrays", "plot_curves_at_epochs"]


def select_epochs(available: Sequence[int], max_curves: int = 5) -> list[int]:
    """At most ``max_curves`` of the ``available`` epochs: the first, the last and evenly spaced
    ones between (by position), ascending."""
    epochs = sorted({int(e) for e in available})
    if max_curves < 2:
        raise ValueError(f"max_curves must be at least 2, got {max_curves}")
    if len(epochs) <= max_curves:
        return epochs
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, max_curves)).astype(int))
    return [epochs[i] for i in picks]


def curve_from_arrays(
    arrays: Mapping[str, Any], n_seen: int = 0, n_absent: int = 0
) -> SeenAbsentCurve:
    """A :class:`~calib.metrics.curve.SeenAbsentCurve` from the arrays of a ``curve_epoch<k>.npz``."""
    missing = {"gamma", "acc_seen", "acc_absent", "acc_all", "ausuc"} - set(arrays)
    if missing:
        raise ValueError(f"curve arrays lack {sorted(missing)}")
    return SeenAbsentCurve(
        gamma=np.asarray(arrays["gamma"], dtype=np.float64),
        acc_seen=np.asarray(arrays["acc_seen"], dtype=np.float64),
        acc_absent=np.asarray(arrays["acc_absent"], dtype=np.float64),
        acc_all=np.asarray(arrays["acc_all"], dtype=np.float64),
        ausuc=float(arrays["ausuc"]),
        n_seen=int(n_seen),
        n_absent=int(n_absent),
    )


def plot_curves_at_epochs(
    curves: Mapping[int, SeenAbsentCurve],
    ax: Axes | None = None,
    title: str | None = None,
    of: int | None = None,
) -> Axes:
    """One seen–absent curve per epoch (dark = early, light = late), γ = 0 marked on each, in %.

    ``of``: how many epochs were evaluated, when ``curves`` holds only some of them (the title
    then says so: no epoch is left out silently).
    """
    if not curves:
        raise ValueError("no curves to draw")
    ax = new_axes(ax, figsize=(7.5, 5))
    order = sorted(curves)
    labels = {e: ("epoch 0 = pre-trained" if e == 0 else f"epoch {e}") for e in order}
    colors = dict(zip(labels.values(), sequential_colors(len(order)), strict=True))
    plot_seen_absent_curves({labels[e]: curves[e] for e in order}, ax=ax, colors=colors,
                            percent=True)  # fmt: skip
    from calib.figures.files import wrap_title

    what = "Seen–absent curves during fine-tuning"
    if of is not None and of > len(order):
        what += f" ({len(order)} of {of} evaluated epochs)"
    ax.set_title(wrap_title(f"{what} — {title}" if title else what), fontsize="medium")
    return ax
