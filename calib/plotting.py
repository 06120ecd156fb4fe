"""Drawing seen–absent curves. The numbers come from :mod:`calib.curve`; this module only draws.

matplotlib is imported inside the functions, so ``import calib`` never needs it, and new
figures are made with :class:`matplotlib.figure.Figure` (no pyplot, no GUI backend): the
functions work headless as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ._checks import as_numpy
from .curve import SeenAbsentCurve
from .io import atomic_open

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["curve_xy", "plot_seen_absent_curves", "save_figure"]


def curve_xy(curve: SeenAbsentCurve) -> tuple[np.ndarray, np.ndarray]:
    """The curve's vertices as numpy arrays (x = acc_seen, y = acc_absent), in γ order.

    Straight segments between them are the trapezoids whose area is ``curve.ausuc``.
    """
    x = np.asarray(as_numpy(curve.acc_seen, "acc_seen"), dtype=np.float64)
    y = np.asarray(as_numpy(curve.acc_absent, "acc_absent"), dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"curve arrays must be 1-D of one length, got {x.shape} and {y.shape}")
    return x, y


def plot_seen_absent_curves(
    curves: Mapping[str, SeenAbsentCurve],
    points: Mapping[str, tuple[float, float]] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw seen–absent curves (x = Acc S/Y, y = Acc U/Y) and marked operating points.

    Args:
        curves: label → curve; the legend shows each label with the curve's AUSUC.
        points: label → (acc_seen, acc_absent), e.g. the γ each selector chose; drawn as markers.
        ax: the axes to draw into; default a new figure's axes.
        title: optional axes title.

    Returns:
        The axes drawn into (``ax.figure`` is the figure, e.g. for :func:`save_figure`).
    """
    if not curves and not points:
        raise ValueError("nothing to plot: no curves and no points")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(5.5, 5), layout="constrained").add_subplot()
    for label, curve in curves.items():
        x, y = curve_xy(curve)
        ax.plot(x, y, linewidth=1.8, label=f"{label} (AUSUC {curve.ausuc:.3f})")
    markers = "o^sDvP*Xh"
    for i, (label, (acc_seen, acc_absent)) in enumerate((points or {}).items()):
        ax.plot(
            [float(acc_seen)],
            [float(acc_absent)],
            linestyle="none",
            marker=markers[i % len(markers)],
            markersize=8,
            markeredgecolor="black",
            label=label,
        )
    ax.set_xlabel("Acc S/Y (seen classes)")
    ax.set_ylabel("Acc U/Y (absent classes)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    # curves bow towards the upper right (high seen and absent accuracy): keep that corner free
    ax.legend(loc="lower left", fontsize="small", framealpha=0.9)
    if title:
        ax.set_title(title)
    return ax


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> None:
    """Write ``fig`` atomically; the format follows the suffix (``.png`` when there is none)."""
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=suffix, dpi=dpi)
