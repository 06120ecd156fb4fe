"""The run's post-hoc corrections (``wa``, ``bic``, ``gla``): checked before any training, fitted
from the run's extractions, PCV pseudo splits and fine-tuned head, reported beside the γ rows.

Each correction declares the data it needs (:data:`CORRECTIONS`); the run hands it exactly
that and nothing else:

=======  ========================================  ===================================  =========
name     fitted from                               applied to (test)                    cost
=======  ========================================  ===================================  =========
``wa``   the fine-tuned model's linear head        fine-tuned test logits               none
``bic``  PCV's pseudo splits (held-out S rows)     fine-tuned test logits               none
``gla``  pre-trained logits of the unlabelled      fine-tuned + pre-trained test        2nd pass
         target test samples (``prior``'s data)    logits
=======  ========================================  ===================================  =========

The corrections are not cached stages: they cost milliseconds and are recomputed from the
cached extractions (whose stage keys already hold everything they depend on) on every run.
A results row (:func:`correction_results`) holds the accuracies of :func:`calib.accuracy_report`
at the corrected logits (γ = 0), the probabilities' ECE and NLL at the correction's temperature,
the AUSUC of the corrected logits (the seen–absent curve traced by one more additive γ on them)
and the correction's parameters, data and inference cost. Its operating point on the curve
figure is (``acc_seen``, ``acc_absent``) of that row: a point, not a γ on the fine-tuned curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from torch import nn

from calib.data import ClassSplit
from calib.estimator.bias_correction import BiasCorrection
from calib.estimator.correction import LogitCorrection
from calib.estimator.pretrained_ensemble import PretrainedEnsemble
from calib.estimator.weight_aligning import WeightAligning
from calib.extract import Extracted
from calib.selectors import PseudoSplit

__all__ = [
    "CorrectionSpec",
    "CORRECTIONS",
    "check_corrections",
    "linear_head",
    "fit_corrections",
    "correction_results",
]


@dataclass(frozen=True)
class CorrectionSpec:
    """One correction the run can fit.

    Attributes:
        cls: its estimator class.
        data: what it is fitted from: ``"head"``, ``"pseudo_splits"`` or
            ``"pretrained_unlabelled"`` (the pre-trained test logits, without labels).
        label: its row label in tables (``"WA"``).
        inference_cost: what it costs at inference, in words.
        temperature: the estimator's ``temperature`` in a run (``"fit"`` where its data has
            labels).
    """

    cls: type[LogitCorrection]
    data: str
    label: str
    inference_cost: str
    temperature: str | None = None


#: Correction key -> its declaration, in table order.
CORRECTIONS: Mapping[str, CorrectionSpec] = MappingProxyType(
    {
        "wa": CorrectionSpec(WeightAligning, "head", "WA", "none"),
        "bic": CorrectionSpec(BiasCorrection, "pseudo_splits", "BiC", "none", "fit"),
        "gla": CorrectionSpec(
            PretrainedEnsemble, "pretrained_unlabelled", "GLA", "second forward pass"
        ),
    }
)


def linear_head(model: nn.Module, correction: str = "wa") -> nn.Linear:
    """The model's linear head: ``model.head`` when it is an ``nn.Linear``, else timm's
    ``model.get_classifier()`` when that is one. ValueError naming the correction and the
    modules searched otherwise (e.g. a cosine head)."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    get = getattr(model, "get_classifier", None)
    found = get() if callable(get) else None
    if isinstance(found, nn.Linear):
        return found
    what = type(model).__name__
    raise ValueError(
        f"{correction} (head): no linear head in the model: searched {what}.head "
        f"({type(head).__name__ if head is not None else 'absent'}) and "
        f"{what}.get_classifier() ({type(found).__name__ if callable(get) else 'absent'})"
    )


