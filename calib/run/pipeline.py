"""The main job, from plain Python: (source model →) fine-tune on S → extract → fit γ → report.

:func:`run_pipeline` takes built objects (domains, a class split, a model factory, training
configs) and leaves in ``run_dir``::

    run.json           the config leaves the run was made with (written by a RunPlan)
    stages.json        every stage's key and identity (see calib.run.stages)
    source/ | <cache>  source-model training checkpoints (shared cache: calib.run.source_cache)
    finetune/          fine-tuning checkpoints
    pcv/split_<j>/     pseudo-split fine-tuning checkpoints (when a selector takes pseudo splits)
    extract/*.pt       extracted logits, features and labels, keyed by their stage
    calibrators/*.json one fitted LogitBiasCalibrator per selector
    results.json       {"pretrained", "finetuned", "calibrated", "meta"} (see calib.run.results)
    results.csv        the same, flattened to one row
    results.md         the printed table
    curve.png          seen–absent curves, pre-trained vs fine-tuned, chosen γ marked

Before any work every stage's key is compared with the folder's records: a folder made with
other settings is refused, naming what changed (:class:`calib.run.stages.StaleRunError`).
A killed run started again with the same arguments resumes at its last checkpoint and skips
finished stages.

Under ``torchrun`` every rank runs :func:`run_pipeline` with the same arguments: all ranks
train (DDP, global batch sizes as configured) and extract their shard of each dataset
(gathered into dataset order on every rank), every rank computes the same results, and only
rank 0 writes files and prints. ``run_dir`` must be the same path, on a shared file system.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from calib import distributed
from calib.data import ClassSplit, Domain
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.run.method_stage import alpha_tradeoff_logits, finetune_with_method, prepared_pretrained
from calib.run.probability_stage import (
    probability_results,
)
from calib.run.report_metrics import alpha_results
from calib.run.run_outputs import run_results, write_outputs
from calib.run.runner import Runner, weights_sha256
from calib.run.selector_data import fit_selector
from calib.run.settings import CalibrationConfig, EvalConfig, MethodConfig
from calib.run.source_cache import SourceCache
from calib.run.stage_plan import StagePlan, plan_stages
from calib.run.stages import StageStore
from calib.selectors import PseudoSplit
from calib.train import TrainConfig, resolve_device

__all__ = ["run_pipeline", "model_identity"]

log = logging.getLogger(__name__)


def model_identity(model: nn.Module) -> dict[str, str]:
    """What a model is before training: its class and a digest of its weights."""
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights": weights_sha256(model),
    }


def _pretrained(
    runner: Runner,
    plan: StagePlan,
    model: nn.Module,
    source: Domain | None,
    cfg: TrainConfig | None,
) -> nn.Module:
    """Stage 1: the pre-trained model (trained on the source domain first, when given)."""
    if source is not None:
        assert cfg is not None
        runner.train_source(plan.pretrained, model, source.train, cfg)
    else:
        runner.store.record(plan.pretrained)
    return model


def _finetuned(
    runner: Runner,
    plan: StagePlan,
    pretrained: nn.Module,
    target: Domain,
    split: ClassSplit,
    cfg: TrainConfig,
    method: MethodConfig,
) -> nn.Module:
    """Stage 2: fine-tune a copy of the pre-trained model with ``method`` on the target's S
    samples (S ∪ U for a method that declares it), with the per-epoch evaluation into
    ``history.jsonl`` when ``eval.every_epochs`` > 0."""
    if plan.finetune_rows is None or plan.finetune_rows.size == 0:
        raise ValueError(f"{target.name} has no training sample of the seen classes")
    callback = None
    if plan.history is not None:
        from calib.dynamics import EpochEvaluator, HistoryWriter, linear_head_weight

        runner.store.record(plan.history)
        callback = EpochEvaluator(
            target.test,
            split,
            HistoryWriter(runner.run_dir),
            train_set=target.train_eval,
            epochs=cfg.epochs,
            every=runner.eval_cfg.every_epochs,
            batch_size=runner.eval_cfg.batch_size,
            num_workers=runner.eval_cfg.num_workers,
            device=runner.device,
            amp=runner.eval_cfg.amp and runner.device.type == "cuda",
            pretrained_head_weight=_detached(
                linear_head_weight(prepared_pretrained(pretrained, method))
            ),
        )
    subset = Subset(target.train, plan.finetune_rows.tolist())
    return finetune_with_method(
        runner, plan.finetune, pretrained, method, subset, cfg, split, on_epoch_end=callback
    )


def _detached(weight: torch.Tensor | None) -> torch.Tensor | None:
    return None if weight is None else weight.detach().clone()


def _pseudo_splits(
    runner: Runner,
    plan: StagePlan,
    pretrained: nn.Module,
    target: Domain,
    split: ClassSplit,
    cfg: TrainConfig,
    method: MethodConfig,
) -> list[PseudoSplit]:
    """PCV: fine-tune with the run's method on pseudo-seen classes of S, score held-out S data,
    k times (no U data). The pseudo run's absent classes are pseudo-absent ∪ U."""
    splits = []
    for (train_stage, score_stage), sub in zip(plan.pcv, plan.pcv_subsets, strict=True):
        absent = np.union1d(sub.pseudo_absent, np.asarray(split.absent))
        pseudo = ClassSplit(
            tuple(sub.pseudo_seen.tolist()), tuple(absent.tolist()), split.num_classes
        )
        fit = Subset(target.train, sub.fit_rows.tolist())
        model = finetune_with_method(runner, train_stage, pretrained, method, fit, cfg, pseudo)
        scored = runner.extract(
            score_stage, model, Subset(target.train_eval, sub.heldout_rows.tolist())
        )
        splits.append(
            PseudoSplit(
                logits=scored.logits.numpy(),
                labels=scored.labels.numpy(),
                seen_classes=sub.pseudo_seen,
                # γ goes to every column absent from this run's fine-tuning: pseudo-absent and U
                absent_classes=absent,
            )
        )
    return splits


