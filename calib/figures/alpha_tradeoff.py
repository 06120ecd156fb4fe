""" "Fix the weights" against "fix the logits": the WiSE-FT α path beside the γ curves.

The numbers come from :func:`calib.methods.alpha_tradeoff` (the α path) and
:func:`calib.seen_absent_curve` (the γ curves); this module only draws them, on the axes of
:func:`calib.figures.seen_absent.plot_seen_absent_curves` (x = Acc S/Y, y = Acc U/Y, both in [0, 1]).
The α path starts at the pre-trained model (α = 0, the γ = 0 point of its γ curve) and ends at
the fine-tuned one (α = 1, the γ = 0 point of the fine-tuned curve); a path below the
fine-tuned γ curve means one γ on the fine-tuned logits beats mixing the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from calib.figures.style import MODEL_LOOKS, Look, selector_look
from calib.metrics.curve import SeenAbsentCurve, curve_xy

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from calib.methods.wise_ft import AlphaCurve

__all__ = ["ALPHA_LOOK", "plot_alpha_tradeoff"]

#: The α path: Okabe–Ito orange (no selector point is drawn in this figure), diamonds.
ALPHA_LOOK = Look("#E69F00", "D", linestyle="-", zorder=3.0, markersize=5.5)


def _curve_look(label: str) -> Look:
    return MODEL_LOOKS.get(label) or selector_look(label)


def _annotated(alpha: np.ndarray, wanted: Sequence[float]) -> list[int]:
    """Indices of the grid points nearest to each wanted α, without repeats, in α order."""
    return sorted({int(np.argmin(np.abs(alpha - a))) for a in wanted})


def plot_alpha_tradeoff(
    alpha_curve: AlphaCurve,
    gamma_curves: Mapping[str, SeenAbsentCurve],
    ax: Axes | None = None,
    title: str | None = None,
    annotate: Sequence[float] = (0.0, 0.5, 1.0),
    gamma_area: float | None = None,
) -> Axes:
    """Draw the α path and the γ curve(s) on one pair of axes.

    Args:
        alpha_curve: the WiSE-FT α path (:func:`calib.methods.alpha_tradeoff`).
        gamma_curves: label → γ curve, e.g. ``{"pre-trained": ..., "fine-tuned": ...}``
            (those two labels get the models' looks of :mod:`calib.figures.style`); the legend
            shows each with its AUSUC.
        ax: the axes to draw into; default a new figure's axes.
        title: optional axes title.
        annotate: the α values written beside the path (the nearest grid points).
        gamma_area: the area under the fine-tuned model's γ curve over the S/Y range the α
            path spans (:func:`calib.methods.wise_ft.gamma_area_on_alpha_range`), the number
            to compare with the path's own area; shown in the path's legend entry.

    Returns:
        The axes drawn into (``ax.figure`` for :func:`calib.figures.seen_absent.save_figure`).
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(9.5, 5.5), layout="constrained").add_subplot()
    for label, curve in gamma_curves.items():
        x, y = (100.0 * v for v in curve_xy(curve))  # in %, as every table and figure
        look = _curve_look(label)
        ax.plot(
            x,
            y,
            color=look.color,
            linestyle=look.linestyle,
            linewidth=1.8,
            zorder=2.0,
            label=f"{label}, γ swept (AUSUC {100 * curve.ausuc:.1f})",
        )
    a = np.asarray(alpha_curve.alpha, dtype=np.float64)
    x = 100.0 * np.asarray(alpha_curve.acc_seen, dtype=np.float64)
    y = 100.0 * np.asarray(alpha_curve.acc_absent, dtype=np.float64)
    ax.plot(
        x,
        y,
        **ALPHA_LOOK.plot_kwargs(),
        linewidth=1.6,
        markeredgecolor="black",
        markeredgewidth=0.5,
        label=(
            f"WiSE-FT, α swept {a[0]:g}→{a[-1]:g}: area {100 * alpha_curve.area:.1f} on its "
            "S/Y range"
            + ("" if gamma_area is None else f"\n(γ curve of α = 1 there: {100 * gamma_area:.1f})")
        ),
    )
    for k in _annotated(a, annotate):
        (dx, dy), ha, va = _label_side(x, y, k)
        ax.annotate(
            f"α={a[k]:g}",
            (x[k], y[k]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize="small",
            color="#4D4D4D",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            zorder=4.0,
        )
    _finish(ax, title)
    return ax


def _label_side(x: np.ndarray, y: np.ndarray, k: int, dist: float = 9.0):
    """Where point ``k``'s label goes: across the path (not along it, onto the next point), on
    the side of the origin (the γ curves lie above and right of the α path). Returns the offset
    in points and the text's alignment."""
    lo, hi = max(k - 1, 0), min(k + 1, len(x) - 1)
    tx, ty = x[hi] - x[lo], y[hi] - y[lo]  # the path's direction at k (unit square axes)
    nx, ny = -ty, tx
    if nx * x[k] + ny * y[k] > 0:  # point the normal towards the origin
        nx, ny = -nx, -ny
    norm = float(np.hypot(nx, ny))
    nx, ny = (nx / norm, ny / norm) if norm > 0 else (0.0, -1.0)
    ha = "center" if abs(nx) < 0.4 else ("left" if nx > 0 else "right")
    va = "center" if abs(ny) < 0.4 else ("bottom" if ny > 0 else "top")
    return (dist * nx, dist * ny), ha, va


def _finish(ax: Axes, title: str | None) -> None:
    """The axes of every seen–absent figure: 0–100 % square, equal aspect, legend beside them."""
    ax.set_xlabel("Acc S/Y, seen classes (%)")
    ax.set_ylabel("Acc U/Y, absent classes (%)")
    ax.set_xlim(0.0, 100.0)
    ax.set_ylim(0.0, 100.0)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    # beside the axes: inside, it would cover the curves' low-S/Y ends or the α path's
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", framealpha=0.9)
    if title:
        ax.set_title(title)
