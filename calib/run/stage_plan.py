"""Every stage of a run and its identity, computed before any work.

:func:`plan_stages` names the stages a run will compute and what each depends on (see
:mod:`calib.run.identity`); the run refuses a folder whose records disagree before it trains
anything. Each stage's identity holds

- its own settings (a :class:`~calib.train.TrainConfig`'s fingerprint, a selector's
  parameters), and for a training or an extraction the precision it computes in, resolved on
  the run's device (:func:`calib.train.resolve_precision`: ``amp: auto`` is fp32 on the CPU,
  bf16 on a GPU with native bf16, fp16 on an older one), so that stages computed in one
  precision are never served for another, and settings that resolve alike share them,
- the keys of the stages it reads (so a change upstream changes every key downstream),
- the data it sees: a fingerprint of the sample list and transform (:func:`dataset_fingerprint`),
  and the class split,
- the config leaves under the prefixes of :data:`STAGE_SECTIONS` (given by
  :func:`calib.run.plan.build_plan`; empty for a Python caller of ``run_pipeline``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from calib.data import ClassSplit, Domain, dataset_targets
from calib.pseudo_cv import PseudoSubset, pseudo_subsets
from calib.run.identity import dataset_fingerprint, digest
from calib.run.selector_data import run_temperature, selector_inputs
from calib.run.settings import CalibrationConfig, EvalConfig, MethodConfig, PCVConfig
from calib.run.stages import Stage
from calib.selectors import SELECTORS
from calib.train import TrainConfig, resolve_device, resolve_precision

__all__ = ["STAGE_SECTIONS", "StagePlan", "PCVSubset", "plan_stages", "pcv_subsets", "sections"]

#: The config prefixes each kind of stage depends on directly. Everything upstream reaches a
#: stage through the keys of the stages it reads.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "pretrained": ("seed", "imports", "model", "source", "source_train"),
    "finetune": ("dataset", "split", "finetune", "optimizer", "scheduler"),
    "pcv": ("dataset", "split", "finetune", "optimizer", "scheduler", "calibration.pcv"),
    "extract": ("dataset", "eval"),
    "selector": ("calibration.selectors", "calibration.options"),
}


def sections(leaves: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """The leaves of ``leaves`` (dotted keys) under any of ``prefixes``."""
    return {
        k: v for k, v in leaves.items() if any(k == p or k.startswith(p + ".") for p in prefixes)
    }


#: One pseudo split of S: pseudo-seen/absent classes and the train-set rows it uses.
PCVSubset = PseudoSubset


def pcv_subsets(
    labels: np.ndarray, split: ClassSplit, pcv: PCVConfig, with_absent: bool = False
) -> list[PCVSubset]:
    """The k pseudo splits of S (split j drawn from ``seed + j``); no U sample is used: the
    run's settings handed to :func:`calib.pseudo_cv.pseudo_subsets`, the one implementation
    that ``calib.make_pseudo_splits`` uses too.

    ``with_absent``: the method trains on its absent classes too (``oracle_all``), so a pseudo
    run trains on the pseudo-seen and pseudo-absent samples that are not held out.

    Raises:
        ValueError: fewer than 2 seen classes have training samples.
    """
    return pseudo_subsets(
        labels, split.seen, num_splits=pcv.num_splits, absent_fraction=pcv.absent_fraction,
        holdout_fraction=pcv.holdout_fraction, seed=pcv.seed, with_absent=with_absent,
    )  # fmt: skip


@dataclass(frozen=True)
class StagePlan:
    """The stages of one run, in the order they run."""

    pretrained: Stage
    finetune: Stage
    extracts: dict[str, Stage]
    history: Stage | None = None  # the per-epoch evaluation of the fine-tuning (eval.every_epochs)
    pcv: list[tuple[Stage, Stage]] = field(default_factory=list)  # (training, held-out scores)
    pcv_subsets: list[PCVSubset] = field(default_factory=list)
    selectors: dict[str, Stage] = field(default_factory=dict)
    finetune_rows: np.ndarray | None = None  # target train rows the method trains on
    alpha: dict[float, Stage] = field(default_factory=dict)  # WiSE-FT: test logits per α

    def all(self) -> list[Stage]:
        stages = [self.pretrained, self.finetune, *self.extracts.values()]
        if self.history is not None:
            stages.append(self.history)
        for train_stage, score_stage in self.pcv:
            stages += [train_stage, score_stage]
        return stages + list(self.selectors.values()) + list(self.alpha.values())

    def keys(self) -> dict[str, str]:
        """``{stage name: key}`` of every stage."""
        return {s.name: s.key for s in self.all()}


def _train_identity(cfg: TrainConfig, dataset: Dataset, device: torch.device) -> dict[str, Any]:
    """A training's settings (``amp`` resolved to the precision it computes in on ``device``,
    as :func:`calib.train.train` fingerprints its checkpoints) and its data."""
    return {
        "settings": cfg.settings(resolve_precision(cfg.amp, device), dataset_size=len(dataset)),
        "data": dataset_fingerprint(dataset),
    }


def _alpha_stages(method: MethodConfig, finetuned: Stage, test: Dataset, extract_stage) -> dict:
    """WiSE-FT's α trade-off: one test extraction per α of ``alpha_grid``."""
    if "alpha_grid" not in method.params:
        return {}
    return {
        float(a): extract_stage(
            f"alpha_{float(a):.4g}_test", digest({"finetune": finetuned.key, "alpha": a}), test
        )
        for a in method.params["alpha_grid"]
    }


