"""The public plotting API: Display objects in the style of scikit-learn's ``CalibrationDisplay``.

Each Display holds the numbers it draws (computed by :mod:`calib.metrics`, pure) and, once
drawn, the matplotlib objects (``figure_``, ``ax_``) for further styling. Build one from
logits (``from_predictions``) or from fitted calibrators (``from_estimator``)::

    from calib.figures import SeenAbsentDisplay, ReliabilityDisplay

    disp = SeenAbsentDisplay.from_estimator(calibrator, test_logits, test_labels)
    disp.ax_.set_title("CUB, ViT-B/16")            # style further
    disp.figure_.savefig("curve.pdf")

    rel = ReliabilityDisplay.from_estimator(calibrator, test_logits, test_labels)

Accuracies and confidences are drawn in % (the tables' unit). matplotlib is imported only
when a Display draws (Figure API, no pyplot: headless).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.metrics.curve import SeenAbsentCurve, curve_point, seen_absent_curve
from calib.metrics.probability import ReliabilityDiagram, reliability_diagram
from calib.metrics.streaming import SeenAbsentState

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["OperatingPoint", "SeenAbsentDisplay", "ReliabilityDisplay"]


@dataclass(frozen=True)
class OperatingPoint:
    """A γ on a seen–absent curve.

    Attributes:
        gamma: the bias (logit units).
        acc_seen: Acc S/Y at ``gamma``, in %.
        acc_absent: Acc U/Y at ``gamma``, in %.
        curve: the label of the curve it lies on.
        selector: the selector that chose it (its look in every figure), or None.
    """

    gamma: float
    acc_seen: float
    acc_absent: float
    curve: str
    selector: str | None = None


def _calibrators(calibrators: Any) -> dict[str, Any]:
    """``{selector name: fitted calibrator}`` from one calibrator or a mapping of them."""
    if isinstance(calibrators, Mapping):
        out = dict(calibrators)
    else:
        out = {str(getattr(calibrators, "method", "calibrator")): calibrators}
    if not out:
        raise ValueError("calibrators is empty: give at least one fitted LogitBiasCalibrator")
    for name, cal in out.items():
        if not hasattr(cal, "gamma_") or not hasattr(cal, "seen_classes_"):
            raise ValueError(
                f"calibrators[{name!r}] must be a fitted LogitBiasCalibrator (call fit first), "
                f"got {type(cal).__name__}"
            )
    first = next(iter(out.values()))
    for name, cal in out.items():
        if not np.array_equal(cal.seen_classes_, first.seen_classes_):
            raise ValueError(
                f"calibrators[{name!r}] was fitted with other seen classes than the first: "
                "one figure shows one split"
            )
    return out


@dataclass
class SeenAbsentDisplay:
    """Seen–absent curve(s) (Acc U/Y against Acc S/Y over every γ) with operating points marked.

    Attributes:
        curves: label → :class:`~calib.metrics.curve.SeenAbsentCurve` (fractions, as computed).
        points: label → :class:`OperatingPoint` (in %).
        corrections: correction key (``wa``, ``bic``, ``gla``) → its operating point (Acc S/Y,
            Acc U/Y) in %: the accuracies of the corrected logits. Such a correction is not an
            additive γ, so its point is one point, in general off every γ curve.
        figure_, ax_: the drawn figure and axes (None before :meth:`plot`).
    """

    curves: dict[str, SeenAbsentCurve]
    points: dict[str, OperatingPoint] = field(default_factory=dict)
    corrections: dict[str, tuple[float, float]] = field(default_factory=dict)
    figure_: Figure | None = None
    ax_: Axes | None = None

    @classmethod
    def from_predictions(
        cls,
        logits: Any,
        labels: Any,
        seen_classes: Any,
        absent_classes: Any = None,
        *,
        gammas: Mapping[str, float] | None = None,
        corrections: Mapping[str, tuple[float, float]] | None = None,
        name: str = "model",
        ax: Axes | None = None,
        title: str | None = "Seen–absent trade-off over γ",
        plot: bool = True,
    ) -> SeenAbsentDisplay:
        """The curve(s) of ``logits`` and the γ values ``gammas`` marked on the last one.

        Args:
            logits: (N, C) test logits, or label → (N, C) logits for several curves (e.g.
                ``{"pre-trained": z0, "fine-tuned": z1}``; those two labels get the models'
                looks). Each curve's γ = 0 point (the uncalibrated model) is marked. In place
                of logits, a :class:`calib.SeenAbsentState` fed them: its curve (the same).
            labels: (N,) integer test labels in [0, C) (unused for a state: it holds them).
            seen_classes, absent_classes: S and U (column indices; U default: the rest).
            gammas: marker label → γ (logit units), marked on the last curve. A label that
                is a selector's name (``"alg"``, ``"pcv"``) gets that selector's look.
            corrections: correction key → (Acc S/Y, Acc U/Y) as fractions, e.g. the ``acc_seen``
                and ``acc_absent`` of :func:`calib.run.correction_stage.correction_results`:
                drawn where they are, not on a curve.
            name: the curve's label when ``logits`` is one array.
            ax: the axes to draw into (default: a new figure).
            title: the axes title (None: none).
            plot: draw now (False: numbers only; call :meth:`plot` later).
        """
        by_label = dict(logits) if isinstance(logits, Mapping) else {name: logits}
        if not by_label:
            raise ValueError("logits is an empty mapping: give at least one (N, C) array")
        curves = {
            label: z.curve()
            if isinstance(z, SeenAbsentState)
            else seen_absent_curve(z, labels, seen_classes, absent_classes)
            for label, z in by_label.items()
        }
        last = list(curves)[-1]
        points = {}
        for label, gamma in (gammas or {}).items():
            points[label] = _point(curves[last], last, gamma, label)
        disp = cls(curves, points, _correction_points(corrections))
        return disp.plot(ax=ax, title=title) if plot else disp

    @classmethod
    def from_estimator(
        cls,
        calibrators: Any,
        logits: Any,
        labels: Any,
        *,
        name: str = "fine-tuned",
        ax: Axes | None = None,
        title: str | None = "Seen–absent trade-off over γ",
        plot: bool = True,
    ) -> SeenAbsentDisplay:
        """The curve of ``logits`` over S and U of the fitted calibrator(s), each ``γ_`` marked.

        Args:
            calibrators: a fitted :class:`~calib.LogitBiasCalibrator`, or selector name →
                fitted calibrator (all of one split); each one's ``gamma_`` is marked.
            logits: (N, C) test logits, or label → logits for several curves (as in
                :meth:`from_predictions`; the points lie on the last).
            labels: (N,) integer test labels.
        """
        cals = _calibrators(calibrators)
        first = next(iter(cals.values()))
        gammas = {sel: float(cal.gamma_) for sel, cal in cals.items()}
        return cls.from_predictions(logits, labels, first.seen_classes_, first.absent_classes_,
                                    gammas=gammas, name=name, ax=ax, title=title,
                                    plot=plot)  # fmt: skip

    def plot(self, ax: Axes | None = None, *, title: str | None = None) -> SeenAbsentDisplay:
        """Draw (in %) into ``ax`` or a new figure; sets ``figure_`` and ``ax_``. Returns self."""
        from calib.figures.seen_absent import plot_seen_absent_curves

        labels = {_point_label(k, p): k for k, p in self.points.items()}
        points = {lab: (self.points[k].acc_seen / 100, self.points[k].acc_absent / 100)
                  for lab, k in labels.items()}  # fmt: skip
        selectors = {lab: self.points[k].selector for lab, k in labels.items()
                     if self.points[k].selector}  # fmt: skip
        for key, (acc_seen, acc_absent) in self.corrections.items():
            label = _correction_label(key)
            points[label] = (acc_seen / 100, acc_absent / 100)
            selectors[label] = key
        self.ax_ = plot_seen_absent_curves(self.curves, points=points, ax=ax, title=title,
                                           selectors=selectors, percent=True)  # fmt: skip
        self.figure_ = self.ax_.figure
        return self


def _point(curve: SeenAbsentCurve, on: str, gamma: float, label: str) -> OperatingPoint:
    from calib.figures.style import SELECTOR_LOOKS
    from calib.validation import check_gamma

    g = float(check_gamma(gamma))
    s, u = curve_point(curve, g)
    return OperatingPoint(g, 100.0 * s, 100.0 * u, on, label if label in SELECTOR_LOOKS else None)


def _point_label(label: str, p: OperatingPoint) -> str:
    return f"γ {label} = {p.gamma:+.2f}"


def _correction_label(key: str) -> str:
    return f"{key} (its own logits, not a γ)"


def _correction_points(
    corrections: Mapping[str, tuple[float, float]] | None,
) -> dict[str, tuple[float, float]]:
    """``{key: (Acc S/Y, Acc U/Y)}`` in % from fractions in [0, 1]; ValueError otherwise."""
    out = {}
    for key, point in (corrections or {}).items():
        values = tuple(float(v) for v in point)
        if len(values) != 2 or not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(
                f"corrections[{key!r}] must be (acc_seen, acc_absent) fractions in [0, 1], "
                f"got {point!r}"
            )
        out[str(key)] = (100.0 * values[0], 100.0 * values[1])
    return out


#: The sample groups of a reliability figure, one panel each, in this order.
RELIABILITY_GROUPS = ("all", "seen", "absent")


@dataclass
class ReliabilityDisplay:
    """Reliability diagrams (accuracy against confidence per bin), one panel per sample group.

    Attributes:
        diagrams: group (``all``, ``seen``, ``absent``) → series label →
            :class:`~calib.metrics.probability.ReliabilityDiagram` (fractions, as computed).
        figure_: the drawn figure (None before :meth:`plot`).
        ax_: (G,) the reliability axes, one per group; ``count_ax_``: (G,) the count strips.
    """

    diagrams: dict[str, dict[str, ReliabilityDiagram]]
    figure_: Figure | None = None
    ax_: Any = None
    count_ax_: Any = None

    @classmethod
    def from_predictions(
        cls,
        logits: Any,
        labels: Any,
        seen_classes: Any,
        absent_classes: Any = None,
        *,
        series: Mapping[str, tuple[float, Any]] | None = None,
        n_bins: int = 15,
        groups: Sequence[str] = RELIABILITY_GROUPS,
        title: str | None = "Reliability of the top-label confidence",
        plot: bool = True,
    ) -> ReliabilityDisplay:
        """Diagrams of ``logits`` shifted by each series' (γ, T).

        Args:
            logits: (N, C) test logits. labels: (N,) integer labels.
            seen_classes, absent_classes: S and U (U default: the rest).
            series: label → (γ, T) with T a float or (T_S, T_U); default
                ``{"uncalibrated": (0.0, 1.0)}``.
            n_bins: equal-width confidence bins.
            groups: which sample groups, one panel each (``all``, ``seen``, ``absent``).
            title: the figure title (None: none).
            plot: draw now (False: numbers only).
        """
        series = dict(series) if series is not None else {"uncalibrated": (0.0, 1.0)}
        if not series:
            raise ValueError("series is empty: give at least one label → (gamma, temperature)")
        if isinstance(groups, str):
            groups = (groups,)
        if not groups:
            raise ValueError("groups is empty: name at least one of 'all', 'seen', 'absent'")
        diagrams = {
            group: {
                label: reliability_diagram(
                    logits, labels, seen_classes, absent_classes, gamma, temp, n_bins, group=group
                )
                for label, (gamma, temp) in series.items()
            }
            for group in groups
        }
        disp = cls(diagrams)
        return disp.plot(title=title) if plot else disp

    @classmethod
    def from_estimator(
        cls,
        calibrators: Any,
        logits: Any,
        labels: Any,
        *,
        temperature: bool = True,
        n_bins: int = 15,
        groups: Sequence[str] = RELIABILITY_GROUPS,
        title: str | None = "Reliability of the top-label confidence",
        plot: bool = True,
    ) -> ReliabilityDisplay:
        """The uncalibrated model, and each fitted calibrator's ``γ_`` (and ``γ_`` with its
        ``temperature_`` when ``temperature`` and T ≠ 1), on the calibrators' S and U."""
        cals = _calibrators(calibrators)
        first = next(iter(cals.values()))
        series: dict[str, tuple[float, Any]] = {"uncalibrated": (0.0, 1.0)}
        for sel, cal in cals.items():
            series[f"+ γ ({sel})"] = (float(cal.gamma_), 1.0)
            t = getattr(cal, "temperature_", 1.0)
            if temperature and np.any(np.asarray(t, dtype=np.float64) != 1.0):
                t_text = "/".join(f"{v:.2f}" for v in np.atleast_1d(np.asarray(t, dtype=float)))
                series[f"+ γ + T ({sel}, T = {t_text})"] = (float(cal.gamma_), t)
        return cls.from_predictions(logits, labels, first.seen_classes_, first.absent_classes_,
                                    series=series, n_bins=n_bins, groups=groups, title=title,
                                    plot=plot)  # fmt: skip

    def plot(self, *, title: str | None = None) -> ReliabilityDisplay:
        """Draw a new figure (reliability in %); sets ``figure_``, ``ax_``, ``count_ax_``."""
        from calib.figures.reliability import legends_below, plot_reliability_groups

        fig = plot_reliability_groups(self.diagrams, title=title)
        n = len(self.diagrams)
        legends_below(fig, n)
        self.figure_ = fig
        self.ax_ = np.array(fig.axes[:n], dtype=object)
        self.count_ax_ = np.array(fig.axes[n : 2 * n], dtype=object)
        return self
