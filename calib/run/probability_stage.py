"""The run's probability report: ECE / NLL / Brier before and after γ, and after γ + T.

:func:`probability_results` scores, on the target test logits, the pre-trained model, the
fine-tuned model and, for every fitted selector, the fine-tuned model + γ (T = 1) and + γ + T,
with :func:`calib.metrics.probability.probability_report` (overall and per group S, U).

**T is the calibrator's own** ``temperature_``: the run fits each selector's calibrator with
``temperature="fit"`` wherever its data kind allows a fit
(:func:`calib.run.selector_data.run_temperature`), so the estimator fits T by NLL
(:mod:`calib.estimator.temperature`) on exactly the data the selector was fed, and
``calibrators/NAME.json`` reloads to the probabilities reported here. What T was fitted on
follows the declared data kind (its record, :mod:`calib.selectors.data_kinds`), never the name:

=====================  =====================================================================
data kind              data T is fitted on
=====================  =====================================================================
``finetune_train``     the S rows of the fine-tuning training extraction (``alg``): no U row
                       ever reaches the fit; in-sample for the fine-tuned model, so T is low.
``pseudo_splits``      the held-out S data of the PCV pseudo splits, each split's
                       pseudo-absent classes standing in for U and shifted by γ (``pcv``).
``target_unlabelled``  none: the selector is label-free and NLL needs labels, so T = 1
                       (``prior``).
``target_labelled``    the labelled target test data, U included (``oracle``): in-sample, an
                       upper bound for analysis.
None                   none: the selector takes no data, so T = 1 (``fixed``).
=====================  =====================================================================

A calibrator whose T was given rather than fitted is reported with that T (``temperature_data``
says so). **Per-group temperatures** (``per_group=True``): the saved calibrator carries the one
T above; the (T_S, T_U) pair reported next to it is computed by the estimator's own code path
(:func:`calib.estimator.temperature.fitted_temperature` with ``"fit_per_group"``, what
``LogitBiasCalibrator(temperature="fit_per_group").fit`` computes) on the same data at the
calibrator's γ, for every calibrator whose T was fitted on data.

:func:`format_probability_table` renders the numbers, :func:`write_reliability_figure` draws
the reliability diagrams (all, S, U) of the fine-tuned model, + γ and + γ + T.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from calib.data import ClassSplit
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.estimator.temperature import fitted_temperature
from calib.extract import Extracted
from calib.metrics.probability import probability_report
from calib.run.results import format_cell, markdown_table
from calib.run.selector_data import selector_fit_data
from calib.selectors import SELECTORS, PseudoSplit
from calib.selectors.data_kinds import DataKind

__all__ = [
    "EXTRACTS",
    "PROBABILITY_COLUMNS",
    "selector_temperature",
    "probability_results",
    "probability_rows",
    "format_probability_table",
    "write_reliability_figure",
]

#: The extractions :func:`probability_results` reads.
EXTRACTS = ("pretrained_train", "pretrained_test", "finetuned_train", "finetuned_test")


def _check_inputs(ex: Mapping[str, Extracted], split: ClassSplit, calibrators: Mapping) -> None:
    missing = [k for k in EXTRACTS if k not in ex]
    if missing:
        raise ValueError(f"ex lacks the extraction(s) {missing}; it has {sorted(ex)}")
    for tag in EXTRACTS:
        e = ex[tag]
        if not isinstance(e, Extracted) or e.labels is None:
            raise TypeError(f"ex[{tag!r}] must be a calib.extract.Extracted with labels, got {e!r}")
        if e.logits.ndim != 2 or e.logits.shape[1] != split.num_classes:
            raise ValueError(
                f"ex[{tag!r}].logits has shape {tuple(e.logits.shape)}; the class split is for "
                f"{split.num_classes} classes"
            )
    for name, cal in calibrators.items():
        if not isinstance(cal, LogitBiasCalibrator) or not hasattr(cal, "gamma_"):
            raise TypeError(f"calibrators[{name!r}] must be a fitted LogitBiasCalibrator")
        if cal.absent_classes_.tolist() != list(split.absent):
            raise ValueError(
                f"calibrators[{name!r}] shifts the classes {cal.absent_classes_.tolist()}, the "
                f"class split's absent classes are {list(split.absent)}"
            )


def _numpy(e: Extracted) -> tuple[np.ndarray, np.ndarray]:
    return e.logits.numpy(), e.labels.numpy()


def _fitted_on(cal: LogitBiasCalibrator, kind: DataKind) -> bool:
    """Whether ``cal``'s T was fitted on the data of ``kind`` (not given)."""
    return cal.info_.get("temperature_data") == kind.name and kind.fits_temperature


