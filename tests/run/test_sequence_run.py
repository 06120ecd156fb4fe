"""calib.run.sequence_run: a sequence of fine-tunings as runs, keyed stage after stage."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.run.schema import ConfigError
from calib.run.sequence_run import (
    FINAL_WEIGHTS,
    _record,
    check_sequence_stages,
    plan_sequence,
    run_sequence,
)
from calib.run.stages import StaleRunError
from tests.helpers_run import tiny_config

STAGES = [[0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]


@pytest.fixture(scope="module")
def base_cfg():
    cfg = tiny_config(["eval.every_epochs=0"])
    cfg["sequence"] = {"stages": copy.deepcopy(STAGES)}
    return cfg


def _with(cfg, **changes):
    out = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        *path, leaf = dotted.split("__")
        node = out
        for part in path:
            node = node[part]
        node[leaf] = value
    return out


def test_each_stage_is_a_run_on_its_classes_started_from_the_previous_checkpoint(
    base_cfg, tmp_path
):
    stages = plan_sequence(base_cfg, tmp_path)
    assert [s.classes for s in stages] == [tuple(c) for c in STAGES]
    assert [s.run_dir for s in stages] == [tmp_path / f"stage_{k}" for k in (1, 2, 3)]
    for s in stages:
        assert "sequence" not in s.config
        split = s.config["split"]
        assert (split["kind"], split["seen"], split["absent"]) == (
            "explicit",
            list(s.classes),
            None,
        )
    first, *later = stages
    assert first.start is None
    assert first.config["source"] == base_cfg["source"] and first.config["source"] is not None
    assert first.config["model"] == base_cfg["model"]
    for prev, s in zip(stages, later, strict=False):
        assert s.start == prev.run_dir / FINAL_WEIGHTS
        assert s.config["source"] is None
        assert s.config["model"]["weights"] == str(prev.run_dir / FINAL_WEIGHTS)
        assert s.identity["previous"] == prev.key
    assert base_cfg["sequence"] == {"stages": STAGES}  # the given config is left as it was


def _keys(cfg, path):
    return [s.key for s in plan_sequence(cfg, path)]


def test_a_setting_that_matters_changes_its_stage_key_and_every_later_one(base_cfg, tmp_path):
    keys = _keys(base_cfg, tmp_path)
    assert len(set(keys)) == 3
    # the fine-tuning of every stage
    changed = _keys(_with(base_cfg, finetune__epochs=2), tmp_path)
    assert all(a != b for a, b in zip(keys, changed, strict=True))
    # the source model: only stage 1 trains it, yet the later stages start from stage 1
    changed = _keys(_with(base_cfg, source_train__epochs=2), tmp_path)
    assert all(a != b for a, b in zip(keys, changed, strict=True))
    # stage 2's classes: stage 1 stays, stages 2 and 3 change
    other = _with(base_cfg, sequence__stages=[STAGES[0], [0, 1, 2, 3], STAGES[2]])
    changed = _keys(other, tmp_path)
    assert changed[0] == keys[0] and changed[1] != keys[1] and changed[2] != keys[2]
    # the last stage's classes: only the last key
    changed = _keys(_with(base_cfg, sequence__stages=[*STAGES[:2], [0, 1, 2, 3, 4, 5]]), tmp_path)
    assert changed[:2] == keys[:2] and changed[2] != keys[2]


def test_a_setting_that_changes_no_number_keeps_the_keys(base_cfg, tmp_path):
    keys = _keys(base_cfg, tmp_path)
    assert _keys(_with(base_cfg, device="cpu", progress=True, name="other"), tmp_path) == keys
    # the folder: the keys name the stages, not where they are
    assert _keys(base_cfg, tmp_path / "elsewhere") == keys


@pytest.mark.parametrize(
    ("stages", "match"),
    [
        ([], r"sequence.stages must be a non-empty list of class lists, got \[\]"),
        ("0,1", r"sequence.stages must be a non-empty list"),
        ([[0, 1], []], r"sequence.stages\[1\] must be a non-empty list of class indices"),
        ([[0, -1]], r"sequence.stages\[0\] must hold class indices ≥ 0, got -1"),
        ([[0, True]], r"sequence.stages\[0\] must hold class indices ≥ 0, got True"),
        ([[0, 1, 1]], r"sequence.stages\[0\] lists a class more than once: \[0, 1, 1\]"),
        ([[0, 1, 2], [0, 1, 3]], r"sequence.stages\[1\] = \[0, 1, 3\] drops class\(es\) \[2\]"),
    ],
)
def test_bad_stages_are_named(stages, match):
    with pytest.raises(ConfigError, match=match):
        check_sequence_stages(stages)


def test_a_bad_sequence_section_or_method_is_refused_before_any_work(base_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"sequence must be a mapping with the one key 'stages'"):
        plan_sequence(_with(base_cfg, sequence={"stage": STAGES}), tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"finetune.method='wise_ft' applies \['alpha', 'alpha_grid'\] after training",
    ):
        run_sequence(_with(base_cfg, finetune__method="wise_ft"), tmp_path)
    assert not tmp_path.joinpath("sequence.json").exists()


def test_a_folder_of_another_sequence_is_refused_naming_the_stage(base_cfg, tmp_path):
    old = plan_sequence(base_cfg, tmp_path)
    tmp_path.joinpath("sequence.json").write_text(json.dumps(_record(old, [None] * len(old))))
    other = _with(base_cfg, sequence__stages=[STAGES[0], [0, 1, 2, 3], STAGES[2]])
    with pytest.raises(
        StaleRunError, match=r"stage 2 changed \(classes: \[0,1,2,3,4\] → \[0,1,2,3\]"
    ):
        run_sequence(other, tmp_path)
    assert not tmp_path.joinpath("stage_1").exists()  # refused before any work


@pytest.mark.slow
def test_a_two_stage_sequence_runs_resumes_and_collates(base_cfg, tmp_path):
    cfg = _with(
        base_cfg,
        sequence={"stages": STAGES[:2]},
        cache_dir=str(tmp_path / "cache"),
        calibration__selectors=["alg", "pcv", "oracle"],
    )
    cfg["eval"]["figures"] = True
    out = run_sequence(cfg, tmp_path / "seq")
    first, second = (tmp_path / "seq" / f"stage_{k}" for k in (1, 2))
    # stage 2's "pre-trained" model is stage 1's fine-tuned one
    a = torch.load(first / "extract" / "finetuned_test.pt", weights_only=True)["logits"]
    b = torch.load(second / "extract" / "pretrained_test.pt", weights_only=True)["logits"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert [s["classes"] for s in out["stages"]] == STAGES[:2]
    for s, classes in zip(out["stages"], STAGES[:2], strict=True):
        run = json.loads((tmp_path / "seq" / s["folder"] / "results.json").read_text())
        assert run["calibrated"]["alg"]["gamma"] == s["results"]["calibrated"]["alg"]["gamma"]
        pcv = LogitBiasCalibrator.load(tmp_path / "seq" / s["folder"] / "calibrators" / "pcv.json")
        assert pcv.seen_classes_.tolist() == classes
    record = json.loads((tmp_path / "seq" / "sequence.json").read_text())
    assert [s["key"] for s in record["stages"]] == [s["key"] for s in out["stages"]]
    assert record["stages"][1]["identity"]["previous"] == record["stages"][0]["key"]
    md = (tmp_path / "seq" / "sequence.md").read_text()
    assert "## stage 1: S = [0, 1, 2]" in md and "## stage 2: S = [0, 1, 2, 3, 4]" in md
    assert (tmp_path / "seq" / "stages.png").read_bytes()[:4] == b"\x89PNG"
    # rerun: every stage is read back, nothing is trained again
    weights = second / "finetune" / "checkpoints" / "final.pt"
    stamp = weights.stat().st_mtime_ns
    again = run_sequence(cfg, tmp_path / "seq")
    assert weights.stat().st_mtime_ns == stamp
    assert again["tables"] == out["tables"]
