"""Drawing reliability diagrams. The numbers come from :func:`calib.metrics.probability.reliability_diagram`.

A panel shows, for each series, the accuracy of each non-empty bin against the bin's mean
confidence (markers joined by lines; the distance of a marker from the diagonal is that bin's
calibration gap), the diagonal of perfect calibration, and below it a strip with the share of
samples per bin, so that a reader sees which bins carry the ECE. Colours follow the sample
group of :mod:`calib.figures.style` (all / seen / absent); the series of one panel differ by
shade, line style and marker. matplotlib is imported inside the functions (Figure API, no
pyplot); write figures with :func:`calib.figures.seen_absent.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from calib.figures.style import group_look
from calib.metrics.probability import ReliabilityDiagram

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_reliability", "plot_reliability_groups"]

_STYLES = (("-", "o", 0.0), ("--", "s", 0.35), (":", "^", 0.55), ("-.", "D", 0.2))

_GROUP_TITLES = {
    "all": "all test samples",
    "seen": "samples of seen classes S",
    "absent": "samples of absent classes U",
}


def _shade(color: str, towards_white: float) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return (r + (1 - r) * towards_white, g + (1 - g) * towards_white, b + (1 - b) * towards_white)


def _uses_shares(diagrams: Mapping[str, ReliabilityDiagram]) -> bool:
    """Shares per bin are comparable only when every series has the same equal-width bins."""
    first = next(iter(diagrams.values()))
    return all(
        not d.adaptive
        and d.edges.shape == first.edges.shape
        and np.array_equal(d.edges, first.edges)
        for d in diagrams.values()
    )


def _draw_series(
    ax: Axes,
    count_ax: Axes | None,
    d: ReliabilityDiagram,
    label: str,
    i: int,
    shares: bool,
    largest: int,
) -> None:
    """Series ``i``: sized bin markers, a faint joining line, and its step in the count strip."""
    linestyle, marker, lighten = _STYLES[i % len(_STYLES)]
    color = _shade(group_look(d.group).color, lighten)
    full = d.count > 0
    # marker area ∝ bin count: a bin of 2 samples at accuracy 0 must not look like a trend
    ax.scatter(
        d.confidence[full],
        d.accuracy[full],
        s=8 + 160 * d.count[full] / largest,
        color=color,
        marker=marker,
        edgecolors="white",
        linewidths=0.5,
        zorder=4 + 0.1 * i,
        clip_on=False,  # a full bin at confidence ≈ 1 sits on the frame
    )
    ax.plot(
        d.confidence[full],
        d.accuracy[full],
        color=color,
        linestyle=linestyle,
        linewidth=1.1,
        alpha=0.7,
        marker=marker,
        markersize=5,
        markevery=[],  # the legend shows the marker; the sized scatter draws the points
        label=label,
        zorder=3,
    )
    if count_ax is not None and d.n_samples:
        values = d.count / d.n_samples
        if not shares:
            widths = np.diff(d.edges)
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.where(widths > 0, values / widths, 0.0)
        count_ax.stairs(values, d.edges, color=color, linestyle=linestyle, linewidth=1.4)


def _finish_axes(ax: Axes, count_ax: Axes | None, title: str | None, shares: bool) -> None:
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    if title:
        ax.set_title(title)
    if count_ax is None:
        ax.set_xlabel("confidence (top-label probability)")
    else:
        count_ax.set_xlim(0.0, 1.0)
        count_ax.set_ylim(bottom=0.0)
        count_ax.set_ylabel("share of\nsamples" if shares else "density")
        count_ax.set_xlabel("confidence (top-label probability)")
        count_ax.grid(True, alpha=0.3)
        ax.tick_params(labelbottom=False)


def plot_reliability(
    diagrams: Mapping[str, ReliabilityDiagram],
    ax: Axes | None = None,
    title: str | None = None,
    *,
    count_ax: Axes | None = None,
) -> Axes:
    """Draw reliability diagrams (accuracy against confidence per bin) into one panel.

    Args:
        diagrams: series label → diagram; the legend shows each label with its ECE.
        ax: the axes to draw into; default a new figure with a count strip below.
        title: optional axes title.
        count_ax: axes for the strip of samples per bin (share per bin for common
            equal-width bins, else density per unit of confidence); with ``ax`` given and no
            ``count_ax`` there is no strip. The markers' area is proportional to the bin's
            count either way.

    Returns:
        The reliability axes (``ax.figure`` is the figure, e.g. for ``save_figure``).
    """
    if not diagrams:
        raise ValueError("nothing to plot: no reliability diagram given")
    for label, d in diagrams.items():
        if not isinstance(d, ReliabilityDiagram):
            raise TypeError(
                f"diagrams[{label!r}] must be a ReliabilityDiagram, got {type(d).__name__}"
            )
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.2, 5.0), layout="constrained")
        ax, count_ax = fig.subplots(2, 1, sharex=True, height_ratios=(4, 1))
    ax.plot([0, 1], [0, 1], color="0.55", linewidth=1.0, linestyle="--", zorder=1)
    shares = _uses_shares(diagrams)
    largest = max(max(int(d.count.max()), 1) for d in diagrams.values())
    sizes = {d.n_samples for d in diagrams.values()}
    for i, (label, d) in enumerate(diagrams.items()):
        n_text = f", n={d.n_samples}" if len(sizes) > 1 else ""
        _draw_series(ax, count_ax, d, f"{label} (ECE {d.ece:.3f}{n_text})", i, shares, largest)
    if len(sizes) == 1 and title:
        title = f"{title} (n = {sizes.pop()})"
    _finish_axes(ax, count_ax, title, shares)
    return ax


def plot_reliability_groups(
    diagrams: Mapping[str, Mapping[str, ReliabilityDiagram]],
    title: str | None = None,
) -> Figure:
    """One panel per sample group, side by side, each with its count strip.

    Args:
        diagrams: group (``all``, ``seen``, ``absent``, in the order wanted) → series label →
            diagram of that group, e.g. ``{"seen": {"fine-tuned": d1, "+ γ": d2}, ...}``.
        title: optional figure title.

    Returns:
        The figure.
    """
    if not diagrams:
        raise ValueError("nothing to plot: no group given")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0 * len(diagrams), 5.0), layout="constrained")
    axes = fig.subplots(2, len(diagrams), sharex=True, height_ratios=(4, 1), squeeze=False)
    for j, (group, series) in enumerate(diagrams.items()):
        wrong = [label for label, d in series.items() if getattr(d, "group", group) != group]
        if wrong:
            raise ValueError(f"diagrams[{group!r}] holds diagrams of another group: {wrong}")
        plot_reliability(
            series, ax=axes[0, j], title=_GROUP_TITLES.get(group, group), count_ax=axes[1, j]
        )
        if j:
            axes[0, j].set_ylabel("")
            axes[1, j].set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig
