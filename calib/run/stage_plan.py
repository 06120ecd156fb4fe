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

With ``eval.logits=state`` (:class:`~calib.run.settings.EvalConfig`) an extraction stage
streams its logits into a :class:`calib.SeenAbsentState` and caches that: its identity holds
the state's settings (:class:`StateSpec`), so its key differs from the ``full`` stage's. The
stages are then: the pre-trained and fine-tuned models' test states (the curve, AUSUC, the
top-1 report at any γ and top-5 at γ = 0, ``oracle``, ``prior``), the fine-tuned model's ALG
state of the S rows of ``target.train_eval`` (``alg=True, keep_gaps=False``; only when a
selector reads the fine-tuning training data, ``alg``) and each PCV split's held-out state
(its pseudo-seen and pseudo-absent ∪ U classes), and WiSE-FT's test state of each α (its
top-1 report at γ = 0 and the α = 1 curve). No ``pretrained_train`` stage: it served NCM and
the probabilities only. :func:`check_state_mode` refuses, before any work, a run that asks
``state`` for a stage that needs the logits themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from calib.data import ClassSplit, Domain, dataset_targets
from calib.metrics.streaming import SeenAbsentState
from calib.pseudo_cv import PseudoSubset, pseudo_subsets
from calib.run.identity import dataset_fingerprint, digest
from calib.run.selector_data import run_temperature, selector_inputs, selector_source
from calib.run.settings import CalibrationConfig, EvalConfig, MethodConfig, PCVConfig
from calib.run.stages import Stage
from calib.selectors import SELECTORS
from calib.selectors.data_kinds import NO_DATA
from calib.train import TrainConfig, resolve_device, resolve_precision

__all__ = [
    "STAGE_SECTIONS",
    "StagePlan",
    "StateSpec",
    "PCVSubset",
    "TEST_TOPK",
    "check_state_mode",
    "plan_stages",
    "pcv_subsets",
    "sections",
]

#: The k > 1 whose accuracies a test state keeps, at γ = 0 only (the pre-trained and fine-tuned
#: rows): what :func:`calib.accuracy_report` reports by default. A selector's γ is not known
#: when the test data is streamed, so its row has the top-1 accuracies only.
TEST_TOPK = (5,)

#: The selectors that take a :class:`calib.SeenAbsentState` (``pcv``: one per split); a
#: selector that takes no data (``fixed``) needs none.
STATE_SELECTORS = ("alg", "oracle", "prior", "pcv")

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
class StateSpec:
    """The settings of the :class:`calib.SeenAbsentState` an extraction stage streams into
    (``eval.logits=state``); part of the stage's identity.

    Attributes:
        num_classes: C. seen: the classes S of the state; absent: those that receive γ
            (for a PCV split: its pseudo-seen and its pseudo-absent ∪ U classes).
        topk: the k > 1 kept at each γ of ``gammas`` (γ in logit units).
        alg: keep the ALG terms; keep_gaps: keep the gaps (see the state's arguments).
    """

    num_classes: int
    seen: tuple[int, ...]
    absent: tuple[int, ...]
    topk: tuple[int, ...] = ()
    gammas: tuple[float, ...] = (0.0,)
    alg: bool = False
    keep_gaps: bool = True

    def build(self) -> SeenAbsentState:
        """An empty state with these settings."""
        return SeenAbsentState(
            self.num_classes, list(self.seen), list(self.absent), topk=self.topk,
            gammas=self.gammas, alg=self.alg, keep_gaps=self.keep_gaps,
        )  # fmt: skip

    def identity(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def check_state_mode(
    calibration: CalibrationConfig, method: MethodConfig, eval_cfg: EvalConfig
) -> None:
    """With ``eval.logits=state``, refuse a run that asks for a stage that needs the (N, C)
    logits themselves, in one line naming the key and why; nothing for ``full``.

    What is simply not computed in ``state`` mode (probabilities, T, NCM, top-k at a selector's
    γ) is said in ``results["meta"]`` instead (:func:`calib.run.run_outputs.run_results`).

    Raises:
        ValueError: ``calibration.corrections`` (they change the logits), or a selector that
            reads the logits and takes no state.
    """
    if eval_cfg.logits != "state":
        return
    fix = "; set eval.logits=full"
    if calibration.corrections:
        raise ValueError(
            f"calibration.corrections={list(calibration.corrections)} needs the full logits "
            f"(a correction changes the logits, not one threshold){fix}"
        )
    for name in calibration.selectors:
        if name not in STATE_SELECTORS and SELECTORS.get(name).kind is not NO_DATA:
            raise ValueError(
                f"calibration.selectors lists {name!r}, which reads the logits themselves "
                f"(the selectors {list(STATE_SELECTORS)} take a SeenAbsentState){fix}"
            )


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
    logits: str = "full"  # eval.logits: the extraction stages cache logits, or states
    states: dict[str, StateSpec] = field(default_factory=dict)  # stage name -> its state's
    alg_rows: np.ndarray | None = None  # state mode: the train_eval rows of the ALG state (S)

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


def _alpha_stages(
    method: MethodConfig, finetuned: Stage, test: Dataset, extract_stage, state=None
) -> dict:
    """WiSE-FT's α trade-off: one test extraction per α of ``alpha_grid`` (with ``state``,
    the :class:`StateSpec` of each α's test state)."""
    if "alpha_grid" not in method.params:
        return {}
    return {
        float(a): extract_stage(
            f"alpha_{float(a):.4g}_test",
            digest({"finetune": finetuned.key, "alpha": a}),
            test,
            state,
        )
        for a in method.params["alpha_grid"]
    }


def _pcv_stages(
    target, pcv, cfg, subsets, pretrained, split_id, config, extract_stage, device, state_of
):
    """(training, held-out scores) stages of each pseudo split; ``state_of(seen, absent)``:
    the :class:`StateSpec` of a held-out state (None: logits)."""
    settings = {k: v for k, v in asdict(pcv).items() if k != "finetune"}
    stages = []
    absent = np.asarray(split_id["absent"], dtype=np.int64)
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
        # the columns that receive γ in split j: its pseudo-absent classes and U
        spec = state_of(sub.pseudo_seen, np.union1d(sub.pseudo_absent, absent))
        score = extract_stage(f"pcv_split_{j}_heldout", train_stage, heldout, spec)
        stages.append((train_stage, score))
    return stages


def _selector_stages(
    calibration, extracts, pcv_stages, split_id, config, logits: str
) -> dict[str, Stage]:
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
                "temperature": run_temperature(name, logits),  # the saved calibrator's T
                "inputs": inputs,
                "split": split_id,
                "config": config,
            },
        )
    return stages


