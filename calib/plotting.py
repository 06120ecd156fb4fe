"""Drawing seen–absent curves. The numbers come from :mod:`calib.curve`; this module only draws.

matplotlib is imported inside the functions, so ``import calib`` never needs it, and new
figures are made with :class:`matplotlib.figure.Figure` (no pyplot, no GUI backend): the
functions work headless as they are.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ._checks import as_numpy
from .curve import SeenAbsentCurve
from .figures.style import SELECTOR_LOOKS
from .io import atomic_open

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["curve_xy", "curve_point", "plot_seen_absent_curves", "save_figure", "wrap_title"]


def curve_xy(curve: SeenAbsentCurve) -> tuple[np.ndarray, np.ndarray]:
    """The curve's vertices as numpy arrays (x = acc_seen, y = acc_absent), in γ order.

    Straight segments between them are the trapezoids whose area is ``curve.ausuc``.
    """
    x = np.asarray(as_numpy(curve.acc_seen, "acc_seen"), dtype=np.float64)
    y = np.asarray(as_numpy(curve.acc_absent, "acc_absent"), dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"curve arrays must be 1-D of one length, got {x.shape} and {y.shape}")
    return x, y


def curve_point(curve: SeenAbsentCurve, gamma: float = 0.0) -> tuple[float, float]:
    """(acc_seen, acc_absent) of ``curve`` at bias ``gamma`` (the point whose interval holds it).

    Point k holds for γ in ``(gamma[k-1], gamma[k]]``, so this is what
    :func:`calib.accuracy_report` gives at ``gamma``.
    """
    g = np.asarray(as_numpy(curve.gamma, "gamma"), dtype=np.float64)
    x, y = curve_xy(curve)
    k = min(int(np.searchsorted(g, float(gamma), side="left")), g.size - 1)
    return float(x[k]), float(y[k])


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
    from .figures.style import model_look, selector_look

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
        look = selector_look(name)
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


def wrap_title(title: str, width: int = 70) -> str:
    """``title`` broken into lines of at most ``width`` characters (long run overrides)."""
    return "\n".join(textwrap.wrap(str(title), width=width, break_on_hyphens=False)) or str(title)


#: Resolution of the raster figures calib writes (dots per inch; PDFs are vector), unless the
#: environment variable ``CALIB_FIGURE_DPI`` says otherwise (e.g. 300 for print).
FIGURE_DPI = 150


def figure_dpi() -> int:
    """The dots per inch of calib's PNGs: ``$CALIB_FIGURE_DPI``, else :data:`FIGURE_DPI`."""
    raw = os.environ.get("CALIB_FIGURE_DPI")
    if raw is None:
        return FIGURE_DPI
    try:
        dpi = int(raw)
    except ValueError:
        dpi = 0
    if dpi < 1:
        raise ValueError(f"CALIB_FIGURE_DPI must be a positive integer, got {raw!r}")
    return dpi


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int | None = None) -> None:
    """Write ``fig`` atomically; the format follows the suffix (``.png`` when there is none).

    The saved area is cropped to what is drawn (``bbox_inches="tight"``), legends placed
    outside the axes included. ``dpi``: default :func:`figure_dpi`.
    """
    dpi = figure_dpi() if dpi is None else dpi
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=suffix, dpi=dpi, bbox_inches="tight")