def check_corrections(
    names: Sequence[str],
    *,
    has_pcv: bool,
    model: nn.Module | None = None,
    head: str = "linear",
) -> tuple[str, ...]:
    """The run's corrections, checked before any training.

    Args:
        names: correction keys (``calibration.corrections``).
        has_pcv: whether the run computes PCV pseudo splits (``calibration.pcv`` is set).
        model: the untrained model, to check that ``wa`` finds a linear head.
        head: the fine-tuning method's head (its ``head`` parameter; ``"linear"`` when it has
            none): ``wa`` needs a linear one.

    Raises:
        ValueError: not a list, an unknown or repeated key, ``bic`` without pseudo splits,
            ``wa`` with a model without a linear head or a method that replaces it.
    """
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"calibration.corrections must be a list of keys, got {names!r}")
    names = tuple(names)
    for name in names:
        if name not in CORRECTIONS:
            raise ValueError(
                f"calibration.corrections: unknown correction {name!r}; known: {list(CORRECTIONS)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"calibration.corrections lists a correction twice: {list(names)}")
    if "bic" in names and not has_pcv:
        raise ValueError(
            "correction 'bic' is fitted on the PCV pseudo splits (data kind pseudo_splits), but "
            "calibration.pcv is not set"
        )
    if "wa" in names and head != "linear":
        raise ValueError(
            f"wa (head): the fine-tuning method replaces the linear head by a {head!r} head; "
            "Weight Aligning rescales the rows of a linear head"
        )
    if "wa" in names and model is not None:
        linear_head(model, "wa")
    return names


def _numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def fit_corrections(
    names: Sequence[str],
    split: ClassSplit,
    ex: Mapping[str, Extracted],
    pseudo_splits: Sequence[PseudoSplit] | None,
    finetuned: nn.Module | None,
) -> dict[str, LogitCorrection]:
    """Fit each correction in ``names`` on exactly its declared data.

    Args:
        names: correction keys, checked by :func:`check_corrections`.
        split: the run's S and U.
        ex: the run's extractions (``pretrained_test`` is read by ``gla``, labels dropped).
        pseudo_splits: PCV's pseudo splits (``bic``), or None.
        finetuned: the fine-tuned model (``wa`` reads its head), or None when no ``wa``.
    """
    out: dict[str, LogitCorrection] = {}
    for name in names:
        spec = CORRECTIONS[name]
        est = spec.cls(temperature=spec.temperature)
        if spec.data == "head":
            if finetuned is None:
                raise ValueError("wa (head): no fine-tuned model was given to read the head from")
            head = linear_head(finetuned, name)
            bias = None if head.bias is None else _numpy(head.bias)
            est.fit(_numpy(head.weight), bias, split.seen, split.absent)
        elif spec.data == "pseudo_splits":
            if not pseudo_splits:
                raise ValueError(
                    f"{name} (pseudo_splits): the run has no pseudo splits (calibration.pcv)"
                )
            est.fit(
                pseudo_splits=list(pseudo_splits),
                seen_classes=split.seen,
                absent_classes=split.absent,
            )
        else:  # the pre-trained model's test logits, without their labels
            est.fit(_numpy(ex["pretrained_test"].logits), None, split.seen, split.absent)
        out[name] = est
    return out


def _extra(est: LogitCorrection, ex: Mapping[str, Extracted]) -> dict[str, Any]:
    if "pretrained_logits" in est.extra_inputs:
        return {"pretrained_logits": _numpy(ex["pretrained_test"].logits)}
    return {}


def correction_results(
    corrections: Mapping[str, LogitCorrection],
    ex: Mapping[str, Extracted],
    split: ClassSplit,
    n_bins: int = 15,
    average: str = "micro",
) -> dict[str, dict[str, Any]]:
    """``{name: row}`` of each fitted correction on the fine-tuned test logits, its accuracies,
    AUSUC and ECE averaged as the run's (``average``: ``eval.average``).

    A row: ``acc_all acc_seen acc_absent acc_seen_seen acc_absent_absent hmean`` (fractions,
    γ = 0 on the corrected logits), ``ausuc`` (of the corrected logits), ``ece``, ``nll`` (at
    ``temperature``), the correction's parameters (``ratio``; ``alpha``, ``beta``; ``debias``),
    ``data`` and ``inference_cost``.
    """
    from calib.metrics.accuracy import accuracy_report
    from calib.metrics.curve import ausuc
    from calib.metrics.probability import probability_report

    test = ex["finetuned_test"]
    z, y = _numpy(test.logits), _numpy(test.labels)
    rows: dict[str, dict[str, Any]] = {}
    for name, est in corrections.items():
        corrected = est.transform(z, **_extra(est, ex))
        acc = accuracy_report(
            corrected, y, split.seen, split.absent, 0.0, topk=(1,), average=average
        )
        prob = probability_report(
            corrected, y, split.seen, split.absent, 0.0, est.temperature_, n_bins,
            average=average,
        )  # fmt: skip
        row = {k: acc[k] for k in (
            "acc_all", "acc_seen", "acc_absent", "acc_seen_seen", "acc_absent_absent", "hmean"
        )}  # fmt: skip
        row["ausuc"] = ausuc(corrected, y, split.seen, split.absent, average=average)
        row.update({"ece": prob["ece"], "nll": prob["nll"], "temperature": est.temperature_})
        row.update(
            {k: est.info_[k] for k in ("ratio", "alpha", "beta", "debias") if k in est.info_}
        )
        row["data"] = CORRECTIONS[name].data
        row["inference_cost"] = CORRECTIONS[name].inference_cost
        rows[name] = row
    return rows
