"""The seen–absent curve figure: Acc U/Y against Acc S/Y over every γ, each selector's γ marked.

The numbers come from :mod:`calib.metrics.curve`; this module only draws. matplotlib is imported
inside the functions (no pyplot, no GUI backend), so the functions work headless."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from calib.figures.files import wrap_title
from calib.figures.style import SELECTOR_LOOKS, Look
from calib.metrics.curve import SeenAbsentCurve, curve_point, curve_xy

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["CORRECTION_LOOKS", "plot_seen_absent_curves"]

#: The post-hoc corrections' points (not a γ: drawn apart from every selector's look).
CORRECTION_LOOKS: dict[str, Look] = {
    "wa": Look("#56B4E9", "P", zorder=3.6, markersize=10),
    "bic": Look("#F0E442", "h", zorder=3.6, markersize=10),
    "gla": Look("#7F3C8D", "p", zorder=3.6, markersize=10),
}


def _selector_of(label: str) -> str | None:
    """The selector a point label names: the label itself, or its first word that is a selector
    (``"γ alg = +5.11"`` → ``"alg"``)."""
    if label in SELECTOR_LOOKS:
        return label
    for word in re.split(r"[^A-Za-z0-9_]+", label):
        if word in SELECTOR_LOOKS:
            return word
    return None


def plot_seen_absent_curves(
    curves: Mapping[str, SeenAbsentCurve],
    points: Mapping[str, tuple[float, float]] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    *,
    selectors: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    mark_uncalibrated: bool = True,
    percent: bool = False,
) -> Axes:
    """Draw seen–absent curves (x = Acc S/Y, y = Acc U/Y) and marked operating points.

    Args:
        curves: label → curve; the legend shows each label with the curve's AUSUC. The labels
            ``pre-trained`` and ``fine-tuned`` get their look from :mod:`calib.figures.style`.
        points: label → (acc_seen, acc_absent) as fractions, e.g. the γ each selector chose.
            Each is drawn in its selector's look (:func:`calib.figures.style.selector_look`):
            the selector is ``selectors[label]``, else the label itself or its first word that
            is a selector key (``"γ pcv = +9.39"`` → pcv).
        ax: the axes to draw into; default a new figure's axes.
        title: optional axes title (e.g. which run).
        selectors: label → selector key, for point labels that do not name their selector.
        colors: label → colour of a curve (others: the style's, else matplotlib's cycle).
        mark_uncalibrated: mark each curve's γ = 0 point (the uncalibrated model).
        percent: draw accuracies in % (0–100) rather than as fractions (0–1).

    Returns:
        The axes drawn into (``ax.figure`` is the figure, e.g. for :func:`save_figure`). Its
        lines are the curves, then the points, then the γ = 0 marks, in that order.
    """
    from calib.figures.style import model_look, selector_look

    if not curves and not points:
        raise ValueError("nothing to plot: no curves and no points")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(7.5, 5), layout="constrained").add_subplot()
    f = 100.0 if percent else 1.0
    for label, curve in curves.items():
        x, y = curve_xy(curve)
        look = model_look(label)
        color = (colors or {}).get(label) or (look.color if look else None)
        linestyle = look.linestyle if look else "-"
        area = f"{100 * curve.ausuc:.1f} %" if percent else f"{curve.ausuc:.3f}"
        ax.plot(f * x, f * y, linewidth=1.8, color=color, linestyle=linestyle, zorder=2,
                label=f"{label} (AUSUC {area})")  # fmt: skip
    for label, (acc_seen, acc_absent) in (points or {}).items():
        name = (selectors or {}).get(label) or _selector_of(label) or label
        look = CORRECTION_LOOKS.get(name) or selector_look(name)
        ax.plot([f * float(acc_seen)], [f * float(acc_absent)], linestyle="none",
                marker=look.marker, markersize=look.markersize, color=look.color,
                markeredgecolor="black", markeredgewidth=0.8, zorder=look.zorder, label=label,
                clip_on=False)  # fmt: skip
    if mark_uncalibrated and curves:
        look = selector_look("uncalibrated")
        xy = np.array([curve_point(curve, 0.0) for curve in curves.values()])
        ax.plot(f * xy[:, 0], f * xy[:, 1], linestyle="none", marker=look.marker,
                markersize=look.markersize, color=look.color, markeredgecolor="white",
                markeredgewidth=0.6, zorder=look.zorder, label="γ = 0 (uncalibrated)",
                clip_on=False)  # fmt: skip
    unit = "%" if percent else "fraction"
    ax.set_xlabel(f"Acc S/Y: seen-class test accuracy ({unit})")
    ax.set_ylabel(f"Acc U/Y: absent-class test accuracy ({unit})")
    ax.set_xlim(0.0, f)
    ax.set_ylim(0.0, f)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    # points may sit on the frame (Acc S/Y = 100 %): drawn unclipped; the legend outside the
    # axes never hides a curve or a point
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    if title:
        ax.set_title(wrap_title(title))
    return ax
