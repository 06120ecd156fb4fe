"""The harness's PCV stage (calib.run.pipeline._pseudo_splits) on the tiny demo: the splits of
the protocol as the harness ran it before it called calib.make_pseudo_splits, what its
fine-tuning is given, and resumption from the stage records."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from calib.data import ClassSplit
from calib.run import build_plan, pipeline
from calib.run.method_stage import finetune_with_method
from calib.run.runner import Runner
from calib.run.source_cache import SourceCache
from calib.run.stages import StageStore
from calib.selectors import PseudoSplit
from calib.train import resolve_device
from tests.helpers_run import tiny_config


def _stage_runner(plan, run_dir):
    """What ``run_pipeline`` hands its PCV stage (the arguments of ``_pseudo_splits``): the
    runner of ``run_dir``, the plan, its stages and the pre-trained model (the source model,
    from the session's cache)."""
    plan = dataclasses.replace(plan, run_dir=run_dir)
    stages = plan.stages()
    store = StageStore(run_dir)
    store.check(stages.all())
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = SourceCache(plan.cache_dir) if plan.cache_dir is not None else None
    runner = Runner(run_dir, resolve_device("cpu"), plan.eval, False, store, cache)
    model = copy.deepcopy(plan.initial_model())
    pretrained = pipeline._pretrained(runner, plan, stages, model)
    return runner, plan, stages, pretrained


def _previous_harness_splits(runner, plan, stages, pretrained) -> list[PseudoSplit]:
    """The harness's own PCV loop as it was before it called ``calib.make_pseudo_splits``
    (calib/run/pipeline.py at a88f94b), kept as the reference."""
    cfg = plan.calibration.pcv.finetune or plan.finetune
    target, split = plan.target, plan.split
    splits = []
    for (train_stage, score_stage), sub in zip(stages.pcv, stages.pcv_subsets, strict=True):
        absent = np.union1d(sub.pseudo_absent, np.asarray(split.absent))
        pseudo = ClassSplit(
            tuple(sub.pseudo_seen.tolist()), tuple(absent.tolist()), split.num_classes
        )
        fit = Subset(target.train, sub.fit_rows.tolist())
        model = finetune_with_method(runner, train_stage, pretrained, plan.method, fit, cfg, pseudo)
        scored = runner.extract(
            score_stage, model, Subset(target.train_eval, sub.heldout_rows.tolist())
        )
        splits.append(
            PseudoSplit(
                logits=scored.logits.numpy(),
                labels=scored.labels.numpy(),
                seen_classes=sub.pseudo_seen,
                absent_classes=absent,
            )
        )
    return splits


def _root_rows(dataset) -> tuple[object, np.ndarray]:
    """The dataset under any nesting of Subsets and the rows of it that ``dataset`` holds."""
    rows = np.arange(len(dataset))
    while isinstance(dataset, Subset):
        rows = np.asarray(dataset.indices)[rows]
        dataset = dataset.dataset
    return dataset, rows


#: Plain fine-tuning; one that trains on its absent classes too (the pseudo runs then fit the
#: pseudo-absent rows that are not held out); one in two phases (folders under the stage's).
METHODS = ["full", "oracle_all", "lp_ft"]


@pytest.fixture(scope="module", params=METHODS)
def plan(request):
    torch.set_num_threads(1)
    return build_plan(tiny_config([f"finetune.method={request.param}"]), run_dir="unused")


def test_the_splits_are_those_of_the_previous_harness_loop(plan, tmp_path):
    now = pipeline._pseudo_splits(*_stage_runner(plan, tmp_path / "now"))
    ref = _previous_harness_splits(*_stage_runner(plan, tmp_path / "ref"))
    assert len(now) == len(ref) == 2
    for a, b in zip(now, ref, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.seen_classes, b.seen_classes)
        np.testing.assert_array_equal(a.absent_classes, b.absent_classes)
        assert a.logits.shape == b.logits.shape and a.logits.dtype == b.logits.dtype
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def test_the_finetuning_sees_only_its_fit_rows_and_scoring_only_the_heldout_rows(
    plan, tmp_path, monkeypatch
):
    fitted, scored = [], []

    def spy_finetune(runner, stage, pretrained, method, dataset, cfg, split, *args, **kwargs):
        fitted.append((stage.name, dataset, split))
        return finetune_with_method(
            runner, stage, pretrained, method, dataset, cfg, split, *args, **kwargs
        )

    real_extract = Runner.extract

    def spy_extract(self, stage, model, dataset):
        scored.append((stage.name, dataset))
        return real_extract(self, stage, model, dataset)

    monkeypatch.setattr(pipeline, "finetune_with_method", spy_finetune)
    monkeypatch.setattr(Runner, "extract", spy_extract)
    runner, plan_, stages, pretrained = _stage_runner(plan, tmp_path / "run")
    pipeline._pseudo_splits(runner, plan_, stages, pretrained)

    target, split = plan_.target, plan_.split
    labels = np.asarray(target.train.targets)
    assert [name for name, _, _ in fitted] == [t.name for t, _ in stages.pcv]
    assert [name for name, _ in scored] == [s.name for _, s in stages.pcv]
    for (_, data, pseudo), (_, held), sub in zip(fitted, scored, stages.pcv_subsets, strict=True):
        root, rows = _root_rows(data)
        assert root is target.train  # the augmenting transform, for fitting
        np.testing.assert_array_equal(rows, sub.fit_rows)
        fitted_classes = sub.pseudo_seen
        if plan_.method.name == "oracle_all":  # its pseudo-absent classes are trained on too
            fitted_classes = np.union1d(sub.pseudo_seen, sub.pseudo_absent)
            assert np.isin(labels[rows], sub.pseudo_absent).any()
        assert np.isin(labels[rows], fitted_classes).all()  # never a U row
        assert not np.isin(rows, sub.heldout_rows).any()
        assert pseudo.seen == tuple(sub.pseudo_seen.tolist())
        assert set(pseudo.absent) == set(sub.pseudo_absent.tolist()) | set(split.absent)
        root, rows = _root_rows(held)
        assert root is target.train_eval  # scored with the evaluation transform
        np.testing.assert_array_equal(rows, sub.heldout_rows)
        assert np.isin(labels[rows], split.seen).all()
    assert np.isin(labels, split.absent).any()  # the train set has U rows: none was handed over


def test_a_rerun_reuses_the_recorded_pcv_stages(plan, tmp_path):
    run_dir = tmp_path / "run"
    first = pipeline._pseudo_splits(*_stage_runner(plan, run_dir))
    stages = plan.stages()
    files = [run_dir / t.name / "checkpoints" / "final.pt" for t, _ in stages.pcv]
    files += [run_dir / f"{s.name}.pt" for _, s in stages.pcv]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    records = StageStore(run_dir).records()
    for t, s in stages.pcv:
        assert records[t.name]["key"] == t.key and records[s.name]["key"] == s.key

    again = pipeline._pseudo_splits(*_stage_runner(plan, run_dir))
    assert {p: p.stat().st_mtime_ns for p in files} == stamps  # nothing retrained or rescored
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.logits, b.logits)
        np.testing.assert_array_equal(a.labels, b.labels)
