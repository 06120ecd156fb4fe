"""A sweep as figures: metrics per group before and after γ, and all runs' per-epoch curves.

The groups come from :func:`calib.run.sweep_groups.group_runs`; the series behind the figures,
:func:`sweep_series` and :func:`group_history_curves`, are computed here (numbers only).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from calib.figures._common import check_formats, finish_axes, legend_outside, new_axes
from calib.figures.files import save_figure, wrap_title
from calib.figures.style import cycle_look, model_look, selector_look

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "RunGroup",
    "variant_label",
    "sweep_series",
    "group_history_curves",
    "histories_by_group",
    "METRIC_NAMES",
    "metric_axis",
    "SWEEP_METRICS",
    "plot_sweep",
    "plot_sweep_histories",
    "write_sweep_figures",
]


class RunGroup(Protocol):
    """What the sweep figures read of a group of runs (:class:`calib.run.sweep_groups.RunGroup`):
    its label and, per model variant, per metric, the statistic (``mean``, ``std``, ``n``)."""

    label: str
    stats: Mapping[str, Mapping[str, Any]]


def variant_label(variant: str) -> str:
    """How a variant is named in tables and legends: ``fine-tuned + γ (alg)`` for a selector."""
    return variant if variant in ("pre-trained", "fine-tuned") else f"fine-tuned + γ ({variant})"


# ----------------------------------------------------------------------------- the series
#
# sweep_series gives each model variant's group means and stds of one metric (the bar or line
# chart of a sweep); histories_by_group and group_history_curves the per-epoch history of each
# group's runs and their mean (the training-dynamics panels). Pure: numbers only.


def sweep_series(
    groups: Sequence[RunGroup], metric: str, variants: Sequence[str] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, the group means, stds and counts of ``metric``: ``{variant: {"mean": (G,),
    "std": (G,), "n": (G,)}}``, groups in the order given (NaN / 0 where a group lacks it).

    ``variants`` default: every variant of any group, ``pre-trained`` and ``fine-tuned`` first.
    """
    if variants is None:
        seen: dict[str, None] = {}
        for group in groups:
            seen.update(dict.fromkeys(group.stats))
        variants = list(seen)
    out = {}
    for variant in variants:
        stats = [g.stats.get(variant, {}).get(metric) for g in groups]  # None: group lacks it
        out[variant] = {
            "mean": np.array([math.nan if s is None else s.mean for s in stats]),
            "std": np.array([math.nan if s is None else s.std for s in stats]),
            "n": np.array([0 if s is None else s.n for s in stats]),
        }
    return out


def group_history_curves(
    histories_by_group: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], metric: str
) -> dict[str, dict[str, Any]]:
    """Per group, each run's ``metric`` over epochs and their mean over the group's runs.

    Args:
        histories_by_group: group label → run name → history rows (:func:`calib.dynamics.read_history`).
        metric: a history key.

    Returns:
        ``{label: {"runs": {run: (epochs (E,), values (E,))}, "mean": (epochs, values)}}``; the
        mean is over the epochs every run of the group has (NaNs skipped).
    """
    out = {}
    for label, histories in histories_by_group.items():
        runs = {}
        for run, rows in histories.items():
            epochs = np.array([int(r["epoch"]) for r in rows])
            vals = np.array([float(r.get(metric, math.nan)) if r.get(metric) is not None else math.nan
                             for r in rows])  # fmt: skip
            runs[run] = (epochs, vals)
        common = (
            sorted(set.intersection(*(set(e.tolist()) for e, _ in runs.values()))) if runs else []
        )
        stacked = np.array([[v[list(e).index(x)] for x in common] for e, v in runs.values()])
        with warnings.catch_warnings():  # an all-NaN epoch gives NaN, as documented
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stacked, axis=0) if common else np.array([])
        out[label] = {"runs": runs, "mean": (np.array(common, dtype=int), mean)}
    return out


