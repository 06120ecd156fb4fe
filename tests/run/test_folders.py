"""Run folders never serve another run's numbers, never nest, and follow the umask."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys

import pytest

import calib
from calib.run import NON_IDENTITY_KEYS, RunPlan, StaleRunError, build_plan, run_pipeline
from calib.run.stages import StageStore
from experiments.run import folder_name, run_folder
from tests.helpers_paper import CONF
from tests.helpers_run import tiny_config


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("split.seen=[0,1,2,3,5]", "split.seen: [0,1,2,3,4] → [0,1,2,3,5]"),
        ("dataset.size=20", "dataset.size: 16 → 20"),
        ("source=null", "source.name"),
        ("finetune.epochs=4", "finetune.epochs: 1 → 4"),
        ("+calibration.options.oracle.criterion=hmean", "calibration.options.oracle.criterion"),
    ],
)
def test_changed_setting_in_a_used_folder_is_refused_before_any_work(demo_copy, override, named):
    """The issue's stale-result commands: the same folder with another setting is refused."""
    _, _, run_dir = demo_copy
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(StaleRunError) as err:
        build_plan(tiny_config([override]), run_dir=run_dir)
    assert named in str(err.value)
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    assert after == before  # nothing written


def test_unchanged_numbers_settings_do_not_refuse(demo_copy):
    """Another batch size, device and no figures (TINY's eval.figures=false): same numbers, and
    the figures drawn by the first run are gone rather than left beside the new results."""
    _, results, run_dir = demo_copy
    drawn = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*.png"))
    assert len(drawn) >= 3 and (run_dir / "curve.png").is_file()
    trained = (run_dir / "finetune" / "checkpoints" / "final.pt").stat().st_mtime_ns
    plan = build_plan(tiny_config(["eval.batch_size=17", "device=cpu"]), run_dir=run_dir)
    assert plan.run()["calibrated"] == results["calibrated"]
    assert not list(run_dir.rglob("*.png")), "figures of the earlier run were left"
    assert (run_dir / "finetune" / "checkpoints" / "final.pt").stat().st_mtime_ns == trained
    assert (run_dir / "results.json").is_file()


def test_stage_records_refuse_a_python_caller_too(demo_copy):
    """run_pipeline without a config: the stage keys alone refuse a changed fine-tuning."""
    plan, _, run_dir = demo_copy
    longer = dataclasses.replace(plan.finetune, epochs=plan.finetune.epochs + 1)
    with pytest.raises(StaleRunError, match=r"finetune \(.*epochs"):
        run_pipeline(
            RunPlan(
                target=plan.target,
                split=plan.split,
                make_model=plan.make_model,
                finetune=longer,
                calibration=plan.calibration,
                source=plan.source,
                source_train=plan.source_train,
                eval=plan.eval,
                run_dir=run_dir,
                progress=False,
                device="cpu",
            )
        )


def test_a_folder_without_records_is_refused(tmp_path):
    (tmp_path / "finetune").mkdir()
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(StaleRunError, match="without stage records"):
        StageStore(tmp_path).check([])


def test_stale_extraction_cache_is_recomputed(demo_copy):
    """A cache written for another stage key or other weights is never trusted."""
    import torch

    plan, results, run_dir = demo_copy
    path = run_dir / "extract" / "finetuned_test.pt"
    cache = torch.load(path, weights_only=True)
    torch.save({**cache, "logits": torch.zeros_like(cache["logits"]), "stage_key": "other"}, path)
    again = dataclasses.replace(plan, run_dir=run_dir).run()
    assert again["finetuned"] == results["finetuned"]
    assert torch.load(path, weights_only=True)["stage_key"] == cache["stage_key"]


def test_folder_names_never_nest():
    assert folder_name("") == "defaults"
    assert folder_name("optimizer=adam") == "optimizer=adam"
    assert folder_name("model.weights=/data/w.pt") == "model.weights=%2Fdata%2Fw.pt"
    # typeable (ASCII) and never shared by two override strings
    assert folder_name("a=50%/x").isascii()
    assert folder_name("a=%2F") != folder_name("a=/")
    base = "outputs/digits_demo"
    plain, adam = run_folder(None, base, ""), run_folder(None, base, "optimizer=adam")
    assert os.path.dirname(plain) == os.path.dirname(adam) == base  # siblings
    assert run_folder("/tmp/x", base, "optimizer=adam") == "/tmp/x"


def test_the_keys_that_change_no_number_name_no_folder():
    """Hydra's exclude_keys are NON_IDENTITY_KEYS (and the experiment, named by `name`): a rerun
    that only adds figures or workers lands in the run's own folder, not in a new one. The
    precision keys are the exception: they key the stages by what they resolve to on the device,
    and two runs asking bf16 and fp16 on a GPU compute other numbers: they name their folders."""
    from omegaconf import OmegaConf

    from calib.run.identity import REPORT_KEYS, RESOLVED_KEYS

    assert set(RESOLVED_KEYS) == {
        "finetune.amp", "source_train.amp", "calibration.pcv.finetune.amp", "eval.amp"
    }  # fmt: skip
    hydra = OmegaConf.load(CONF / "hydra" / "default.yaml")
    excluded = set(hydra.job.config.override_dirname.exclude_keys)
    assert set(REPORT_KEYS) <= set(NON_IDENTITY_KEYS)
    assert excluded == {*NON_IDENTITY_KEYS, "experiment"} - set(RESOLVED_KEYS) - set(REPORT_KEYS)


def test_hydra_run_dir_is_the_run_folder(tmp_path):
    """`calib-run run_dir=X` puts Hydra's log and config record into X, nothing elsewhere."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "x"
    cmd = [sys.executable, "-m", "experiments.run", f"run_dir={out}", "seed=abc"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert (out / ".hydra" / "config.yaml").is_file()
    assert not (tmp_path / "outputs").exists()
    output = done.stdout + done.stderr
    assert "seed must be an integer ≥ 0, got 'abc'" in output
    assert "Traceback" not in output


def test_outputs_follow_the_umask(tmp_path):
    import numpy as np

    old = os.umask(0o027)
    try:
        z = np.random.default_rng(0).normal(size=(20, 4))
        y = np.arange(20) % 2
        cal = calib.LogitBiasCalibrator("alg").fit(z, y, [0, 1])
        cal.save(tmp_path / "cal.json")
        from calib.io import atomic_save

        atomic_save(tmp_path / "w.pt", lambda fh: fh.write(b"x"))
    finally:
        os.umask(old)
    for name in ("cal.json", "w.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name


def test_run_records_hold_the_config(demo_run):
    _, results, run_dir = demo_run
    record = json.loads((run_dir / "run.json").read_text())
    assert record["identity"]["finetune.epochs"] == 1
    assert "progress" not in record["identity"] and record["config"]["progress"] is False
    stages = json.loads((run_dir / "stages.json").read_text())["stages"]
    assert set(results["meta"]["stage_keys"]) == set(stages)
    assert CONF.is_dir()