def selector_temperature(
    name: str,
    cal: LogitBiasCalibrator,
    ex: Mapping[str, Extracted],
    split: ClassSplit,
    pseudo_splits: Sequence[PseudoSplit] | None,
    *,
    per_group: bool = False,
) -> tuple[Any, str, int]:
    """The T that selector ``name``'s fitted calibrator ``cal`` carries, and what it saw.

    Args:
        name: a key of :data:`calib.selectors.SELECTORS`; its declared data kind decides.
        cal: the selector's fitted calibrator; its ``temperature_`` is the T.
        ex, split, pseudo_splits: as in :func:`probability_results` (read only for
            ``per_group``).
        per_group: instead, the (T_S, T_U) pair fitted on the data ``cal``'s T was fitted on,
            at ``cal.gamma_``, by :func:`calib.estimator.temperature.fitted_temperature` (the
            estimator's ``"fit_per_group"``); ``(1.0, 1.0)`` when ``cal``'s T was not fitted.

    Returns:
        ``(T, data, n)``: T (a float, or a (T_S, T_U) tuple), what it was fitted on in words
        (the data kind's ``temperature_data``; for a given T, that it was given) and the
        number of labelled rows it saw (0 when not fitted).

    Raises:
        ValueError: a ``pseudo_splits`` selector without pseudo splits (``per_group`` only).
    """
    kind = SELECTORS.get(name).kind
    fitted = _fitted_on(cal, kind)
    if per_group:
        if not fitted:
            return (1.0, 1.0), kind.temperature_data, 0
        data = selector_fit_data(name, split, ex, pseudo_splits)
        pair, info = fitted_temperature(
            "fit_per_group", kind, data, np.asarray(split.absent), float(cal.gamma_)
        )
        return pair, kind.temperature_data, info["temperature_samples"]
    t = cal.temperature_
    if fitted:
        return t, kind.temperature_data, int(cal.info_["temperature_samples"])
    if not kind.fits_temperature and t == 1.0:
        return t, kind.temperature_data, 0  # T = 1 by the rule of the kind
    shown = f"(T_S, T_U) = {tuple(t)}" if isinstance(t, tuple) else f"T = {t}"
    return t, f"given: {shown} set on the calibrator, not fitted", 0


def _temperature_json(t: Any) -> float | list[float]:
    return [float(t[0]), float(t[1])] if isinstance(t, tuple) else float(t)