def histories_by_group(
    groups: Sequence[RunGroup], histories: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, dict[str, Sequence[Mapping[str, Any]]]]:
    """``{group label: {run name: history rows}}`` for the runs that have a (non-empty) history.

    ``histories``: run name → rows (e.g. :func:`calib.dynamics.read_history` of its folder).
    Groups without any history are left out.
    """
    out = {}
    for group in groups:
        have = {run: histories[run] for run in group.runs if histories.get(run)}
        if have:
            out[group.label] = have
    return out


#: Display names of the metrics.
METRIC_NAMES = {
    "acc_all": "Acc Y/Y",
    "acc_seen": "Acc S/Y",
    "acc_absent": "Acc U/Y",
    "acc_seen_seen": "Acc S/S",
    "acc_absent_absent": "Acc U/U",
    "hmean": "hmean of Acc S/Y and U/Y",
    "ausuc": "AUSUC",
    "ncm_acc_all": "NCM Acc Y/Y",
    "ncm_acc_absent": "NCM Acc U/Y",
    "gamma": "γ",
    "gamma_alg": "ALG γ",
}


def metric_axis(metric: str) -> tuple[float, str]:
    """(scale, axis label with unit) of a metric: accuracies in %, γ and logits in logit units."""
    name = METRIC_NAMES.get(metric, metric)
    if metric.startswith(("gamma", "logit_")):
        return 1.0, f"{name} (logit units)"
    if metric.startswith("update_cos"):
        return 1.0, f"{name} (cosine, −1 to 1)"
    if metric.startswith("weight_norm") or metric.startswith("update_norm"):
        return 1.0, f"{name} (weight units)"
    if metric in ("epoch", "n_samples", "n_train", "eval_seconds"):
        return 1.0, name
    return 100.0, f"test {name} (%)"


def _variant_look(variant: str):
    return model_look(variant) or selector_look(variant)


def _invariant(series: dict[str, dict[str, np.ndarray]], variant: str) -> bool:
    """The variant's means equal the fine-tuned ones everywhere (a γ-independent metric)."""
    if variant in ("pre-trained", "fine-tuned") or "fine-tuned" not in series:
        return False
    a, b = series[variant]["mean"], series["fine-tuned"]["mean"]
    return bool(np.array_equal(a, b, equal_nan=True))


def _ticks(labels: Sequence[str]) -> tuple[str | None, list[str]]:
    """``(key, values)`` when every label is ``key=value`` for one key, else ``(None, labels)``."""
    parts = [label.split("=", 1) for label in labels]
    if all(len(p) == 2 and "," not in label for p, label in zip(parts, labels, strict=True)):
        keys = {p[0] for p in parts}
        if len(keys) == 1:
            return keys.pop(), [p[1] for p in parts]
    return None, list(labels)


#: The panels of the sweep figure: what γ buys (Acc U/Y), what it costs (Acc S/Y), the net
#: (Acc Y/Y) and the γ-free AUSUC.
SWEEP_METRICS = ("acc_absent", "acc_seen", "acc_all", "ausuc")