def _extract_stage(
    precision: str,
    config: dict,
    tag: str,
    model: Stage | str,
    dataset: Dataset,
    state: StateSpec | None = None,
) -> Stage:
    """The scores of ``model`` (a stage, or the key of a derived model) on ``dataset``,
    computed in ``precision`` (the resolved ``eval.amp``): the logits, or with ``state`` the
    :class:`calib.SeenAbsentState` of these settings (``eval.logits=state``)."""
    identity = {
        "stage": "extract",
        "model": model if isinstance(model, str) else model.key,
        "data": dataset_fingerprint(dataset),
        "precision": precision,
        "config": config,
    }
    if state is not None:  # a full stage's identity is as it was before states existed
        identity["state"] = state.identity()
    return Stage(f"extract/{tag}", identity)


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
    check_state_mode(calibration, method, eval_cfg)  # before any work
    streamed = eval_cfg.logits == "state"
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
    specs: dict[str, StateSpec] = {}  # state mode: each extraction stage's state

    def extract_stage(tag, model, dataset, state: StateSpec | None = None) -> Stage:
        stage = _extract_stage(eval_precision, own("extract"), tag, model, dataset, state)
        if state is not None:
            specs[stage.name] = state
        return stage

    # the pre-trained row is the model the method starts from (e.g. with a cosine head)
    head = {k: v for k, v in method.params.items() if k.startswith("head")}
    start = digest({"pretrained": pretrained.key, "head": head})
    alg_rows = None
    if not streamed:

        def state_of(seen, absent, **kw) -> None:  # full: every extraction keeps its logits
            return None

        extracts = {
            "pretrained_train": extract_stage("pretrained_train", start, target.train_eval),
            "pretrained_test": extract_stage("pretrained_test", start, target.test),
            "finetuned_train": extract_stage("finetuned_train", finetuned, target.train_eval),
            "finetuned_test": extract_stage("finetuned_test", finetuned, target.test),
        }
    else:
        c = split.num_classes

        def state_of(seen, absent, **kw) -> StateSpec:
            return StateSpec(c, tuple(map(int, seen)), tuple(map(int, absent)), **kw)

        test = state_of(split.seen, split.absent, topk=TEST_TOPK)
        extracts = {
            "pretrained_test": extract_stage("pretrained_test", start, target.test, test),
            "finetuned_test": extract_stage("finetuned_test", finetuned, target.test, test),
        }
        if any(selector_source(n)[1].extract == "finetuned_train" for n in calibration.selectors):
            # ALG reads the fine-tuning training data of S only: the S rows, nothing else
            alg_rows = np.flatnonzero(np.isin(labels, split.seen))
            extracts["finetuned_train"] = extract_stage(
                "finetuned_train", finetuned, Subset(target.train_eval, alg_rows.tolist()),
                state_of(split.seen, split.absent, alg=True, keep_gaps=False),
            )  # fmt: skip
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
            state_of,
        )
    selectors = _selector_stages(
        calibration, extracts, pcv_stages, split_id, own("selector"), eval_cfg.logits
    )
    # each α's top-1 report at γ = 0 and the α = 1 model's curve: what the trade-off reads
    alpha_state = state_of(split.seen, split.absent)
    alpha = _alpha_stages(method, finetuned, target.test, extract_stage, alpha_state)
    return StagePlan(
        pretrained, finetuned, extracts, history, pcv_stages, subsets, selectors, rows, alpha,
        eval_cfg.logits, specs, alg_rows,
    )  # fmt: skip