def probability_results(
    ex: Mapping[str, Extracted],
    split: ClassSplit,
    calibrators: Mapping[str, LogitBiasCalibrator],
    pseudo_splits: Sequence[PseudoSplit] | None,
    *,
    n_bins: int = 15,
    per_group: bool = False,
    average: str = "micro",
) -> dict[str, Any]:
    """Probability metrics of the run on the target test logits (a JSON-able dict).

    Args:
        ex: ``pretrained_train pretrained_test finetuned_train finetuned_test`` →
            :class:`calib.extract.Extracted` (logits (N, C), labels (N,)).
        split: the seen classes S and absent classes U.
        calibrators: selector name → fitted :class:`calib.LogitBiasCalibrator`.
        pseudo_splits: PCV's pseudo splits (read for a ``pseudo_splits`` selector's
            per-group pair), or None.
        n_bins: bins of both ECEs.
        per_group: also fit (T_S, T_U) for each selector whose T was fitted on data
            (``temperature_per_group``, ``gamma_and_group_T``; see the module docstring).
        average: ``"micro"`` (per sample) or ``"macro"`` (class-balanced: each sample weighs
            1 / n_class; :func:`calib.metrics.probability.probability_report`), recorded
            under ``"average"``.

    Returns:
        ``{"pretrained": m, "finetuned": m, "calibrated": {name: {"gamma", "temperature",
        "temperature_data", "temperature_samples", "gamma_only": m, "gamma_and_T": m}}}`` where
        each m is :func:`calib.metrics.probability.probability_report` (ECE, adaptive ECE, NLL, Brier,
        confidence; overall, ``_seen``, ``_absent``) on ``ex["finetuned_test"]`` (the
        pre-trained row: ``ex["pretrained_test"]``), and ``"average"``. ``gamma`` and ``temperature`` are the
        calibrator's ``gamma_`` and ``temperature_`` (a pair as ``[T_S, T_U]``), so that
        ``cal.predict_proba`` gives exactly the ``gamma_and_T`` numbers.
    """
    _check_inputs(ex, split, calibrators)
    seen, absent = split.seen, split.absent

    def report(tag: str, gamma: float = 0.0, t: Any = 1.0) -> dict[str, Any]:
        z, y = _numpy(ex[tag])
        return probability_report(z, y, seen, absent, gamma, t, n_bins, average=average)

    out: dict[str, Any] = {
        "pretrained": report("pretrained_test"),
        "finetuned": report("finetuned_test"),
        "calibrated": {},
        "average": average,
    }
    for name, cal in calibrators.items():
        gamma = float(cal.gamma_)
        t, data, n = selector_temperature(name, cal, ex, split, pseudo_splits)
        entry = {
            "gamma": gamma,
            "temperature": _temperature_json(t),
            "temperature_data": data,
            "temperature_samples": n,
            "gamma_only": report("finetuned_test", gamma),
            "gamma_and_T": report("finetuned_test", gamma, t),
        }
        if per_group and _fitted_on(cal, SELECTORS.get(name).kind):  # not for a given T
            pair, _, _ = selector_temperature(name, cal, ex, split, pseudo_splits, per_group=True)
            entry["temperature_per_group"] = [float(pair[0]), float(pair[1])]
            entry["gamma_and_group_T"] = report("finetuned_test", gamma, tuple(pair))
        out["calibrated"][name] = entry
    return out


# ----------------------------------------------------------------------------- the table

#: (metric key, header) of the probability table's columns before T.
PROBABILITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ece", "ECE"),
    ("ece_seen", "ECE S"),
    ("ece_absent", "ECE U"),
    ("nll", "NLL"),
    ("nll_seen", "NLL S"),
    ("nll_absent", "NLL U"),
    ("brier", "Brier"),
)


def _cell(key: str, value: Any) -> str:
    if key.startswith("ece"):
        return format_cell(key, value)  # a fraction, shown in %
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{float(value):.3f}"  # NLL in nats, Brier in [0, 2], T


def _temperature_text(metrics: Mapping[str, Any]) -> str:
    t_seen, t_absent = metrics["temperature_seen"], metrics["temperature_absent"]
    if t_seen == t_absent:
        return _cell("T", t_seen)
    return f"{t_seen:.3f}/{t_absent:.3f}"


