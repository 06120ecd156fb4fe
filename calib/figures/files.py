"""Where figures go: their resolution (``CALIB_FIGURE_DPI``), atomic PNG/PDF writes with the
user's umask, and titles wrapped to fit."""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING

from calib.io import atomic_open

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["FIGURE_DPI", "figure_dpi", "save_figure", "wrap_title"]


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