def _pcv_stages(target, pcv, cfg, subsets, pretrained, split_id, config, extract_stage, device):
    """(training, held-out scores) stages of each pseudo split."""
    settings = {k: v for k, v in asdict(pcv).items() if k != "finetune"}
    stages = []
    for j, sub in enumerate(subsets):
        fit_set = Subset(target.train, sub.fit_rows.tolist())
        train_stage = Stage(
            f"pcv/split_{j}",
            {
                "stage": "pcv_split",
                "split_index": j,
                "from": pretrained.key,
                "pcv": settings,
                "pseudo_seen": sub.pseudo_seen.tolist(),
                "split": split_id,
                "config": config,
                **_train_identity(cfg, fit_set, device),
            },
        )
        heldout = Subset(target.train_eval, sub.heldout_rows.tolist())
        stages.append((train_stage, extract_stage(f"pcv_split_{j}_heldout", train_stage, heldout)))
    return stages


def _selector_stages(calibration, extracts, pcv_stages, split_id, config) -> dict[str, Stage]:
    """One stage per selector, keyed by the stages whose outputs its declared data come from."""
    stages = {}
    for name in calibration.selectors:
        kind = SELECTORS.get(name).data
        inputs = selector_inputs(
            name, {n: s.key for n, s in extracts.items()}, [s.key for _, s in pcv_stages]
        )
        stages[name] = Stage(
            f"selector/{name}",
            {
                "stage": "selector",
                "selector": name,
                "data": kind,
                "params": calibration.params(name),
                "temperature": run_temperature(name),  # the saved calibrator carries T
                "inputs": inputs,
                "split": split_id,
                "config": config,
            },
        )
    return stages


def _extract_stage(
    precision: str, config: dict, tag: str, model: Stage | str, dataset: Dataset
) -> Stage:
    """The scores of ``model`` (a stage, or the key of a derived model) on ``dataset``,
    computed in ``precision`` (the resolved ``eval.amp``)."""
    return Stage(
        f"extract/{tag}",
        {
            "stage": "extract",
            "model": model if isinstance(model, str) else model.key,
            "data": dataset_fingerprint(dataset),
            "precision": precision,
            "config": config,
        },
    )


def _pretrained_stage(model_identity, seed, config, source, source_train, device) -> Stage:
    """The model fine-tuning starts from: as built, or trained on the source domain."""
    base = {"model": dict(model_identity), "seed": seed, "config": config}
    if source is None:
        return Stage("pretrained", {"stage": "pretrained", **base})
    assert source_train is not None
    return Stage(
        "source",
        {"stage": "source", **base, **_train_identity(source_train, source.train, device)},
    )