def probability_rows(prob: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(row label, metrics) in display order: pre-trained, fine-tuned, + γ and + γ + T each."""
    rows: list[tuple[str, Mapping[str, Any]]] = [
        ("pre-trained", prob["pretrained"]),
        ("fine-tuned", prob["finetuned"]),
    ]
    for name, entry in prob.get("calibrated", {}).items():
        rows.append((f"+ γ ({name})", entry["gamma_only"]))
        rows.append((f"+ γ + T ({name})", entry["gamma_and_T"]))
        if "gamma_and_group_T" in entry:
            rows.append((f"+ γ + T_S/T_U ({name})", entry["gamma_and_group_T"]))
    return rows


def format_probability_table(
    prob: Mapping[str, Any], title: str | None = None, *, data_notes: bool = True
) -> str:
    """The probability metrics of :func:`probability_results` as a Markdown table.

    Rows: pre-trained, fine-tuned, then + γ (name) and + γ + T (name) per selector; columns
    ECE, ECE S, ECE U (in %), NLL, NLL S, NLL U (nats), Brier, T. With ``data_notes`` a line per
    selector below the table says what its T was fitted on.
    """
    header = ["model"] + [h for _, h in PROBABILITY_COLUMNS] + ["T"]
    body = [
        [label] + [_cell(k, m.get(k)) for k, _ in PROBABILITY_COLUMNS] + [_temperature_text(m)]
        for label, m in probability_rows(prob)
    ]
    parts = [markdown_table(header, body, n_left=1)]
    if title is not None:
        parts.insert(0, f"**{title}** (ECE in %, NLL in nats, Brier in [0, 2])")
    if prob.get("average") == "macro":
        parts.append("Class-balanced (macro): each sample weighs 1 / (test samples of its class).")
    if data_notes and prob.get("calibrated"):
        notes = [
            f"- T ({name}): {e['temperature_data']}"
            + (f", {e['temperature_samples']} samples" if e.get("temperature_samples") else "")
            for name, e in prob["calibrated"].items()
        ]
        parts.append("\n".join(notes))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- the figure


def _figure_selector(prob: Mapping[str, Any]) -> str | None:
    calibrated = prob.get("calibrated", {})
    for name in ("pcv", "alg"):
        if name in calibrated:
            return name
    return next(iter(calibrated), None)


def write_reliability_figure(
    ex: Mapping[str, Extracted],
    split: ClassSplit,
    calibrators: Mapping[str, LogitBiasCalibrator] | None,
    prob: Mapping[str, Any],
    path: str | os.PathLike,
    title: str | None = None,
    *,
    selector: str | None = None,
    n_bins: int | None = None,
) -> None:
    """``reliability.png``: diagrams (all, S, U) of the fine-tuned model, + γ of every selector,
    and + γ + T of one, drawn by :class:`calib.figures.display.ReliabilityDisplay`.

    Args:
        ex, split: as in :func:`probability_results`; ``ex["finetuned_test"]`` is drawn.
        calibrators: the fitted calibrators, checked against ``prob``'s γ (None: γ from
            ``prob`` alone).
        prob: the output of :func:`probability_results` (γ and T of each selector).
        path: the image file (format from the suffix), written atomically.
        title: the figure title.
        selector: whose γ is also shown with its T; default ``pcv`` when present, else
            ``alg``, else the first.
        n_bins: equal-width bins; default those of ``prob``.
    """
    from calib.figures.display import ReliabilityDisplay
    from calib.figures.files import save_figure
    from calib.figures.reliability import run_reliability_series

    name = selector if selector is not None else _figure_selector(prob)
    calibrated = prob.get("calibrated", {})
    if name is None or name not in calibrated:
        raise ValueError(
            f"selector={name!r}: prob has no such calibrated model; it has {sorted(calibrated)}"
        )
    for other, cal in (calibrators or {}).items():
        if other in calibrated and float(cal.gamma_) != calibrated[other]["gamma"]:
            raise ValueError(
                f"calibrators[{other!r}].gamma_ = {cal.gamma_} but prob holds "
                f"γ = {calibrated[other]['gamma']}: prob is from other calibrators"
            )
    n_bins = int(prob["finetuned"]["n_bins"]) if n_bins is None else n_bins
    z, y = _numpy(ex["finetuned_test"])
    display = ReliabilityDisplay.from_predictions(
        z, y, split.seen, split.absent, series=run_reliability_series(prob, name),
        n_bins=n_bins, title=title,
    )  # fmt: skip
    save_figure(display.figure_, path)
