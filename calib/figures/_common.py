"""Small drawing helpers shared by the figure modules (matplotlib imported inside)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from calib.figures.files import wrap_title

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["new_axes", "finish_axes", "legend_outside", "check_formats"]


def new_axes(ax: Axes | None, figsize: tuple[float, float] = (7.5, 4.5)) -> Axes:
    """``ax``, or the axes of a new constrained-layout figure (no pyplot)."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").add_subplot()


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The legend to the right of the axes, where it cannot hide data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                  frameon=False, **kwargs)  # fmt: skip


def finish_axes(ax: Axes, title: str | None, xlabel: str, ylabel: str, what: str) -> None:
    """Axis labels, a grid, the outside legend and a title: ``what`` and the run's ``title``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    legend_outside(ax)
    ax.set_title(wrap_title(f"{what} — {title}" if title else what), fontsize="medium")


def check_formats(formats: Any) -> tuple[str, ...]:
    """``formats`` as lower-case file suffixes that matplotlib can write.

    Raises:
        ValueError: no format, or one matplotlib cannot write (the known ones listed).
    """
    from matplotlib.backend_bases import FigureCanvasBase

    if isinstance(formats, str):
        formats = (formats,)
    out = tuple(str(f).lower().lstrip(".") for f in formats)
    known = FigureCanvasBase.get_supported_filetypes()
    bad = [f for f in out if f not in known]
    if not out or bad:
        raise ValueError(
            f"formats must name file types matplotlib writes ({sorted(known)}), got {formats!r}"
        )
    return out
