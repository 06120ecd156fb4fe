"""The main job, from plain Python: (source model →) fine-tune on S → extract → fit γ → report.

A run is one :class:`RunPlan`: the built objects (domains, a class split, a model factory,
training configs, the method, the selectors, extraction settings, the run folder) and the
stages they make, planned once (:attr:`RunPlan.stage_plan`). :func:`calib.run.plan.build_plan`
builds one from a config mapping; a Python user builds one directly::

    plan = RunPlan(target=target, split=split, make_model=make, finetune=cfg, run_dir="out")
    results = run_pipeline(plan)        # the same as plan.run()

and :func:`run_pipeline` leaves in ``run_dir``::

    run.json           the config leaves the run was made with (a plan with a config)
    stages.json        every stage's key and identity (see calib.run.stages)
    source/ | <cache>  source-model training checkpoints (shared cache: calib.run.source_cache)
    finetune/          fine-tuning checkpoints
    pcv/split_<j>/     pseudo-split fine-tuning checkpoints (when a selector takes pseudo splits)
    extract/*.pt       extracted logits, features and labels, keyed by their stage (with
                       eval.logits=state: each a SeenAbsentState's per-sample columns)
    calibrators/*.json one fitted LogitBiasCalibrator per selector
    results.json       {"pretrained", "finetuned", "calibrated", "meta"} (see calib.run.results)
    results.csv        the same, flattened to one row
    results.md         the printed table
    curve.png          seen–absent curves, pre-trained vs fine-tuned, chosen γ marked

Before any work every stage's key is compared with the folder's records: a folder made with
other settings is refused, naming what changed (:class:`calib.run.stages.StaleRunError`).
A killed run started again with the same plan resumes at its last checkpoint and skips
finished stages.

Under ``torchrun`` every rank runs :func:`run_pipeline` with the same plan: all ranks train
(DDP, global batch sizes as configured) and extract their shard of each dataset (gathered
into dataset order on every rank), every rank computes the same results, and only rank 0
writes files and prints. ``run_dir`` must be the same path, on a shared file system.

**Full logits or streamed states** (``eval.logits``, :class:`calib.run.settings.EvalConfig`).
``full`` (default) keeps each extraction's (N, C) logits. ``state`` never holds an (N, C)
matrix of the evaluation data: each extraction stage streams its batches into a
:class:`calib.SeenAbsentState` on the model's device (:func:`calib.extract.extract_state`;
under ``torchrun`` each rank its shard, then an O(N) sync instead of gathering logits) and
caches the state. From the states come the report rows (accuracies at γ, top-5 at γ = 0,
AUSUC), the premise check, ``curve.png``, the selectors ``alg`` (the S rows of the
fine-tuning data only), ``oracle``, ``prior``, ``pcv`` (one state per pseudo split) and
``fixed``, and WiSE-FT's α trade-off (one test state per α); they equal the ``full`` run's.
Which stages need the full logits, and why:

- the probability section, ``reliability.png`` and each selector's T (``temperature='fit'``):
  a softmax over every column. Not computed (T = 1); ``results["meta"]["not_computed"]``
  says so, and the printed table in one line;
- NCM: features, not logits. Not computed, said alike;
- top-k (k > 1) at a selector's γ: γ is not known when the test data is streamed; top-5 is
  kept at γ = 0 (the pre-trained and fine-tuned rows). Said alike;
- ``calibration.corrections`` (``wa``, ``bic``, ``gla`` change the logits) and a selector
  that takes no state: refused before any work
  (:func:`calib.run.stage_plan.check_state_mode`), with the key and why;
- the per-epoch evaluation (``eval.every_epochs`` > 0) is kept as it is: it holds one
  evaluated epoch's logits at a time, transiently, and writes per-epoch numbers only (set it
  to 0 where one (N, C) matrix does not fit).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from calib import distributed
from calib.data import ClassSplit, Domain, dataset_targets
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.metrics.streaming import SeenAbsentState
from calib.pseudo_cv import PseudoClasses, PseudoSubset, make_pseudo_splits
from calib.run.correction_stage import check_corrections, correction_results, fit_corrections
from calib.run.identity import identity_leaves
from calib.run.method_stage import alpha_tradeoff_logits, finetune_with_method, prepared_pretrained
from calib.run.probability_stage import probability_results
from calib.run.report_metrics import alpha_results
from calib.run.run_outputs import run_results, state_mode_notes, write_outputs
from calib.run.runner import Runner, weights_sha256
from calib.run.selector_data import fit_selector
from calib.run.settings import CalibrationConfig, EvalConfig, MethodConfig
from calib.run.source_cache import SourceCache
from calib.run.stage_plan import StagePlan, plan_stages
from calib.run.stages import StageStore
from calib.selectors import PseudoSplit
from calib.train import TrainConfig, resolve_device

__all__ = ["RunPlan", "run_pipeline", "model_identity"]

log = logging.getLogger(__name__)


def model_identity(model: nn.Module) -> dict[str, str]:
    """What a model is before training: its class and a digest of its weights."""
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights": weights_sha256(model),
    }


@dataclass(kw_only=True)
class RunPlan:
    """Everything one run needs, built and validated; :meth:`run` executes it.

    Attributes:
        target: the target domain; ``target.train`` (augmenting transform) is fine-tuned on,
            ``target.train_eval`` (same samples, evaluation transform) and ``target.test``
            are scored.
        split: the seen (fine-tuning) classes S and absent classes U of the target domain.
        make_model: builds the (pre-trained or randomly initialised) model; called once, under
            ``torch.manual_seed(seed)``, unless ``model`` is given.
        finetune: training config of the fine-tuning on S.
        run_dir: where everything is written; rerunning with the same folder resumes.
        method: how to fine-tune (default ``full``: plain fine-tuning).
        calibration: the γ selectors to fit (default: alg, oracle).
        eval: extraction settings and figures (default ``EvalConfig()``).
        source: a source domain (all classes) to train on first, giving the "pre-trained"
            model; ``source_train`` is its training config (required with ``source``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...; under ``torchrun`` ``"auto"`` and
            ``"cuda"`` mean this process's ``cuda:LOCAL_RANK``.
        seed: seeds the model's initialisation (training seeds come with the train configs).
        progress: show progress bars.
        cache_dir: where finished source models are shared between runs (``None``: in the
            run folder).
        name: the run's name; ``title`` the table's and figures' (default ``name``; neither:
            the tables are titled by the target's name, the figures untitled).
        meta: settings stored under ``results["meta"]``.
        config: the config mapping the plan was built from (:func:`calib.run.plan.build_plan`):
            its identity leaves are folded into every stage key, checked against and recorded
            in ``run_dir/run.json``; empty for a plan built in Python (the stages are then keyed
            by the built objects alone, and no ``run.json`` is written).
        model: the built, untrained model (``make_model()`` under the seed); built on first
            use when not given. A run trains a copy: the plan keeps the one its stages are
            keyed by.

    ``stage_plan`` (not a constructor argument) holds the stages, planned once, on first use
    (:func:`calib.run.plan.build_plan` plans them while it builds the plan). A copy made with
    :func:`dataclasses.replace` plans its own.
    """

    target: Domain
    split: ClassSplit
    make_model: Callable[[], nn.Module]
    finetune: TrainConfig
    run_dir: Path
    method: MethodConfig = field(default_factory=MethodConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: Domain | None = None
    source_train: TrainConfig | None = None
    device: str | torch.device = "auto"
    seed: int = 0
    progress: bool = True
    cache_dir: Path | None = None
    name: str | None = None
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    stage_plan: StagePlan | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        if self.source is not None and self.source_train is None:
            raise ValueError("a source domain needs a source_train config (source_train=None)")
        if self.split.num_classes != self.target.num_classes:
            raise ValueError(
                f"the class split is for {self.split.num_classes} classes but "
                f"{self.target.name} has {self.target.num_classes}"
            )

    @property
    def identity(self) -> dict[str, Any]:
        """The config leaves that can change a number (see :mod:`calib.run.identity`)."""
        return identity_leaves(self.config)

    def stages(self, config_leaves: Mapping[str, Any] | None = None) -> StagePlan:
        """The run's stages with their keys (:class:`calib.run.stage_plan.StagePlan`).

        Planned once and kept in :attr:`stage_plan`. ``config_leaves``: other identity leaves
        to fold in instead of the plan's own (``{}`` keys the stages by the built objects
        alone); such a plan is computed afresh and not kept.
        """
        if config_leaves is not None:
            return self._plan_stages(config_leaves)
        if self.stage_plan is None:
            self.stage_plan = self._plan_stages(self.identity)
        return self.stage_plan

    def _plan_stages(self, config_leaves: Mapping[str, Any]) -> StagePlan:
        return plan_stages(
            target=self.target,
            split=self.split,
            model_identity=model_identity(self.initial_model()),
            finetune=self.finetune,
            method=self.method,
            calibration=self.calibration,
            eval_cfg=self.eval,
            source=self.source,
            source_train=self.source_train,
            seed=self.seed,
            config_leaves=config_leaves,
            device=self.device,
        )

    def initial_model(self) -> nn.Module:
        """The untrained model the stages are keyed by (built under ``seed`` on first use)."""
        if self.model is None:
            torch.manual_seed(self.seed)  # a random initialisation, or head, is the same each run
            self.model = self.make_model()
        return self.model

    def run(self) -> dict[str, Any]:
        """:func:`run_pipeline` of this plan."""
        return run_pipeline(self)


def run_pipeline(plan: RunPlan) -> dict[str, Any]:
    """Run the whole experiment of ``plan`` and write its results; returns the results dict.

    Raises:
        TypeError: ``plan`` is not a :class:`RunPlan`.
        calib.run.stages.StaleRunError: ``plan.run_dir`` holds stages computed from other
            inputs (nothing is computed).
    """
    if not isinstance(plan, RunPlan):
        raise TypeError(
            "run_pipeline takes a RunPlan (calib.run.build_plan(config) or "
            f"calib.run.RunPlan(target=..., split=..., ...)), got plan={plan!r:.80}"
        )
    stages = plan.stages()
    store = StageStore(plan.run_dir)
    leaves = plan.identity if plan.config else None
    if leaves is not None:
        store.check_config(leaves)
    store.check(stages.all())  # before any work: never serve another run's numbers
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    if leaves is not None:
        store.write_config(leaves, dict(plan.config))
    device = resolve_device(plan.device)
    model = copy.deepcopy(plan.initial_model())  # trained; the plan keeps the untrained one
    with distributed.distributed_context(device) as ctx:
        cache = SourceCache(plan.cache_dir) if plan.cache_dir is not None else None
        runner = Runner(
            plan.run_dir, device, plan.eval, plan.progress and ctx.is_main, store, cache
        )
        results, ex = _execute(runner, plan, stages, model)
        results["meta"].update({"world_size": ctx.world_size, **plan.meta})
        if ctx.is_main:  # every rank computed the same results; one writes and prints them
            title = plan.title or plan.name
            write_outputs(
                results, ex, stages, plan.split, plan.run_dir, title, plan.target.name, True,
                plan.eval, class_names=plan.target.class_names,
            )  # fmt: skip
        distributed.barrier()  # the results exist when any rank returns
        return results


def _pretrained(runner: Runner, plan: RunPlan, stages: StagePlan, model: nn.Module) -> nn.Module:
    """Stage 1: the pre-trained model (trained on the source domain first, when given)."""
    if plan.source is not None:
        assert plan.source_train is not None
        runner.train_source(stages.pretrained, model, plan.source.train, plan.source_train)
    else:
        runner.store.record(stages.pretrained)
    return model


def _finetuned(
    runner: Runner, plan: RunPlan, stages: StagePlan, pretrained: nn.Module
) -> nn.Module:
    """Stage 2: fine-tune a copy of the pre-trained model with the plan's method on the
    target's S samples (S ∪ U for a method that declares it), with the per-epoch evaluation
    into ``history.jsonl`` when ``eval.every_epochs`` > 0."""
    target, split, method = plan.target, plan.split, plan.method
    if stages.finetune_rows is None or stages.finetune_rows.size == 0:
        raise ValueError(f"{target.name} has no training sample of the seen classes")
    callback = None
    if stages.history is not None:
        from calib.dynamics import EpochEvaluator, HistoryWriter, linear_head_weight

        runner.store.record(stages.history)
        callback = EpochEvaluator(
            target.test,
            split,
            HistoryWriter(runner.run_dir),
            train_set=target.train_eval,
            epochs=plan.finetune.epochs,
            every=runner.eval_cfg.every_epochs,
            batch_size=runner.eval_cfg.batch_size,
            num_workers=runner.eval_cfg.num_workers,
            device=runner.device,
            amp=runner.amp,
            pretrained_head_weight=_detached(
                linear_head_weight(prepared_pretrained(pretrained, method))
            ),
        )
    subset = Subset(target.train, stages.finetune_rows.tolist())
    return finetune_with_method(
        runner, stages.finetune, pretrained, method, subset, plan.finetune, split,
        on_epoch_end=callback,
    )  # fmt: skip


def _detached(weight: torch.Tensor | None) -> torch.Tensor | None:
    return None if weight is None else weight.detach().clone()


def _pseudo_splits(
    runner: Runner, plan: RunPlan, stages: StagePlan, pretrained: nn.Module
) -> list[PseudoSplit] | list[SeenAbsentState]:
    """PCV through :func:`calib.pseudo_cv.make_pseudo_splits`: the planned pseudo splits of S
    (``stages.pcv_subsets``), each fine-tuned with the run's method on ``target.train`` and
    its held-out rows scored on ``target.train_eval``, as the resumable stages
    ``stages.pcv[j]`` (with ``eval.logits=state`` streamed into one state per split). No U
    sample is handed over: the S rows of the training set are.
    """
    assert plan.calibration.pcv is not None
    cfg = plan.calibration.pcv.finetune or plan.finetune
    target, split = plan.target, plan.split
    s_rows = np.flatnonzero(np.isin(dataset_targets(target.train), split.seen))
    # the planned rows index target.train; make_pseudo_splits' index its S rows (all it uses)
    subsets = [
        PseudoSubset(
            sub.pseudo_seen,
            sub.pseudo_absent,
            np.searchsorted(s_rows, sub.fit_rows),
            np.searchsorted(s_rows, sub.heldout_rows),
        )
        for sub in stages.pcv_subsets
    ]

    def finetune(model: nn.Module, data: Dataset, classes: PseudoClasses) -> nn.Module:
        # the method's "absent" classes are every column absent from this run: pseudo-absent ∪ U
        pseudo = ClassSplit(classes.seen, classes.absent, classes.num_classes)
        train_stage = stages.pcv[classes.index][0]
        return finetune_with_method(runner, train_stage, model, plan.method, data, cfg, pseudo)

    def score(model: nn.Module, data: Dataset, classes: PseudoClasses) -> Any:
        stage = stages.pcv[classes.index][1]
        if stages.logits == "state":  # the held-out rows streamed into a state of the split
            return runner.extract_state(stage, model, data, stages.states[stage.name])
        return runner.extract(stage, model, data).logits

    return make_pseudo_splits(
        pretrained, finetune, Subset(target.train, s_rows.tolist()), split.seen, split.absent,
        split.num_classes, subsets=subsets, eval_data=Subset(target.train_eval, s_rows.tolist()),
        score=score,
    )  # fmt: skip


def _extractions(
    runner: Runner, plan: RunPlan, stages: StagePlan, start: nn.Module, finetuned: nn.Module
) -> dict[str, Any]:
    """Every extraction stage of the plan: tag -> :class:`calib.extract.Extracted`, or with
    ``eval.logits=state`` tag -> :class:`calib.SeenAbsentState` (``finetuned_train``: the S
    rows of ``target.train_eval``, ``stages.alg_rows``)."""
    target = plan.target
    ex: dict[str, Any] = {}
    for tag, stage in stages.extracts.items():
        model = start if tag.startswith("pre") else finetuned
        data = target.train_eval if tag.endswith("_train") else target.test
        if stages.logits == "state":
            if tag.endswith("_train"):
                assert stages.alg_rows is not None
                data = Subset(target.train_eval, stages.alg_rows.tolist())
            ex[tag] = runner.extract_state(stage, model, data, stages.states[stage.name])
        else:
            ex[tag] = runner.extract(stage, model, data)
    return ex


def _fit_selectors(
    runner: Runner, plan: RunPlan, stages: StagePlan, ex, pseudo
) -> dict[str, LogitBiasCalibrator]:
    """Every selector of the run, fitted and saved (``calibrators/NAME.json``)."""
    calibrators = {}
    for name in plan.calibration.selectors:
        runner.store.record(stages.selectors[name])
        cal = fit_selector(
            name, plan.calibration.params(name), plan.split, ex, pseudo,
            class_names=plan.target.class_names,
        )  # fmt: skip
        if distributed.is_main():
            cal.save(runner.run_dir / "calibrators" / f"{name}.json")
        calibrators[name] = cal
    return calibrators


def _execute(runner: Runner, plan: RunPlan, stages: StagePlan, model: nn.Module):
    """The stages in order; returns the results (without the run's settings) and the logits."""
    target, split, method = plan.target, plan.split, plan.method
    if distributed.is_main():
        log.info(
            "run dir: %s; device: %s; S = %d classes, U = %d classes",
            runner.run_dir,
            runner.device,
            len(split.seen),
            len(split.absent),
        )
    corrections = check_corrections(
        plan.calibration.corrections,
        has_pcv=plan.calibration.pcv is not None,
        model=model,
        head=str(method.params.get("head", "linear")),
    )  # before any training
    pretrained = _pretrained(runner, plan, stages, model)
    finetuned = _finetuned(runner, plan, stages, pretrained)
    start = prepared_pretrained(pretrained, method)  # the pre-trained row: where it starts
    ex = _extractions(runner, plan, stages, start, finetuned)
    streamed = stages.logits == "state"
    pseudo = None
    if plan.calibration.needs_pcv:
        pseudo = _pseudo_splits(runner, plan, stages, pretrained)
    calibrators = _fit_selectors(runner, plan, stages, ex, pseudo)
    average = plan.eval.average
    results = run_results(
        ex, split, calibrators, target, runner.device, stages.keys(), average=average
    )
    results["meta"]["method"] = method.name
    results["meta"]["method_params"] = dict(method.params)
    results["meta"]["uses_absent_data"] = method.spec.uses_absent_data
    if streamed:  # what needs the logits themselves is absent, and meta says why
        results["meta"]["eval_logits"] = "state"
        results["meta"]["not_computed"] = state_mode_notes()  # corrections: refused when planned
    else:
        results["probability"] = probability_results(
            ex, split, calibrators, pseudo, average=average
        )
    if corrections:
        fitted = fit_corrections(corrections, split, ex, pseudo, finetuned)
        results["corrected"] = correction_results(fitted, ex, split, average=average)
        if distributed.is_main():
            for name, est in fitted.items():
                est.save(runner.run_dir / "corrections" / f"{name}.json")
    if stages.alpha:
        subset = Subset(target.train, stages.finetune_rows.tolist())
        scored = {}
        if streamed:  # each α's test data streamed into a state of the test's settings

            def score(stage, model, data):
                return runner.extract_state(stage, model, data, stages.states[stage.name])

            scored = {"score": score}
        by_alpha = alpha_tradeoff_logits(
            runner,
            stages.finetune,
            stages.alpha,
            pretrained,
            method,
            subset,
            plan.finetune,
            split,
            target.test,
            **scored,
        )
        results["alpha_tradeoff"] = alpha_results(by_alpha, ex, split)
        ex["alpha"] = by_alpha
    return results, ex