def _fit_selectors(runner, plan, calibration, split, ex, pseudo) -> dict[str, LogitBiasCalibrator]:
    """Every selector of the run, fitted and saved (``calibrators/NAME.json``)."""
    calibrators = {}
    for name in calibration.selectors:
        runner.store.record(plan.selectors[name])
        cal = fit_selector(name, calibration.params(name), split, ex, pseudo)
        if distributed.is_main():
            cal.save(runner.run_dir / "calibrators" / f"{name}.json")
        calibrators[name] = cal
    return calibrators


def run_pipeline(
    *,
    target: Domain,
    split: ClassSplit,
    make_model: Callable[[], nn.Module],
    finetune: TrainConfig,
    run_dir: str | os.PathLike,
    method: MethodConfig | None = None,
    calibration: CalibrationConfig | None = None,
    source: Domain | None = None,
    source_train: TrainConfig | None = None,
    eval: EvalConfig | None = None,  # noqa: A002 - mirrors the config group name
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    title: str | None = None,
    meta: Mapping[str, Any] | None = None,
    plot: bool = True,
    cache_dir: str | os.PathLike | None = None,
    config_leaves: Mapping[str, Any] | None = None,
    config_record: Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Run the whole experiment and write its results; returns the results dict.

    Args:
        target: the target domain; ``target.train`` (augmenting transform) is fine-tuned on,
            ``target.train_eval`` (same samples, evaluation transform) and ``target.test`` are scored.
        split: the seen (fine-tuning) classes S and absent classes U of the target domain.
        make_model: builds the (pre-trained or randomly initialised) model; called once, under
            ``torch.manual_seed(seed)``, unless ``model`` is given.
        finetune: training config of the fine-tuning on S.
        method: how to fine-tune (default ``MethodConfig()``: ``full``, plain fine-tuning).
        run_dir: where everything is written; rerunning with the same directory resumes.
        calibration: the γ selectors to fit (default ``CalibrationConfig()``: alg, oracle).
        source: a source domain (all classes) to train on first, giving the "pre-trained" model.
        source_train: training config of the source model (required with ``source``).
        eval: extraction settings (default ``EvalConfig()``).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ...; under ``torchrun`` ``"auto"``
            and ``"cuda"`` mean this process's ``cuda:LOCAL_RANK``.
        seed: seeds the model's initialisation (training seeds come with the train configs).
        progress: show progress bars.
        title: table title.
        meta: settings to store under ``results["meta"]``.
        plot: draw the run's figures (as ``eval.figures``; both must be on).
        cache_dir: where finished source models are shared between runs (``None``: in the run
            folder).
        config_leaves: the config's identity leaves (from :func:`calib.run.plan.build_plan`),
            folded into the stage identities and checked against ``run_dir/run.json``.
        config_record: the whole config, recorded in ``run_dir/run.json``.
        model: the already built pre-trained model (``make_model()`` under the seed); it is
            trained in place when there is a source domain.

    Raises:
        calib.run.stages.StaleRunError: ``run_dir`` holds stages computed from other inputs
            (nothing is computed).
    """
    if source is not None and source_train is None:
        raise ValueError("a source domain needs a source_train config")
    if split.num_classes != target.num_classes:
        raise ValueError(
            f"the class split is for {split.num_classes} classes but {target.name} has {target.num_classes}"
        )
    calibration = CalibrationConfig() if calibration is None else calibration
    method = MethodConfig() if method is None else method
    eval = EvalConfig() if eval is None else eval  # noqa: A001
    run_dir = Path(run_dir)
    device = resolve_device(device)
    if model is None:
        torch.manual_seed(seed)  # a randomly initialised model, or head, is the same in every run
        model = make_model()
    plan = plan_stages(
        target=target,
        split=split,
        model_identity=model_identity(model),
        finetune=finetune,
        method=method,
        calibration=calibration,
        eval_cfg=eval,
        source=source,
        source_train=source_train,
        seed=seed,
        config_leaves=config_leaves,
    )
    store = StageStore(run_dir)
    if config_leaves is not None:
        store.check_config(config_leaves)
    store.check(plan.all())  # before any work: never serve another run's numbers
    run_dir.mkdir(parents=True, exist_ok=True)
    if config_leaves is not None:
        store.write_config(config_leaves, dict(config_record or {}))
    with distributed.distributed_context(device) as ctx:
        runner = Runner(
            run_dir,
            device,
            eval,
            progress and ctx.is_main,
            store,
            SourceCache(cache_dir) if cache_dir is not None else None,
        )
        results, ex = _execute(
            runner, plan, model, target, split, finetune, method, calibration, source, source_train
        )
        results["meta"].update({"world_size": ctx.world_size, **(dict(meta) if meta else {})})
        if ctx.is_main:  # every rank computed the same results; one writes and prints them
            write_outputs(results, ex, plan, split, run_dir, title, target.name, plot, eval)
        distributed.barrier()  # the results exist when any rank returns
        return results


def _execute(
    runner, plan, model, target, split, finetune, method, calibration, source, source_train
):
    """The stages in order; returns the results (without the run's settings) and the logits."""
    if distributed.is_main():
        log.info(
            "run dir: %s; device: %s; S = %d classes, U = %d classes",
            runner.run_dir,
            runner.device,
            len(split.seen),
            len(split.absent),
        )
    pretrained = _pretrained(runner, plan, model, source, source_train)
    finetuned = _finetuned(runner, plan, pretrained, target, split, finetune, method)
    start = prepared_pretrained(pretrained, method)  # the pre-trained row: where it starts
    datasets = [target.train_eval, target.test, target.train_eval, target.test]
    ex = {
        tag: runner.extract(stage, start if tag.startswith("pre") else finetuned, ds)
        for (tag, stage), ds in zip(plan.extracts.items(), datasets, strict=True)
    }
    pseudo = None
    if calibration.needs_pcv:
        assert calibration.pcv is not None
        pcv_cfg = calibration.pcv.finetune or finetune
        pseudo = _pseudo_splits(runner, plan, pretrained, target, split, pcv_cfg, method)
    calibrators = _fit_selectors(runner, plan, calibration, split, ex, pseudo)
    results = run_results(ex, split, calibrators, target, runner.device, plan.keys())
    results["probability"] = probability_results(ex, split, calibrators, pseudo)
    results["meta"]["method"] = method.name
    results["meta"]["method_params"] = dict(method.params)
    results["meta"]["uses_absent_data"] = method.spec.uses_absent_data
    if plan.alpha:
        subset = Subset(target.train, plan.finetune_rows.tolist())
        by_alpha = alpha_tradeoff_logits(
            runner,
            plan.finetune,
            plan.alpha,
            pretrained,
            method,
            subset,
            finetune,
            split,
            target.test,
        )
        results["alpha_tradeoff"] = alpha_results(by_alpha, ex, split)
        ex["alpha"] = by_alpha
    return results, ex
