"""A sequence of fine-tunings: checkpoint k fine-tuned from checkpoint k−1, calibrated at each stage.

Real use repeats fine-tuning: stage k brings training data of more classes, the model of
stage k−1 is fine-tuned on it, and the calibration is redone. The seen classes S_k (the
classes of stage k, which include those of every stage before it) grow, the absent ones
U_k (every other column) shrink. :func:`finetune_sequence` runs the stages with your own
training code and fits the same selectors with the same data discipline at every stage::

    stages = [calib.Stage(data_012, classes=[0, 1, 2]), calib.Stage(data_01234, classes=range(5))]
    results = calib.finetune_sequence(pretrained, my_finetune, stages, test_data,
                                      selectors=("alg", "pcv"))
    results[1].model                   # checkpoint 2 (fine-tuned from checkpoint 1)
    results[1].calibrators["pcv"].gamma_
    results[1].reports["none"]["acc_absent"], results[1].reports["pcv"]["acc_absent"]

At stage k (``my_finetune(model, data, classes)``, the signature of
:func:`calib.make_pseudo_splits`' ``finetune``):

- the fine-tuning: ``my_finetune(copy of model k−1, stage k's training data,
  PseudoClasses(seen=S_k, absent=U_k, num_classes=C, index=k))``; model k−1 itself (and the
  pre-trained model) is never changed;
- every selector is refitted for S_k and U_k, on the data its kind declares
  (:mod:`calib.selectors.data_kinds`): ``finetune_train`` (``alg``) on model k's logits of
  stage k's training rows (S_k only); ``pseudo_splits`` (``pcv``) on
  :func:`calib.make_pseudo_splits` of model k−1, the model stage k starts from, over stage
  k's training data (its pseudo runs replay stage k's fine-tuning on part of S_k; no U_k
  sample is touched; a pseudo-absent class of S_{k−1} was trained on by checkpoint k−1,
  which no class of U_k was, so later stages' pseudo splits imitate U less closely);
  ``target_labelled`` (``oracle``, an upper bound) and
  ``target_unlabelled`` (``prior``) on model k's logits of ``test_data``; ``fixed`` on
  nothing;
- the report: :func:`calib.accuracy_report` of model k's test logits for S_k, U_k, at γ = 0
  (``"none"``) and at each selector's γ (``average="macro"``: class-balanced).

A stage's classes may be names (``finetune_sequence(..., class_names=names)``, one name per
column), or ``"infer"``: the distinct labels of its training data, logged on the logger
``calib.classes`` (:func:`calib.infer_seen_classes`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from torch import nn
from torch.utils.data import Dataset, Subset

from calib.class_names import INFER, check_class_names, class_ids, infer_seen_classes
from calib.data.domain import dataset_targets
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import extract, extraction_loader
from calib.pseudo_cv import PseudoClasses, make_pseudo_splits
from calib.selectors import PseudoSplit, selector_spec
from calib.selectors.data_kinds import (
    FINETUNE_TRAIN,
    NO_DATA,
    PSEUDO_SPLITS,
    TARGET_LABELLED,
    TARGET_UNLABELLED,
)
from calib.validation import _class_index, check_average, check_classes

__all__ = ["Stage", "StageResult", "finetune_sequence", "NO_CALIBRATION"]

#: The key of the report at γ = 0 (the fine-tuned model as it is) in :attr:`StageResult.reports`.
NO_CALIBRATION = "none"

_PCV_OPTIONS = ("num_splits", "absent_fraction", "holdout_fraction", "seed")


@dataclass(frozen=True)
class Stage:
    """One fine-tuning of the sequence.

    Attributes:
        train_data: its training data; every label in ``classes``, every class of
            ``classes`` present.
        classes: its classes (class indices, or names given ``finetune_sequence``'s
            ``class_names``); they include the classes of the stage before. S at this stage
            is these classes, U every other column. ``"infer"``: the distinct labels of
            ``train_data`` (logged), so every class it fine-tunes on must have a sample.
        labels: (N,) labels of ``train_data`` when it does not expose ``.targets``.
        eval_data: the same rows with the evaluation transform (default ``train_data``):
            what ALG's logits and PCV's held-out rows are computed on.
    """

    train_data: Dataset
    classes: Sequence[int | str] | str
    labels: Any = None
    eval_data: Dataset | None = None


@dataclass(frozen=True)
class StageResult:
    """What one stage produced.

    Attributes:
        index: the stage (0-based).
        seen_classes: S_k, sorted int64. absent_classes: U_k, sorted int64 (every other column).
        model: checkpoint k, the fine-tuned model (a copy; later stages do not change it).
        calibrators: selector name -> the :class:`~calib.LogitBiasCalibrator` fitted for S_k, U_k.
        reports: :data:`NO_CALIBRATION` (γ = 0) and every selector name -> its
            :func:`calib.accuracy_report` on the test data (accuracies are fractions in [0, 1]).
        test_logits: (N_test, C) float32 logits of checkpoint k on the test data.
        test_labels: (N_test,) int64 test labels.
        pseudo_splits: the PCV pseudo splits of this stage, or None when no selector reads them.
        class_names: the ``class_names`` of :func:`finetune_sequence` (a tuple of str), or None.
    """

    index: int
    seen_classes: np.ndarray
    absent_classes: np.ndarray
    model: nn.Module
    calibrators: dict[str, LogitBiasCalibrator]
    reports: dict[str, dict[str, float]]
    test_logits: np.ndarray
    test_labels: np.ndarray
    pseudo_splits: list[PseudoSplit] | None = None
    class_names: tuple[str, ...] | None = None


def finetune_sequence(
    model: nn.Module,
    finetune: Callable[[nn.Module, Dataset, PseudoClasses], nn.Module | None],
    stages: Sequence[Stage],
    test_data: Dataset,
    selectors: Sequence[str] | Mapping[str, str | LogitBiasCalibrator] = ("alg", "pcv"),
    *,
    num_classes: int | None = None,
    pcv_options: Mapping[str, Any] | None = None,
    average: str = "micro",
    batch_size: int = 256,
    device: Any = None,
    progress: bool = True,
    class_names: Sequence[str] | None = None,
) -> list[StageResult]:
    """Fine-tune ``model`` stage after stage and calibrate every checkpoint (see the module).

    Args:
        model: the pre-trained model, whose output is (N, C) logits over all C classes;
            never changed.
        finetune: your fine-tuning code, ``finetune(model, data, classes) -> model`` (or
            ``None``: the model it was given, trained in place). It is called once per stage
            with a copy of the previous checkpoint, and once per PCV pseudo split (see
            :func:`calib.make_pseudo_splits`); it only ever receives rows of the stage's
            training data.
        stages: the :class:`Stage` s in order (at least one); checked before anything runs.
        test_data: labelled test data of all classes (yields ``(x, y)``); scored by every
            checkpoint; read by a selector only where its kind is target data (``oracle``,
            ``prior``).
        selectors: selector keys (each its own name), or ``{name: key or calibrator}``: an
            unfitted :class:`~calib.LogitBiasCalibrator` is a template (cloned at every
            stage), e.g. ``{"pcv_T": LogitBiasCalibrator("pcv", temperature="fit")}``.
        num_classes: C (default: the width of the model's output on one test row).
        pcv_options: ``num_splits``, ``absent_fraction``, ``holdout_fraction``, ``seed`` of
            :func:`calib.make_pseudo_splits` (its defaults otherwise); the same at every stage.
        average: the reports' accuracies, ``"micro"`` (per sample) or ``"macro"`` (the mean
            of per-class accuracies within S, U and Y: class-balanced, for long-tailed data).
        batch_size, device, progress: of the extractions.
        class_names: one name per column (index = label), so that the stages' classes may
            be names; every calibrator keeps them (``class_names_``), as does every
            :class:`StageResult`.

    Returns:
        One :class:`StageResult` per stage, in order.

    Raises:
        ValueError: no stage; a stage whose classes are empty, out of range, listed twice,
            drop a class of the stage before, or cover every column (no U left), or (with a
            PCV selector) hold fewer than 2 classes; a label
            outside the stage's classes; a class of the stage without a training sample; a
            name that is not a class (with the closest names);
            an unknown selector or a reserved/duplicate name; an unknown PCV option; an
            ``average`` other than micro or macro.
        TypeError: ``finetune`` is not callable or returns something other than a module
            or None; a stage that is not a :class:`Stage`.
    """
    if not callable(finetune):
        raise TypeError(
            f"finetune must be a function (model, data, classes) -> model, got {finetune!r}"
        )
    templates = _selector_templates(selectors)
    average = check_average(average)
    pcv_options = _pcv_options(pcv_options)
    stages = _stage_list(stages)
    names = check_class_names(class_names)
    for k, stage in enumerate(stages):  # a misspelt name stops before any extraction
        if not _is_infer(stage.classes):
            class_ids(stage.classes, names, f"stages[{k}].classes")
    if num_classes is None:  # the width of the model's output, on one test row
        probe = extract(model, extraction_loader(Subset(test_data, [0]), 1), device, progress=False)
        num_classes = int(probe.logits.shape[1])
    names = check_class_names(names, num_classes)
    plan = _check_stages(stages, num_classes, names)
    kinds = {name: selector_spec(t.method).kind for name, t in templates.items()}
    pcv = [name for name, kind in kinds.items() if kind is PSEUDO_SPLITS]
    for k, (seen, _) in enumerate(plan[0]):
        if pcv and seen.size < 2:
            raise ValueError(
                f"stages[{k}].classes {seen.tolist()}: {pcv[0]!r} splits S into pseudo-seen and "
                "pseudo-absent classes, which needs at least 2 classes"
            )

    results: list[StageResult] = []
    previous = model
    for k, (stage, (seen, absent), labels) in enumerate(zip(stages, *plan, strict=True)):
        classes = PseudoClasses(tuple(seen.tolist()), tuple(absent.tolist()), num_classes, k)
        start = copy.deepcopy(previous)
        tuned = finetune(start, stage.train_data, classes)
        tuned = start if tuned is None else tuned
        if not isinstance(tuned, nn.Module):
            raise TypeError(
                f"finetune must return the fine-tuned nn.Module (or None), got {type(tuned).__name__}"
            )
        eval_data = stage.train_data if stage.eval_data is None else stage.eval_data
        tag = f"stage {k + 1}/{len(stages)}"
        test = extract(
            tuned, extraction_loader(test_data, batch_size), device,
            progress=progress, desc=f"{tag} test",
        )  # fmt: skip
        if test.labels is None:
            raise ValueError("test_data must yield (x, y) batches: the reports need its labels")
        data: dict[Any, dict[str, Any]] = {
            TARGET_LABELLED: {"logits": test.logits, "labels": test.labels},
            TARGET_UNLABELLED: {"logits": test.logits},
            NO_DATA: {"num_classes": num_classes},
        }
        if FINETUNE_TRAIN in kinds.values():
            train = extract(
                tuned, extraction_loader(eval_data, batch_size), device,
                progress=progress, desc=f"{tag} train",
            )  # fmt: skip
            data[FINETUNE_TRAIN] = {"logits": train.logits, "labels": labels}
        splits = None
        if PSEUDO_SPLITS in kinds.values():
            splits = make_pseudo_splits(
                previous, finetune, stage.train_data, seen, absent, num_classes,
                labels=labels, eval_data=eval_data, batch_size=batch_size, device=device,
                progress=progress, **pcv_options,
            )  # fmt: skip
            data[PSEUDO_SPLITS] = {"pseudo_splits": splits}
        calibrators = {
            name: clone(template).fit(
                seen_classes=seen, absent_classes=absent, class_names=names, **data[kinds[name]]
            )
            for name, template in templates.items()
        }
        none = LogitBiasCalibrator("fixed", gamma=0.0).fit(
            seen_classes=seen, absent_classes=absent, num_classes=num_classes, class_names=names
        )
        reports = {
            name: cal.report(test.logits, test.labels, average=average)
            for name, cal in {NO_CALIBRATION: none, **calibrators}.items()
        }
        results.append(
            StageResult(
                index=k,
                seen_classes=seen,
                absent_classes=absent,
                model=tuned,
                calibrators=calibrators,
                reports=reports,
                test_logits=test.logits.numpy(),
                test_labels=test.labels.numpy(),
                pseudo_splits=splits,
                class_names=names,
            )
        )
        previous = tuned
    return results


def _stage_list(stages: Any) -> list[Stage]:
    if isinstance(stages, (str, bytes, Stage)) or not isinstance(stages, Sequence):
        raise TypeError(f"stages must be a list of calib.Stage, got {type(stages).__name__}")
    if len(stages) == 0:
        raise ValueError("stages is empty: a sequence needs at least one fine-tuning")
    for k, stage in enumerate(stages):
        if not isinstance(stage, Stage):
            raise TypeError(f"stages[{k}] must be a calib.Stage, got {type(stage).__name__}")
    return list(stages)


def _is_infer(classes: Any) -> bool:
    return isinstance(classes, str) and classes == INFER


def _check_stages(
    stages: list[Stage], num_classes: int, names: tuple[str, ...] | None = None
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Every stage's (S_k, U_k) and training labels, or the first mistake, named."""
    classes, all_labels = [], []
    before = np.zeros(0, dtype=np.int64)
    for k, stage in enumerate(stages):
        name = f"stages[{k}]"
        labels = (
            dataset_targets(stage.train_data) if stage.labels is None else np.asarray(stage.labels)
        )
        if labels.shape != (len(stage.train_data),):
            raise ValueError(
                f"{name}.labels must have one entry per sample ({len(stage.train_data)}), got "
                f"shape {labels.shape}"
            )
        if _is_infer(stage.classes):
            seen = infer_seen_classes(labels, num_classes, names, source=f"{name} training labels")
        else:
            stage_classes = class_ids(stage.classes, names, f"{name}.classes")
            seen = _class_index(stage_classes, num_classes, f"{name}.classes")
        dropped = np.setdiff1d(before, seen)
        if dropped.size:
            raise ValueError(
                f"{name}.classes {seen.tolist()} drop class(es) {dropped.tolist()[:10]} of "
                f"stages[{k - 1}]: a stage's classes include the classes of the stage before "
                "(S grows)"
            )
        if seen.size == num_classes:
            raise ValueError(
                f"{name}.classes cover all {num_classes} columns: no absent class is left to "
                "calibrate (U would be empty)"
            )
        seen, absent = check_classes(seen, None, num_classes)
        stray = ~np.isin(labels, seen)
        if stray.any():
            row = int(np.flatnonzero(stray)[0])
            raise ValueError(
                f"{name}.train_data: label {labels[row].item()} of row {row} is not in the "
                f"stage's classes {seen.tolist()}"
            )
        missing = np.setdiff1d(seen, labels)
        if missing.size:
            raise ValueError(
                f"{name}.classes {missing.tolist()[:10]} have no training sample in "
                f"{name}.train_data (a stage's classes are the classes it fine-tunes on)"
            )
        if stage.eval_data is not None and len(stage.eval_data) != len(stage.train_data):
            raise ValueError(
                f"{name}.eval_data must hold the same rows as its train_data "
                f"({len(stage.train_data)}), got {len(stage.eval_data)}"
            )
        classes.append((seen, absent))
        all_labels.append(labels.astype(np.int64, copy=False))
        before = seen
    return classes, all_labels


