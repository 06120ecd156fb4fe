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

__all__ = [
    "SPARSE_BIN",
    "plot_reliability",
    "plot_reliability_groups",
    "legends_below",
    "run_reliability_series",
]

#: line style and marker of the i-th series of a panel: every one solid enough to read in print
_STYLES = (("-", "o"), ("--", "s"), ("-.", "^"), ((0, (5, 1.5, 1, 1.5, 1, 1.5)), "D"))

#: A bin with fewer samples than this is drawn hollow and left out of the joining line: its
#: accuracy is too noisy (1–3 samples give 0 %, 33 %, 50 %, 100 %) to read as a trend.
SPARSE_BIN = 5

_GROUP_TITLES = {
    "all": "all test samples",
    "seen": "samples of seen classes S",
    "absent": "samples of absent classes U",
}


def _series_color(label: str, group: str, i: int) -> str:
    """A selector's colour when the label names one (``+ γ (pcv)``), black for the uncalibrated
    model, else the sample group's colour (the looks of :mod:`calib.figures.style`)."""
    from calib.figures.seen_absent import _selector_of
    from calib.figures.style import selector_look

    if label.split(" (")[0] in ("fine-tuned", "uncalibrated"):
        return selector_look("uncalibrated").color
    name = _selector_of(label)
    if name is not None and name != "uncalibrated":
        return selector_look(name).color
    return group_look(group).color


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
    ax: Axes, count_ax: Axes | None, d: ReliabilityDiagram, label: str, i: int, shares: bool
) -> None:
    """Series ``i`` in %: full bins as filled markers joined by a line, sparse bins hollow
    and unjoined, and the series' step in the count strip."""
    linestyle, marker = _STYLES[i % len(_STYLES)]
    color = _series_color(label, d.group, i)
    full = d.count >= SPARSE_BIN
    sparse = (d.count > 0) & ~full
    # unclipped: a full bin at confidence 100 % sits on the frame
    ax.plot(100 * d.confidence[full], 100 * d.accuracy[full], color=color, linestyle=linestyle,
            linewidth=1.6, marker=marker, markersize=5.5, markeredgecolor="white",
            markeredgewidth=0.5, label=label, zorder=3 + 0.1 * i, clip_on=False)  # fmt: skip
    if sparse.any():
        ax.plot(100 * d.confidence[sparse], 100 * d.accuracy[sparse], linestyle="none",
                marker=marker, markersize=4.5, markerfacecolor="none", markeredgecolor=color,
                markeredgewidth=0.9, alpha=0.8, zorder=2.5, clip_on=False)  # fmt: skip
    if count_ax is not None and d.n_samples:
        values = 100.0 * d.count / d.n_samples
        if not shares:
            widths = 100.0 * np.diff(d.edges)
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.where(widths > 0, values / widths, 0.0)
        count_ax.stairs(values, 100 * d.edges, color=color, linestyle=linestyle, linewidth=1.4)


