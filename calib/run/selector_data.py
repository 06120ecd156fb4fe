"""What each declared selector data kind is, in the run: the one table the harness reads.

A selector declares the kind of data it takes (:data:`calib.selectors.spec.DATA_KINDS`, or None);
this module says, once, where a run finds that data:

=====================  ===========================  ==================================
data kind              read from                     handed to the selector
=====================  ===========================  ==================================
``finetune_train``     ``finetuned_train`` extract   logits and labels of the S rows only
``target_labelled``    ``finetuned_test`` extract    logits and labels, U included
``target_unlabelled``  ``finetuned_test`` extract    logits only
``pseudo_splits``      the PCV stages                the pseudo splits
None                   nothing                       nothing
=====================  ===========================  ==================================

:func:`selector_inputs` gives the keys of the stages a selector's stage is keyed by
(:mod:`calib.run.stage_plan`); :func:`selector_fit_data` the keyword arguments of
:meth:`calib.LogitBiasCalibrator.fit` (:mod:`calib.run.pipeline`) and, through them, the data
its temperature is fitted on (:mod:`calib.run.probability_stage`). A new kind is one row here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib.data import ClassSplit
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import Extracted
from calib.selectors import SELECTORS, PseudoSplit
from calib.selectors.spec import DATA_KINDS

__all__ = [
    "SelectorData",
    "SELECTOR_DATA",
    "selector_inputs",
    "selector_fit_data",
    "fit_selector",
    "make_calibrator",
]


@dataclass(frozen=True)
class SelectorData:
    """Where one data kind comes from.

    Attributes:
        extract: name of the extraction read (``"finetuned_train"``/``"finetuned_test"``), or None.
        labels: whether the selector receives the labels of those rows.
        seen_rows_only: keep only the rows whose label is in S (no U row reaches the selector).
        pcv: whether it takes the PCV pseudo splits.
    """

    extract: str | None = None
    labels: bool = False
    seen_rows_only: bool = False
    pcv: bool = False


SELECTOR_DATA: dict[str | None, SelectorData] = {
    "finetune_train": SelectorData("finetuned_train", labels=True, seen_rows_only=True),
    "target_labelled": SelectorData("finetuned_test", labels=True),
    "target_unlabelled": SelectorData("finetuned_test"),
    "pseudo_splits": SelectorData(pcv=True),
    None: SelectorData(),
}
assert set(SELECTOR_DATA) == {*DATA_KINDS, None}, "one row per declared data kind"


def selector_inputs(
    name: str, extract_keys: Mapping[str, str], pcv_keys: Sequence[str]
) -> list[str]:
    """Keys of the stages whose outputs selector ``name`` reads (by its declared data kind).

    Args:
        name: a key of :data:`calib.selectors.SELECTORS`.
        extract_keys: extraction name -> its stage key.
        pcv_keys: the keys of the PCV held-out extraction stages, in split order.
    """
    source = SELECTOR_DATA[SELECTORS.get(name).data]
    if source.pcv:
        return list(pcv_keys)
    return [extract_keys[source.extract]] if source.extract else []


def selector_fit_data(
    name: str,
    split: ClassSplit,
    extracts: Mapping[str, Extracted],
    pseudo_splits: Sequence[PseudoSplit] | None,
) -> dict[str, Any]:
    """The data selector ``name`` is fitted on, as ``LogitBiasCalibrator.fit`` kwargs.

    Args:
        name: a key of :data:`calib.selectors.SELECTORS`; its declared data kind decides.
        split: the run's class split (S decides the rows of ``finetune_train``).
        extracts: extraction name -> :class:`calib.extract.Extracted` (CPU tensors).
        pseudo_splits: PCV's pseudo splits, or None when the run has none.

    Returns:
        ``{"logits": (n, C), "labels": (n,)}``, ``{"logits": (n, C)}``,
        ``{"pseudo_splits": [...]}`` or ``{}``, numpy arrays.

    Raises:
        ValueError: a ``pseudo_splits`` selector without pseudo splits.
    """
    source = SELECTOR_DATA[SELECTORS.get(name).data]
    if source.pcv:
        if not pseudo_splits:
            raise ValueError(
                f"selector {name!r} takes pseudo splits, but pseudo_splits is {pseudo_splits!r}"
            )
        return {"pseudo_splits": list(pseudo_splits)}
    if source.extract is None:
        return {}
    ex = extracts[source.extract]
    logits, labels = ex.logits.numpy(), ex.labels.numpy()
    if source.seen_rows_only:
        rows = np.isin(labels, split.seen)
        logits, labels = logits[rows], labels[rows]
    return {"logits": logits, "labels": labels} if source.labels else {"logits": logits}


def fit_selector(
    name: str,
    params: Mapping[str, Any],
    split: ClassSplit,
    ex: Mapping[str, Extracted],
    pseudo_splits: list[PseudoSplit] | None,
) -> LogitBiasCalibrator:
    """Fit selector ``name`` on exactly the data its declaration names (:data:`SELECTOR_DATA`)."""
    data = selector_fit_data(name, split, ex, pseudo_splits)
    cal = make_calibrator(name, params)
    return cal.fit(
        seen_classes=split.seen,
        absent_classes=split.absent,
        num_classes=ex["finetuned_test"].logits.shape[1],
        **data,
    )


def make_calibrator(name: str, params: Mapping[str, Any]) -> LogitBiasCalibrator:
    """The unfitted calibrator of selector ``name`` with the run's parameters ``params`` (the
    calibrator's own ``gamma``/``criterion``/``prior``; the rest go into ``options``)."""
    known = {k: params[k] for k in ("gamma", "criterion", "prior") if k in params}
    options = {k: v for k, v in params.items() if k not in known}
    if options:
        return LogitBiasCalibrator(method=name, options=options, **known)
    return LogitBiasCalibrator(method=name, **known)