def _history_stage(
    finetuned: Stage, target: Domain, eval_cfg: EvalConfig, config, precision: str
) -> Stage | None:
    """The per-epoch evaluation of the fine-tuning, when ``eval.every_epochs`` asks for one."""
    if not eval_cfg.every_epochs:
        return None
    return Stage(
        "history",
        {
            "stage": "history",
            "finetune": finetuned.key,
            "every_epochs": eval_cfg.every_epochs,
            "test": dataset_fingerprint(target.test),
            "train": dataset_fingerprint(target.train_eval),
            "precision": precision,
            "config": config,
        },
    )


def plan_stages(
    *,
    target: Domain,
    split: ClassSplit,
    model_identity: Mapping[str, Any],
    finetune: TrainConfig,
    method: MethodConfig | None = None,
    calibration: CalibrationConfig,
    eval_cfg: EvalConfig,
    source: Domain | None = None,
    source_train: TrainConfig | None = None,
    seed: int = 0,
    config_leaves: Mapping[str, Any] | None = None,
    device: str | torch.device | None = "auto",
) -> StagePlan:
    """All stages of a run with their identities (see the module docstring).

    Args:
        model_identity: what the pre-trained model is before any training: its class and a
            digest of its initial weights (``{"class": ..., "weights": ...}``).
        config_leaves: the run's identity leaves (:func:`calib.run.identity.identity_leaves`).
        device: the device the run computes on (``"auto"``, ``"cpu"``, ``"cuda"``, ...; as
            :func:`calib.train.resolve_device` resolves it): each training's and extraction's
            precision is resolved there.
    """
    device = resolve_device(device)
    leaves = dict(config_leaves or {})
    method = method or MethodConfig()
    method_id = {"name": method.name, "params": dict(method.params)}

    def own(kind: str) -> dict[str, Any]:
        return sections(leaves, STAGE_SECTIONS[kind])

    split_id = {
        "num_classes": split.num_classes,
        "seen": list(split.seen),
        "absent": list(split.absent),
    }
    pretrained = _pretrained_stage(
        model_identity, seed, own("pretrained"), source, source_train, device
    )

    labels = dataset_targets(target.train)
    uses_absent = method.spec.data == "seen+absent"
    rows = np.flatnonzero(np.isin(labels, split.seen + split.absent if uses_absent else split.seen))
    finetuned = Stage(
        "finetune",
        {
            "stage": "finetune",
            "from": pretrained.key,
            "method": method_id,
            "split": split_id,
            "config": own("finetune"),
            **_train_identity(finetune, Subset(target.train, rows.tolist()), device),
        },
    )
    eval_precision = resolve_precision(eval_cfg.amp, device)
    extract_stage = partial(_extract_stage, eval_precision, own("extract"))
    # the pre-trained row is the model the method starts from (e.g. with a cosine head)
    head = {k: v for k, v in method.params.items() if k.startswith("head")}
    start = digest({"pretrained": pretrained.key, "head": head})
    extracts = {
        "pretrained_train": extract_stage("pretrained_train", start, target.train_eval),
        "pretrained_test": extract_stage("pretrained_test", start, target.test),
        "finetuned_train": extract_stage("finetuned_train", finetuned, target.train_eval),
        "finetuned_test": extract_stage("finetuned_test", finetuned, target.test),
    }
    history = _history_stage(finetuned, target, eval_cfg, own("extract"), eval_precision)
    pcv_stages, subsets = [], []
    if calibration.needs_pcv:
        assert calibration.pcv is not None
        subsets = pcv_subsets(labels, split, calibration.pcv, with_absent=uses_absent)
        pcv_stages = _pcv_stages(
            target,
            calibration.pcv,
            calibration.pcv.finetune or finetune,
            subsets,
            pretrained,
            {**split_id, "method": method_id},
            own("pcv"),
            extract_stage,
            device,
        )
    selectors = _selector_stages(calibration, extracts, pcv_stages, split_id, own("selector"))
    alpha = _alpha_stages(method, finetuned, target.test, extract_stage)
    return StagePlan(
        pretrained, finetuned, extracts, history, pcv_stages, subsets, selectors, rows, alpha
    )