def _selector_templates(selectors: Any) -> dict[str, LogitBiasCalibrator]:
    """``{name: unfitted calibrator}`` of the ``selectors`` argument."""
    if isinstance(selectors, (str, bytes)):
        raise TypeError(
            f"selectors must be a list of selector keys or a dict, got the string {selectors!r} "
            f"(write [{selectors!r}])"
        )
    items = (
        list(selectors.items())
        if isinstance(selectors, Mapping)
        else [(key, key) for key in selectors]
    )
    if not items:
        raise ValueError("selectors is empty: name at least one selector (e.g. ['alg', 'pcv'])")
    templates: dict[str, LogitBiasCalibrator] = {}
    for name, value in items:
        if not isinstance(name, str) or name == NO_CALIBRATION:
            raise ValueError(
                f"selectors: {name!r} cannot name a selector (a string other than "
                f"{NO_CALIBRATION!r}, the report at γ = 0)"
            )
        if name in templates:
            raise ValueError(f"selectors: {name!r} is listed twice")
        if isinstance(value, str):
            value = LogitBiasCalibrator(value)
        if not isinstance(value, LogitBiasCalibrator):
            raise TypeError(
                f"selectors[{name!r}] must be a selector key or a LogitBiasCalibrator, got "
                f"{type(value).__name__}"
            )
        if hasattr(value, "gamma_"):
            raise ValueError(
                f"selectors[{name!r}] is a fitted calibrator: pass an unfitted one (a template)"
            )
        spec = selector_spec(value.method, f"selectors[{name!r}]")
        value._selector_params(spec)  # bad parameters stop before any training
        value._temperature_param(spec)
        templates[name] = value
    return templates


def _pcv_options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"pcv_options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(_PCV_OPTIONS))
    if unknown:
        raise ValueError(f"pcv_options: unknown key(s) {unknown}; known: {list(_PCV_OPTIONS)}")
    return dict(options)
