"""Accuracies and γ across a sequence of fine-tunings (:mod:`calib.sequence`, ``digits_stages``).

:func:`stage_series` turns each stage's reports into numbers (an :class:`StageSeries`);
:func:`plot_stage_series` draws them: one panel each for Acc S/Y, U/Y and Y/Y (in %) and
one for γ (logit units), the stages on the x axis, the fine-tuned model at γ = 0 as a black
dashed line and every selector in its look (:mod:`calib.figures.style`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.figures.files import wrap_title
from calib.figures.style import selector_look

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "NAMES_PER_STAGE",
    "STAGE_METRICS",
    "UNCALIBRATED",
    "StageSeries",
    "stage_classes_text",
    "stage_label",
    "stage_series",
    "plot_stage_series",
]

#: report key → panel title, in panel order (accuracies, drawn in %).
STAGE_METRICS: dict[str, str] = {
    "acc_seen": "Acc S/Y (seen)",
    "acc_absent": "Acc U/Y (absent)",
    "acc_all": "Acc Y/Y (all)",
}
#: The series name of the fine-tuned model at γ = 0 (its look: the black X of the style).
UNCALIBRATED = "uncalibrated"


@dataclass(frozen=True)
class StageSeries:
    """The numbers of the stage figure.

    Attributes:
        stages: one x-axis label per stage (e.g. ``"1\\n|S|=3"``).
        values: metric key (:data:`STAGE_METRICS`) → series name (:data:`UNCALIBRATED`, then
            the selectors) → (K,) float64 accuracies in % (NaN where a group has no sample).
        gamma: selector → (K,) float64 γ in logit units.
        classes: per stage, the classes it adds by name (:func:`stage_classes_text`), drawn
            as a line under the panels; None when the domain's names are not given.
    """

    stages: tuple[str, ...]
    values: dict[str, dict[str, np.ndarray]]
    gamma: dict[str, np.ndarray]
    classes: tuple[str, ...] | None = None


def stage_series(
    reports: Sequence[Mapping[str, Mapping[str, Any]]],
    before: str = "none",
    seen_classes: Sequence[Sequence[int]] | None = None,
    class_names: Sequence[str] | None = None,
) -> StageSeries:
    """The accuracies (%) and γ of every stage, before and after each selector's γ.

    Args:
        reports: per stage, ``{row: report}`` where a report holds ``acc_seen``,
            ``acc_absent``, ``acc_all`` (fractions in [0, 1]) and, for a selector, ``gamma``
            (:attr:`calib.sequence.StageResult.reports`, or a run's ``finetuned`` and
            ``calibrated`` rows); every stage has the same rows.
        before: the row at γ = 0 (``"none"`` in :mod:`calib.sequence`).
        seen_classes: S of each stage, for the x labels (``|S|``); default: the stage numbers.
        class_names: the domain's class names (index = label): the figure names the classes
            each stage adds to S (all of S at the first stage) in a line under the panels
            (:attr:`StageSeries.classes`); needs ``seen_classes``.

    Raises:
        ValueError: no stage; a stage without the ``before`` row or with other rows than the
            first; a missing metric; ``seen_classes`` of another length.
    """
    if len(reports) == 0:
        raise ValueError("reports is empty: the figure needs at least one stage")
    rows = list(reports[0])
    if before not in rows:
        raise ValueError(f"reports[0] has no {before!r} row (γ = 0); rows: {rows}")
    selectors = [r for r in rows if r != before]
    for k, stage in enumerate(reports):
        if set(stage) != set(rows):
            raise ValueError(
                f"reports[{k}] has rows {sorted(stage)}, stage 1 has {sorted(rows)}: every stage "
                "needs the same selectors"
            )
        for row, report in stage.items():
            wanted = list(STAGE_METRICS) + ([] if row == before else ["gamma"])
            missing = [key for key in wanted if key not in report]
            if missing:
                raise ValueError(f"reports[{k}][{row!r}] lacks {missing}")
    if seen_classes is not None and len(seen_classes) != len(reports):
        raise ValueError(f"seen_classes has {len(seen_classes)} entries for {len(reports)} stages")
    if class_names is not None and seen_classes is None:
        raise ValueError("class_names labels the stages' classes: it needs seen_classes")
    labels = tuple(
        stage_label(k, None if seen_classes is None else seen_classes[k])
        for k in range(len(reports))
    )
    named = None
    if class_names is not None and seen_classes is not None:
        named = tuple(
            stage_classes_text(k, seen_classes[k], seen_classes[k - 1] if k else (), class_names)
            for k in range(len(reports))
        )

    def column(row: str, key: str, scale: float) -> np.ndarray:
        return np.array([_number(stage[row][key]) * scale for stage in reports])

    values = {
        key: {
            UNCALIBRATED: column(before, key, 100.0),
            **{s: column(s, key, 100.0) for s in selectors},
        }
        for key in STAGE_METRICS
    }
    gamma = {s: column(s, "gamma", 1.0) for s in selectors}
    return StageSeries(stages=labels, values=values, gamma=gamma, classes=named)


#: At most this many class names per stage in the figure's class line; more: ``… (+k)``.
NAMES_PER_STAGE = 5


def stage_label(index: int, classes: Sequence[int] | None = None) -> str:
    """The x label of stage ``index`` (0-based): ``"2\n|S|=5"``; ``"2"`` without its classes."""
    return f"{index + 1}" if classes is None else f"{index + 1}\n|S|={len(classes)}"


def stage_classes_text(
    index: int,
    classes: Sequence[int],
    before: Sequence[int],
    class_names: Sequence[str],
    limit: int = NAMES_PER_STAGE,
) -> str:
    """The classes stage ``index`` (0-based) adds to ``before`` (the previous stage's S), by
    name: ``"2: +three, four"``; at the first stage S itself (``"1: zero, one, two"``). At most
    ``limit`` names, then ``"… (+k)"``; ``"3: nothing added"`` when S did not grow.

    Raises:
        IndexError: a class without a name in ``class_names``.
    """
    old = {int(c) for c in before}
    added = [int(c) for c in classes if int(c) not in old]
    if not added:
        return f"{index + 1}: nothing added"
    names = ", ".join(str(class_names[c]) for c in added[:limit])
    more = f", … (+{len(added) - limit})" if len(added) > limit else ""
    return f"{index + 1}: {'+' if old else ''}{names}{more}"


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)  # JSON null: NaN


def plot_stage_series(series: StageSeries, title: str | None = None) -> Figure:
    """Draw ``series``: Acc S/Y, U/Y, Y/Y (%) and γ per stage, one line per selector.

    Returns the matplotlib ``Figure`` (no pyplot); write it with
    :func:`calib.figures.files.save_figure`.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.5, 3.9), layout="constrained")
    axes = fig.subplots(1, len(STAGE_METRICS) + 1)
    x = np.arange(len(series.stages))
    for ax, (key, what) in zip(axes, STAGE_METRICS.items(), strict=False):
        for name, values in series.values[key].items():
            _line(ax, x, values, name)
        ax.set_title(what, fontsize="medium")
        ax.set_ylabel("%")
        low = np.nanmin([np.nanmin(v) if np.isfinite(v).any() else 100.0
                         for v in series.values[key].values()])  # fmt: skip
        ax.set_ylim(max(0.0, min(low, 100.0) - 5.0), 101.0)
    ax = axes[-1]
    for name, values in series.gamma.items():
        _line(ax, x, values, name)
    ax.axhline(0.0, color="0.5", linewidth=0.8, zorder=1)
    ax.set_title("γ (logit units)", fontsize="medium")
    for ax in axes:
        ax.set_xticks(x, series.stages)
        ax.set_xlabel("stage")
        ax.grid(True, alpha=0.3)
        ax.set_xlim(-0.3, len(x) - 0.7)
    if series.classes is not None:
        text = "Classes of each stage: " + "; ".join(series.classes)
        fig.supxlabel(wrap_title(text, 150), fontsize="small", horizontalalignment="center")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right upper", fontsize="small", frameon=False)
    what = "Across fine-tuning stages: before γ (dashed) and after each selector's γ"
    fig.suptitle(wrap_title(f"{what} — {title}" if title else what, 110), fontsize="medium")
    return fig


def _line(ax: Any, x: np.ndarray, values: np.ndarray, name: str) -> None:
    look = selector_look(name)
    style = "--" if name == UNCALIBRATED else "-"
    label = "fine-tuned, γ = 0" if name == UNCALIBRATED else name
    ax.plot(x, values, color=look.color, marker=look.marker, linestyle=style, linewidth=1.6,
            markersize=look.markersize * 0.75, zorder=look.zorder, label=label)  # fmt: skip
