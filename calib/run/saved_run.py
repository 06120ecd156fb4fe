"""A finished run folder read back: its extractions, class split, calibrators and PCV splits.

:func:`load_saved_run` gives the inputs of :func:`calib.run.probability_stage.probability_results`
from ``run_dir`` alone (no data set, no model): the logits of ``extract/*.pt``, the
calibrators of ``calibrators/*.json`` (the class split is theirs) and, when the run has PCV
held-out extractions, the pseudo splits. The folder does not store which classes each pseudo
split made pseudo-absent, so they are redrawn by the pipeline's own rule
(:func:`calib.run.stage_plan.pcv_subsets`, with the PCV settings of ``run.json``) and checked:
PCV refitted on them must give the γ (and T) the run saved, else the folder is refused.

The run fits each calibrator's temperature with it (:func:`calib.run.selector_data.run_temperature`),
so a saved calibrator reloads to the probabilities of ``results.json``; a folder whose
calibrators were saved with another temperature setting (an older calib fitted them with
T = 1 and refitted T in the report) is refused rather than reported with T = 1.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from calib.data import ClassSplit
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import Extracted
from calib.run.selector_data import run_temperature
from calib.run.settings import PCVConfig
from calib.run.stage_plan import pcv_subsets
from calib.selectors import SELECTORS, PseudoSplit

__all__ = ["SavedRun", "load_saved_run"]

_EXTRACTS = ("pretrained_train", "pretrained_test", "finetuned_train", "finetuned_test")


@dataclass(frozen=True)
class SavedRun:
    """What :func:`load_saved_run` read (arguments of ``probability_results``)."""

    ex: dict[str, Extracted]
    split: ClassSplit
    calibrators: dict[str, LogitBiasCalibrator]
    pseudo_splits: list[PseudoSplit] | None


def _load_extract(path: Path) -> Extracted:
    if not path.exists():
        raise FileNotFoundError(f"the run folder has no extraction {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    return Extracted(logits=data["logits"], labels=data["labels"], features=data.get("features"))


def _run_config(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("config", {})


def _calibrators(run_dir: Path, order: list[str]) -> dict[str, LogitBiasCalibrator]:
    files = {p.stem: p for p in sorted((run_dir / "calibrators").glob("*.json"))}
    if not files:
        raise FileNotFoundError(f"the run folder {run_dir} has no calibrators/*.json")
    names = [n for n in order if n in files] + [n for n in files if n not in order]
    calibrators = {n: LogitBiasCalibrator.load(files[n]) for n in names}
    for name, cal in calibrators.items():
        want = run_temperature(name)
        if cal.temperature != want:
            raise ValueError(
                f"{files[name]}: the calibrator was saved with temperature={cal.temperature!r}, "
                f"a run fits {name} with temperature={want!r}: the folder was written by an "
                "older calib (its results.json reports a T its calibrators do not carry); "
                "rerun it in a new run_dir"
            )
    return calibrators


def _pseudo_splits(
    run_dir: Path, split: ClassSplit, train_labels: np.ndarray, pcv: dict
) -> list[PseudoSplit] | None:
    files = sorted((run_dir / "extract").glob("pcv_split_*_heldout.pt"))
    if not files:
        return None
    cfg = PCVConfig(**{k: v for k, v in pcv.items() if k != "finetune"})
    subsets = pcv_subsets(train_labels, split, cfg)
    if len(subsets) != len(files):
        raise ValueError(
            f"{run_dir}: run.json asks for {len(subsets)} PCV splits, the folder has {len(files)}"
        )
    out = []
    for j, sub in enumerate(subsets):
        held = _load_extract(run_dir / "extract" / f"pcv_split_{j}_heldout.pt")
        out.append(
            PseudoSplit(
                logits=held.logits.numpy(),
                labels=held.labels.numpy(),
                seen_classes=sub.pseudo_seen,
                absent_classes=np.union1d(sub.pseudo_absent, np.asarray(split.absent)),
            )
        )
    return out


def _check_pseudo_splits(splits: list[PseudoSplit], calibrators: dict, run_dir: Path) -> None:
    """Every ``pseudo_splits`` calibrator refitted on the redrawn splits gives its saved γ and T."""
    for name, cal in calibrators.items():
        if "pseudo_splits" not in SELECTORS.get(name).kind.inputs:
            continue
        refit = LogitBiasCalibrator(**cal.get_params()).fit(
            pseudo_splits=splits,
            seen_classes=cal.seen_classes_,
            absent_classes=cal.absent_classes_,
            num_classes=cal.num_classes_,
        )
        if (refit.gamma_, refit.temperature_) != (cal.gamma_, cal.temperature_):
            raise ValueError(
                f"{run_dir}: the redrawn PCV splits give {name} γ = {refit.gamma_!r}, "
                f"T = {refit.temperature_!r}, the run saved γ = {cal.gamma_!r}, "
                f"T = {cal.temperature_!r}: run.json's calibration.pcv is not what made the folder"
            )


def load_saved_run(run_dir: str | os.PathLike) -> SavedRun:
    """Read the extractions, calibrators, class split and PCV splits of a finished run.

    Raises:
        FileNotFoundError: a missing extraction or no calibrator.
        ValueError: calibrators of different class splits, PCV splits that do not
            reproduce the saved PCV γ, or a folder made with ``eval.logits=state`` (its
            extractions are states, not logits).
    """
    run_dir = Path(run_dir)
    probe = run_dir / "extract" / "finetuned_test.pt"
    if probe.exists() and "state" in torch.load(probe, map_location="cpu", weights_only=True):
        raise ValueError(
            f"{run_dir} was run with eval.logits=state: its extractions are SeenAbsentStates "
            "(O(1) numbers per sample), not the logits the probabilities need; rerun it with "
            "eval.logits=full"
        )
    ex = {tag: _load_extract(run_dir / "extract" / f"{tag}.pt") for tag in _EXTRACTS}
    config = _run_config(run_dir)
    calibration = config.get("calibration", {})
    calibrators = _calibrators(run_dir, list(calibration.get("selectors", [])))
    first = next(iter(calibrators.values()))
    split = ClassSplit(
        seen=tuple(first.seen_classes_.tolist()),
        absent=tuple(first.absent_classes_.tolist()),
        num_classes=first.num_classes_,
    )
    for name, cal in calibrators.items():
        if (cal.seen_classes_.tolist(), cal.absent_classes_.tolist()) != (
            list(split.seen),
            list(split.absent),
        ):
            raise ValueError(f"{run_dir}: calibrators/{name}.json is for another class split")
    pseudo = _pseudo_splits(
        run_dir, split, ex["finetuned_train"].labels.numpy(), calibration.get("pcv") or {}
    )
    if pseudo is not None:
        _check_pseudo_splits(pseudo, calibrators, run_dir)
    return SavedRun(ex=ex, split=split, calibrators=calibrators, pseudo_splits=pseudo)
