"""The numbers of a run's report: each model's metrics on the extracted logits, and its curve plot.

:func:`model_metrics` is what every row of the table holds: :func:`calib.accuracy_report` at
γ, the AUSUC of the seen–absent curve, and the cosine-NCM accuracies on the features. From a
streamed :class:`calib.SeenAbsentState` (``eval.logits=state``) the same numbers, bit for
bit, but top-k (k > 1) only at a γ the state keeps (γ = 0) and no NCM (no features).
:func:`premise_results` is ``results["premise"]``: did fine-tuning keep what γ needs?
``average`` (the run's ``eval.average``): ``"micro"``, per-sample accuracies, or ``"macro"``,
class-balanced ones (the mean over the classes of each group of the per-class accuracy,
:mod:`calib.metrics.weights`) — the accuracies, AUSUC and NCM alike. The premise check stays
per-sample (its noise bound is one of paired per-sample hits).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calib.data import ClassSplit
from calib.extract import Extracted
from calib.metrics.accuracy import accuracy_report
from calib.metrics.curve import seen_absent_curve
from calib.metrics.ncm import ncm_report
from calib.metrics.premise import premise_check
from calib.metrics.streaming import SeenAbsentState

__all__ = ["model_metrics", "ncm_metrics", "premise_results"]

log = logging.getLogger(__name__)


def model_metrics(
    test: Extracted | SeenAbsentState,
    train: Extracted | None,
    split: ClassSplit,
    gamma: float = 0.0,
    average: str = "micro",
) -> dict:
    """A row of the run's table: :func:`calib.accuracy_report` of ``test`` at ``gamma``, the
    AUSUC of its curve and, with features, the NCM accuracies; all averaged by ``average``.

    ``test`` may be the :class:`calib.SeenAbsentState` of the test logits (built with the
    split's S and U): the same report and AUSUC, its top-k only at a γ it keeps
    (``state.gammas``), top-1 at any other; ``train`` is then unused (no NCM)."""
    if isinstance(test, SeenAbsentState):
        topk = test.topk if gamma in test.gammas else ()
        metrics = test.report(gamma, topk=topk, average=average)
        metrics["ausuc"] = test.ausuc(average)
        return metrics
    logits, labels = test.logits.numpy(), test.labels.numpy()
    metrics = accuracy_report(
        logits, labels, split.seen, split.absent, gamma=gamma, average=average
    )
    curve = seen_absent_curve(logits, labels, split.seen, split.absent, average=average)
    metrics["ausuc"] = curve.ausuc
    if train is not None and train.features is not None and test.features is not None:
        metrics.update(ncm_metrics(train, test, split, logits.shape[1], average=average))
    return metrics


def ncm_metrics(
    train: Extracted,
    test: Extracted,
    split: ClassSplit,
    num_classes: int,
    average: str = "micro",
) -> dict:
    """NCM accuracies (``ncm_*``) over the classes of S ∪ U that have training features.

    On the benchmarks every class of S ∪ U has training samples; where some do not (a tiny
    or partial dataset), NCM classifies among the others, with a RuntimeWarning, and only
    the test samples of those classes count. No seen or no absent class with samples: no
    NCM metrics.
    """
    train_y, test_y = train.labels.numpy(), test.labels.numpy()
    seen = np.intersect1d(np.asarray(split.seen), train_y)
    absent = np.intersect1d(np.asarray(split.absent), train_y)
    n_missing = len(split.seen) + len(split.absent) - seen.size - absent.size
    if n_missing:
        warnings.warn(
            f"NCM: {n_missing} class(es) of S ∪ U have no training sample to average; NCM "
            f"classifies among the other {seen.size + absent.size}",
            RuntimeWarning,
            stacklevel=2,
        )
    if seen.size == 0 or absent.size == 0:
        return {}
    keep = np.isin(test_y, np.concatenate([seen, absent]))
    ncm = ncm_report(
        train.features.numpy(),
        train_y,
        test.features.numpy()[keep],
        test_y[keep],
        seen,
        absent,
        num_classes=num_classes,
        average=average,
    )
    return {f"ncm_{k}": v for k, v in ncm.items() if k.startswith("acc_") or k == "hmean"}


def premise_results(
    results: Mapping[str, Any],
    pre_test: Extracted | SeenAbsentState,
    ft_test: Extracted | SeenAbsentState,
    split: ClassSplit,
) -> dict[str, Any]:
    """``results["premise"]``: :func:`calib.metrics.premise_check` of the two test
    extractions (or their two :class:`calib.SeenAbsentState` s), with the γ of each selector in
    ``results["calibrated"]`` and the NCM U/U of ``results["pretrained"]`` / ``["finetuned"]``
    when both rows have it. Logs a warning when the premise fails (U/U fell beyond the paired
    noise bound: no γ can restore it). Its numbers are per-sample; under a class-balanced
    table (``meta.average`` = ``macro``) the message says so.

    Raises:
        ValueError: the two extractions are not of the same test samples (labels differ).
    """
    ncm_key = "ncm_acc_absent_absent"
    pre_row, ft_row = results.get("pretrained", {}), results.get("finetuned", {})
    ncm = tuple(row.get(ncm_key) for row in (pre_row, ft_row))
    if any(v is None or math.isnan(v) for v in ncm):  # no features, or no NCM sample of U
        ncm = None
    gammas = {name: m["gamma"] for name, m in results.get("calibrated", {}).items()}
    if isinstance(pre_test, SeenAbsentState):  # the states hold the labels and the hits
        check = premise_check(
            pre_test, ft_test, None, split.seen, split.absent,
            selector_gamma=gammas, ncm_absent_absent=ncm,
        )  # fmt: skip
        return _premise_dict(check, results)
    if pre_test.labels is None or ft_test.labels is None:
        raise ValueError("premise: the test extractions carry no labels (U/U needs them)")
    if pre_test.labels.shape != ft_test.labels.shape or not bool(
        (pre_test.labels == ft_test.labels).all()
    ):
        raise ValueError(
            "premise: the pre-trained and fine-tuned test extractions must score the same "
            f"test samples, but their labels differ ({tuple(pre_test.labels.shape)} and "
            f"{tuple(ft_test.labels.shape)})"
        )
    check = premise_check(
        pre_test.logits,
        ft_test.logits,
        ft_test.labels,
        split.seen,
        split.absent,
        selector_gamma=gammas,
        ncm_absent_absent=ncm,
    )
    return _premise_dict(check, results)


def _premise_dict(check, results: Mapping[str, Any]) -> dict[str, Any]:
    """The check as ``results["premise"]`` (warned when it fails; macro tables say so)."""
    if not check.holds:
        log.warning("%s", check.message)
    out = check.to_dict()
    meta = results.get("meta", {})
    if isinstance(meta, Mapping) and meta.get("average") == "macro":
        # the table above it is class-balanced; the premise's numbers are not
        out["message"] += " (premise: per-sample accuracies)"
    return out


def _alpha_curve(by_alpha, split: ClassSplit):
    from calib.methods import alpha_tradeoff

    first = next(iter(by_alpha.values()))
    if isinstance(first, SeenAbsentState):  # eval.logits=state: each α's test state
        return alpha_tradeoff(dict(by_alpha), None, split.seen, split.absent)
    logits = {a: e.logits for a, e in by_alpha.items()}
    return alpha_tradeoff(logits, first.labels, split.seen, split.absent)


def _gamma_curve(scores: Extracted | SeenAbsentState, split: ClassSplit):
    """The seen–absent curve of an extraction's logits, or of its state (the same)."""
    if isinstance(scores, SeenAbsentState):
        return scores.curve()
    return seen_absent_curve(scores.logits, scores.labels, split.seen, split.absent)


def alpha_results(by_alpha, ex, split: ClassSplit) -> dict:
    """WiSE-FT's α trade-off (``results["alpha_tradeoff"]``): Acc S/Y, U/Y, Y/Y per α at
    γ = 0, the area under the α path, and the area under the fully fine-tuned (α = 1) model's γ
    curve over the same Acc S/Y range — "fix the weights" against "fix the logits". ``by_alpha``:
    α → each α's test :class:`~calib.extract.Extracted`, or its state (``eval.logits=state``)."""
    from calib.methods.wise_ft import gamma_area_on_alpha_range

    curve = _alpha_curve(by_alpha, split)
    out = {
        "alpha": [float(a) for a in curve.alpha],
        "acc_seen": [float(v) for v in curve.acc_seen],
        "acc_absent": [float(v) for v in curve.acc_absent],
        "acc_all": [float(v) for v in curve.acc_all],
        "area": float(curve.area),
    }
    end = by_alpha.get(1.0)
    if end is not None:
        gamma_curve = _gamma_curve(end, split)
        out["gamma_area_on_alpha_range"] = gamma_area_on_alpha_range(curve, gamma_curve)
    return out


def plot_alpha_tradeoff_figure(ex, split: ClassSplit, path: Path, title) -> None:
    """The α path beside the γ curves of the pre-trained and the fully fine-tuned (α = 1)
    model, which the legend calls "fine-tuned"."""
    from calib.figures.alpha_tradeoff import plot_alpha_tradeoff
    from calib.figures.files import save_figure, wrap_title

    by_alpha = ex["alpha"]
    curves = {"pre-trained": _gamma_curve(ex["pretrained_test"], split)}
    if 1.0 in by_alpha:
        from calib.methods.wise_ft import gamma_area_on_alpha_range

        end = by_alpha[1.0]
        gamma_curve = _gamma_curve(end, split)
        area = gamma_area_on_alpha_range(_alpha_curve(by_alpha, split), gamma_curve)
        curves["fine-tuned"] = gamma_curve
    else:
        area = None
    ax = plot_alpha_tradeoff(
        _alpha_curve(by_alpha, split), curves, title=wrap_title(title, 60), gamma_area=area
    )
    save_figure(ax.figure, path)