def plot_sweep(
    groups: Sequence[RunGroup],
    metrics: Sequence[str] = SWEEP_METRICS,
    variants: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per metric: per group, the mean (± sample std over seeds) of each variant.

    Default panels (:data:`SWEEP_METRICS`): Acc U/Y, the S/Y cost of γ, Acc Y/Y and AUSUC.
    Error bars are drawn only for groups of two or more seeds; with one seed per group the
    markers have no bars and the legend no bar glyphs.

    Variants (default all: pre-trained, fine-tuned, then each selector's fine-tuned + γ) are
    drawn side by side in their style look. A selector whose values equal the fine-tuned ones
    for every group (AUSUC does not depend on γ) is not repeated in that panel. When one key
    was swept, the ticks show its values and the x label names it.
    """
    from matplotlib.figure import Figure

    if not groups:
        raise ValueError("no groups to draw")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not metrics:
        raise ValueError("metrics is empty: name at least one metric to draw")
    fig = Figure(figsize=(max(3.2, 0.9 * len(groups) + 1.5) * len(metrics) + 2.5, 4.8),
                 layout="constrained")  # fmt: skip
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    x = np.arange(len(groups))
    for ax, metric in zip(axes, metrics, strict=True):
        series = sweep_series(groups, metric, variants)
        shown = [v for v in series if not _invariant(series, v) and (series[v]["n"] > 0).any()]
        scale, ylabel = metric_axis(metric)
        width = 0.8 / max(len(shown), 1)
        n = sorted({int(k) for v in shown for k in series[v]["n"] if k})
        spread = bool(n) and n[-1] > 1
        for j, variant in enumerate(shown):
            look = _variant_look(variant)
            s = series[variant]
            at = x + (j - (len(shown) - 1) / 2) * width
            kwargs = dict(linestyle="none", marker=look.marker, markersize=look.markersize * 0.8,
                          color=look.color, markeredgecolor="black", markeredgewidth=0.5,
                          label=variant_label(variant), zorder=look.zorder)  # fmt: skip
            if spread:
                ax.errorbar(at, scale * s["mean"], yerr=np.nan_to_num(scale * s["std"]),
                            capsize=3, **kwargs)  # fmt: skip
            else:  # one seed: no spread to show, no bar glyph in the legend
                ax.plot(at, scale * s["mean"], **kwargs)
        key, ticks = _ticks([g.label for g in groups])
        tilt = sum(len(t) for t in ticks) > 60
        ax.set_xticks(x, ticks, rotation=20 if tilt else 0, ha="right" if tilt else "center")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(f"{METRIC_NAMES.get(metric, metric)}", fontsize="medium")
        seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}–{n[-1]}" if n else "0"
        how = f"mean ± sample std over {seeds} seeds" if spread else "one seed each"
        ax.set_xlabel(f"{key or 'sweep group'} ({how})")
    legend_outside(axes[-1])
    what = "Sweep: before and after γ"
    fig.suptitle(wrap_title(f"{what} — {title}" if title else what, 100), fontsize="medium")
    return fig


def plot_sweep_histories(
    histories_by_group: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    metric: str,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Every run's ``metric`` over epochs (thin), and each group's mean (bold), one colour per group."""
    curves = group_history_curves(histories_by_group, metric)
    if not curves:
        raise ValueError("no histories to draw")
    ax = new_axes(ax)
    scale, ylabel = metric_axis(metric)
    for i, (label, data) in enumerate(curves.items()):
        look = cycle_look(i)
        for epochs, values in data["runs"].values():
            ax.plot(epochs, scale * values, color=look.color, linewidth=0.8, alpha=0.45, zorder=2)
        epochs, mean = data["mean"]
        ax.plot(epochs, scale * mean, color=look.color, marker=look.marker, linewidth=2.0,
                markersize=5, zorder=3, label=f"{label} (mean of {len(data['runs'])})")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    what = f"{METRIC_NAMES.get(metric, metric)} during fine-tuning, every run (thin) and group mean"
    finish_axes(ax, title, "fine-tuning epoch (0 = pre-trained)", ylabel, what)
    return ax


def write_sweep_figures(
    out_dir: str | os.PathLike,
    groups: Sequence[RunGroup],
    histories_by_group: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png",),
    metrics: Sequence[str] = SWEEP_METRICS,
    history_metrics: Sequence[str] = ("acc_absent", "ausuc"),
) -> dict[str, list[Path]]:
    """Write ``sweep.<fmt>`` (:func:`plot_sweep`) and, with histories, ``sweep_<metric>_vs_epoch.<fmt>``
    (:func:`plot_sweep_histories`) into ``out_dir``; returns figure stem → paths."""
    out_dir = Path(out_dir)
    formats = check_formats(formats)
    figures = {"sweep": plot_sweep(groups, metrics, title=title)}
    for metric in history_metrics if histories_by_group else ():
        ax = plot_sweep_histories(histories_by_group, metric, title=title)
        figures[f"sweep_{metric}_vs_epoch"] = ax.figure
    written = {}
    for stem, fig in figures.items():
        written[stem] = [out_dir / f"{stem}.{fmt}" for fmt in formats]
        for path in written[stem]:
            save_figure(fig, path)
    return written
