"""Where a run finds each selector data kind, and how it fits a selector's calibrator.

A selector declares the kind of data it takes; its record
(:class:`calib.selectors.data_kinds.DataKind`) says what that data holds (labels or not, U rows
or not) and whether a temperature may be fitted on it. This module adds the one thing only a
run knows, where that data is, keyed by the record:

=====================  ===========================  ==================================
data kind              read from                     handed to the selector
=====================  ===========================  ==================================
``finetune_train``     ``finetuned_train`` extract   logits and labels of the S rows only
``target_labelled``    ``finetuned_test`` extract    logits and labels, U included
``target_unlabelled``  ``finetuned_test`` extract    logits only
``pseudo_splits``      the PCV stages                the pseudo splits
None                   nothing                       nothing
=====================  ===========================  ==================================

(labels: ``DataKind.labels``; the S rows only: a kind without ``absent_rows`` never receives
a U row.) With ``eval.logits=state`` the extractions are :class:`calib.SeenAbsentState` s and
the selector is fed the state (``finetuned_train``'s holds the S rows only, with ALG's terms;
the PCV splits one state each), with T = 1: a temperature needs the logits themselves. :func:`selector_inputs` gives the keys of the stages a selector's stage is keyed by
(:mod:`calib.run.stage_plan`); :func:`selector_fit_data` the keyword arguments of
:meth:`calib.LogitBiasCalibrator.fit`; :func:`fit_selector` fits the calibrator the run saves,
with ``temperature="fit"`` wherever the kind allows it (:func:`run_temperature`), so that
``calibrators/NAME.json`` carries the T that the run reports
(:mod:`calib.run.probability_stage`). A new kind is one record and one row here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from calib.data import ClassSplit
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import Extracted
from calib.metrics.streaming import SeenAbsentState
from calib.selectors import SELECTORS, PseudoSplit
from calib.selectors.data_kinds import (
    DATA_KIND_RECORDS,
    FINETUNE_TRAIN,
    NO_DATA,
    PSEUDO_SPLITS,
    TARGET_LABELLED,
    TARGET_UNLABELLED,
    DataKind,
)

__all__ = [
    "SelectorData",
    "SELECTOR_DATA",
    "selector_source",
    "selector_inputs",
    "selector_fit_data",
    "run_temperature",
    "fit_selector",
    "make_calibrator",
]


@dataclass(frozen=True)
class SelectorData:
    """Where a run finds one data kind.

    Attributes:
        extract: name of the extraction read (``"finetuned_train"``/``"finetuned_test"``), or
            None (the PCV stages, or no data).
        pcv: whether it is the PCV pseudo splits.
    """

    extract: str | None = None
    pcv: bool = False


#: Data kind record -> where the run finds it.
SELECTOR_DATA: Mapping[DataKind, SelectorData] = MappingProxyType(
    {
        FINETUNE_TRAIN: SelectorData("finetuned_train"),
        TARGET_LABELLED: SelectorData("finetuned_test"),
        TARGET_UNLABELLED: SelectorData("finetuned_test"),
        PSEUDO_SPLITS: SelectorData(pcv=True),
        NO_DATA: SelectorData(),
    }
)
assert set(SELECTOR_DATA) == set(DATA_KIND_RECORDS.values()), "one row per data kind"


def selector_source(name: str) -> tuple[DataKind, SelectorData]:
    """(the record of selector ``name``'s data kind, where the run finds it)."""
    kind = SELECTORS.get(name).kind
    return kind, SELECTOR_DATA[kind]


def selector_inputs(
    name: str, extract_keys: Mapping[str, str], pcv_keys: Sequence[str]
) -> list[str]:
    """Keys of the stages whose outputs selector ``name`` reads (by its declared data kind).

    Args:
        name: a key of :data:`calib.selectors.SELECTORS`.
        extract_keys: extraction name -> its stage key.
        pcv_keys: the keys of the PCV held-out extraction stages, in split order.
    """
    _, source = selector_source(name)
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
        split: the run's class split (S decides the rows of a kind without U rows,
            ``finetune_train``).
        extracts: extraction name -> :class:`calib.extract.Extracted` (CPU tensors), or
            the :class:`calib.SeenAbsentState` of a state run (``finetuned_train``'s of the S
            rows only).
        pseudo_splits: PCV's pseudo splits (or one state per split), or None when the run has
            none.

    Returns:
        ``{"logits": (n, C), "labels": (n,)}``, ``{"logits": (n, C)}``,
        ``{"pseudo_splits": [...]}`` or ``{}``, numpy arrays; ``{"logits": state}`` for a
        state.

    Raises:
        ValueError: a ``pseudo_splits`` selector without pseudo splits.
    """
    kind, source = selector_source(name)
    if source.pcv:
        if not pseudo_splits:
            raise ValueError(
                f"selector {name!r} takes pseudo splits, but pseudo_splits is {pseudo_splits!r}"
            )
        return {"pseudo_splits": list(pseudo_splits)}
    if source.extract is None:
        return {}
    ex = extracts[source.extract]
    if isinstance(ex, SeenAbsentState):  # its rows and labels are the kind's already
        return {"logits": ex}
    logits, labels = ex.logits.numpy(), ex.labels.numpy()
    if not kind.absent_rows:  # the extraction holds U rows: none may reach this kind
        rows = np.isin(labels, split.seen)
        logits, labels = logits[rows], labels[rows]
    return {"logits": logits, "labels": labels} if kind.labels else {"logits": logits}


def run_temperature(name: str, logits: str = "full") -> str | None:
    """The ``temperature`` the run fits selector ``name``'s calibrator with: ``"fit"`` where
    its data kind carries labels (``DataKind.fits_temperature``), else None (T = 1); None
    always with ``logits="state"`` (``eval.logits``: a softmax needs every column).

    Part of the selector stage's identity: a calibrator saved with another setting is stale.
    """
    if logits == "state":
        return None
    return "fit" if SELECTORS.get(name).kind.fits_temperature else None


def fit_selector(
    name: str,
    params: Mapping[str, Any],
    split: ClassSplit,
    ex: Mapping[str, Extracted],
    pseudo_splits: list[PseudoSplit] | None,
    class_names: Sequence[str] | None = None,
) -> LogitBiasCalibrator:
    """Fit selector ``name`` on exactly the data its declaration names (:data:`SELECTOR_DATA`),
    its temperature with it (:func:`run_temperature`): the calibrator the run saves and reports.
    ``class_names``: the target's names of the columns (index = label), carried by the
    calibrator (and its file).
    """
    data = selector_fit_data(name, split, ex, pseudo_splits)
    test = ex["finetuned_test"]
    streamed = isinstance(test, SeenAbsentState)
    cal = make_calibrator(name, params, "state" if streamed else "full")
    return cal.fit(
        seen_classes=split.seen,
        absent_classes=split.absent,
        num_classes=test.num_classes if streamed else test.logits.shape[1],
        class_names=class_names,
        **data,
    )


def make_calibrator(
    name: str, params: Mapping[str, Any], logits: str = "full"
) -> LogitBiasCalibrator:
    """The unfitted calibrator of selector ``name`` with the run's parameters ``params`` (the
    calibrator's own ``gamma``/``criterion``/``prior``; the rest go into ``options``) and the
    run's temperature setting (:func:`run_temperature`; ``logits``: the run's ``eval.logits``)."""
    known = {k: params[k] for k in ("gamma", "criterion", "prior") if k in params}
    options = {k: v for k, v in params.items() if k not in known}
    temperature = run_temperature(name, logits)
    if options:
        return LogitBiasCalibrator(method=name, options=options, temperature=temperature, **known)
    return LogitBiasCalibrator(method=name, temperature=temperature, **known)