def _sparse_key(ax: Axes) -> None:
    """The legend, with one entry saying what a hollow marker is."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                          markeredgecolor="0.3", markersize=4.5))  # fmt: skip
    labels.append(f"hollow: bin of < {SPARSE_BIN} samples (not joined)")
    ax.legend(handles, labels, loc="upper left", fontsize="small", framealpha=0.9)


def _finish_axes(ax: Axes, count_ax: Axes | None, title: str | None, shares: bool) -> None:
    # a little beyond 0–100 %: markers at confidence or accuracy 100 % are not cut
    ax.set_xlim(-2.0, 102.0)
    ax.set_ylim(-2.0, 102.0)
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    _sparse_key(ax)
    if title:
        ax.set_title(title)
    xlabel = "confidence: top-label probability (%)"
    if count_ax is None:
        ax.set_xlabel(xlabel)
    else:
        count_ax.set_xlim(-2.0, 102.0)
        count_ax.set_ylim(bottom=0.0)
        count_ax.set_ylabel("samples\nper bin (%)" if shares else "density\n(% per %)")
        count_ax.set_xlabel(xlabel)
        count_ax.grid(True, alpha=0.3)
        ax.tick_params(labelbottom=False)


def plot_reliability(
    diagrams: Mapping[str, ReliabilityDiagram],
    ax: Axes | None = None,
    title: str | None = None,
    *,
    count_ax: Axes | None = None,
) -> Axes:
    """Draw reliability diagrams (accuracy against confidence per bin, in %) into one panel.

    Args:
        diagrams: series label → diagram; the legend shows each label with its ECE.
        ax: the axes to draw into; default a new figure with a count strip below.
        title: optional axes title.
        count_ax: axes for the strip of samples per bin (% of the series' samples for common
            equal-width bins, else density in % per % of confidence); with ``ax`` given and
            no ``count_ax`` there is no strip. Bins of fewer than :data:`SPARSE_BIN` samples
            are hollow markers, not joined by the series' line.

    Confidence, accuracy and ECE are drawn in %. The series' lines are in ``ax.lines`` after
    the diagonal, in the order given; each series' sparse bins follow its line.

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
    ax.plot([0, 100], [0, 100], color="0.55", linewidth=1.0, linestyle="--", zorder=1)
    shares = _uses_shares(diagrams)
    sizes = {d.n_samples for d in diagrams.values()}
    for i, (label, d) in enumerate(diagrams.items()):
        n_text = f", n={d.n_samples}" if len(sizes) > 1 else ""
        _draw_series(ax, count_ax, d, f"{label} (ECE {100 * d.ece:.1f} %{n_text})", i, shares)
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
    # one range for every count strip, so that their heights compare across panels
    top = max(strip.get_ylim()[1] for strip in axes[1])
    for strip in axes[1]:
        strip.set_ylim(0.0, top)
    if title:
        fig.suptitle(title)
    return fig


def legends_below(fig: Figure, n_panels: int) -> None:
    """Move each panel's legend under its count strip: inside, it hides low-confidence bins.

    ``fig``: a figure of :func:`plot_reliability_groups` with ``n_panels`` panels."""
    from matplotlib.transforms import offset_copy

    top, strips = fig.axes[:n_panels], fig.axes[n_panels : 2 * n_panels]
    for ax, strip in zip(top, strips, strict=True):
        legend = ax.get_legend()
        if legend is None:
            continue
        handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
        legend.remove()
        below = offset_copy(strip.transAxes, fig=fig, y=-34, units="points")  # under the xlabel
        strip.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                     bbox_transform=below, fontsize="small")  # fmt: skip


def run_reliability_series(
    prob: Mapping[str, Mapping], with_temperature: str | None = None
) -> dict[str, tuple[float, object]]:
    """The series of a run's reliability figure: label → (γ, T), from its probability results.

    Args:
        prob: ``results["probability"]`` (:func:`calib.run.probability_stage.probability_results`):
            ``{"calibrated": {selector: {"gamma", "temperature", "gamma_and_T": {...}}}}``.
        with_temperature: the selector whose γ is also shown with its T (default ``pcv``
            when present, else ``alg``, else the first); the others' T are in the table.

    Returns:
        ``{"fine-tuned": (0, 1), "+ γ (<selector>)": (γ, 1) for every selector, "+ γ + T
        (<selector>, T = t)": (γ, (T_S, T_U))}``.
    """
    calibrated = prob.get("calibrated", {})
    series: dict[str, tuple[float, object]] = {"fine-tuned": (0.0, 1.0)}
    for name, entry in calibrated.items():
        series[f"+ γ ({name})"] = (float(entry["gamma"]), 1.0)
    if with_temperature is None:
        with_temperature = next((n for n in ("pcv", "alg") if n in calibrated), None)
        with_temperature = with_temperature or next(iter(calibrated), None)
    if with_temperature is not None:
        if with_temperature not in calibrated:
            raise ValueError(
                f"with_temperature={with_temperature!r}: prob has no such selector; it has "
                f"{sorted(calibrated)}"
            )
        entry = calibrated[with_temperature]
        t = entry["gamma_and_T"]
        series[f"+ γ + T ({with_temperature}, T = {entry['temperature']:.2f})"] = (
            float(entry["gamma"]),
            (float(t["temperature_seen"]), float(t["temperature_absent"])),
        )
    return series
