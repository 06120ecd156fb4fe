"""The main job end to end: Hydra config -> plan -> run dir, checked against recomputation."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import calib
from calib.io import json_safe
from calib.run import build_plan
from tests.helpers_paper import CONF
from tests.helpers_run import TINY, tiny_config


def test_demo_writes_every_output(demo_run):
    plan, results, run_dir = demo_run
    for name in ("results.json", "results.csv", "results.md", "curve.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert set(on_disk) == {
        "pretrained",
        "finetuned",
        "calibrated",
        "probability",
        "premise",
        "classes",
        "meta",
    }
    assert list(on_disk["calibrated"]) == ["alg", "pcv", "prior", "oracle"]
    for metrics in [on_disk["pretrained"], on_disk["finetuned"], *on_disk["calibrated"].values()]:
        for key in ("acc_all", "acc_seen", "acc_absent", "hmean", "ausuc", "ncm_acc_all"):
            assert 0.0 <= metrics[key] <= 1.0, key
    rows = (run_dir / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # header + one row
    assert "calibrated.alg.gamma" in rows[0].split(",")


def test_demo_numbers_match_recomputation(demo_run):
    """Every reported number is recomputed from the saved logits and calibrators."""
    plan, results, run_dir = demo_run
    seen, absent = plan.split.seen, plan.split.absent
    test = torch.load(run_dir / "extract" / "finetuned_test.pt", weights_only=True)
    logits, labels = test["logits"].numpy(), test["labels"].numpy()
    ft = calib.accuracy_report(logits, labels, seen, absent)
    assert results["finetuned"]["acc_all"] == pytest.approx(ft["acc_all"], abs=1e-12)
    assert results["finetuned"]["ausuc"] == pytest.approx(
        calib.ausuc(logits, labels, seen, absent), abs=1e-12
    )
    for name, metrics in results["calibrated"].items():
        cal = calib.LogitBiasCalibrator.load(run_dir / "calibrators" / f"{name}.json")
        assert cal.gamma_ == metrics["gamma"]
        report = calib.accuracy_report(logits, labels, seen, absent, gamma=cal.gamma_)
        for key in ("acc_all", "acc_seen", "acc_absent", "hmean"):
            assert metrics[key] == pytest.approx(report[key], abs=1e-12), (name, key)
        # the saved calibrator's predictions give the same accuracy
        assert np.mean(cal.predict(logits) == labels) == pytest.approx(
            metrics["acc_all"], abs=1e-12
        )


def test_alg_sees_only_seen_training_samples(demo_run):
    plan, results, run_dir = demo_run
    train = torch.load(run_dir / "extract" / "finetuned_train.pt", weights_only=True)
    in_seen = np.isin(train["labels"].numpy(), plan.split.seen)
    assert not in_seen.all()  # the target train set has U samples (used by NCM only) ...
    refit = calib.LogitBiasCalibrator("alg").fit(
        train["logits"].numpy()[in_seen],
        train["labels"].numpy()[in_seen],
        plan.split.seen,
        plan.split.absent,
    )
    assert refit.gamma_ == results["calibrated"]["alg"]["gamma"]  # ... which ALG never sees


def test_rerun_resumes_without_retraining(demo_copy, capsys):
    plan, results, run_dir = demo_copy
    stamp = os.path.getmtime(run_dir / "finetune" / "checkpoints" / "final.pt")
    again = dataclasses.replace(plan, run_dir=run_dir).run()
    assert os.path.getmtime(run_dir / "finetune" / "checkpoints" / "final.pt") == stamp
    assert json.dumps(again, default=str) == json.dumps(results, default=str)
    assert "fine-tuned + γ (alg)" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_and_collation(tmp_path, capsys):
    """`calib-run -m optimizer=...` on the demo, then `calib-collate` over the multirun folder."""
    from experiments.collate import main as collate_main

    sweep = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        "-m",
        "optimizer=sgd,adam",
        "progress=false",
        "source_train.epochs=1",
        "source_train.iters_per_epoch=8",
        "finetune.epochs=1",
        "finetune.iters_per_epoch=4",
        "eval.figures=false",  # calib-collate's sweep figures are the ones checked here
        "calibration=default",
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(
        cmd, cwd=CONF.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent.name for p in sweep.rglob("results.json"))
    assert len(runs) == 2 and "optimizer=adam" in runs[0] and "optimizer=sgd" in runs[1], runs
    capsys.readouterr()
    collate_main([str(sweep)])  # calib-collate's entry point
    printed = capsys.readouterr().out
    assert f"2 run(s) in {sweep}, swept: optimizer" in printed
    assert "Mean ± sample std over seeds, 2 group(s)" in printed
    long_csv = (sweep / "collated.csv").read_text().splitlines()
    assert len(long_csv) == 1 + 2 * 5  # header, 2 runs x 5 variants
    assert long_csv[1].startswith("optimizer=adam,")  # the short label: the swept key only
    groups_csv = (sweep / "collated_groups.csv").read_text().splitlines()
    assert len(groups_csv) == 1 + 2 * 5 and groups_csv[1].startswith("optimizer=adam,")
    figures = sorted(p.name for p in (sweep / "figures").iterdir())
    assert figures == ["sweep.png", "sweep_acc_absent_vs_epoch.png", "sweep_ausuc_vs_epoch.png"]
    sgd = json.loads((sweep / "digits_demo" / runs[1] / "results.json").read_text())
    assert f"{100 * sgd['finetuned']['ausuc']:.1f}" in printed


@pytest.mark.slow
def test_calib_run_killed_and_rerun_matches_uninterrupted(demo_run, tmp_path):
    """SIGKILL `calib-run` mid-run, run the same settings again: the uninterrupted results."""
    import signal
    import time

    _, want, _ = demo_run
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "experiments.run", *TINY, f"run_dir={killed}"]
    log = tmp_path / "killed.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(command, cwd=CONF.parent, env=env, stdout=fh, stderr=fh)
    marker = killed / "finetune" / "checkpoints" / "done"  # then 4 extractions and 2 PCV runs
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, (
        f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    trained = {p: p.stat().st_mtime_ns for p in (killed / "finetune" / "checkpoints").iterdir()}

    # the rerun, from Python in this process, takes over the stages that the command finished
    build_plan(tiny_config(), run_dir=killed).run()
    assert {p: p.stat().st_mtime_ns for p in trained} == trained  # fine-tuning not redone
    got = json.loads((killed / "results.json").read_text())
    for key in ("pretrained", "finetuned", "calibrated"):
        assert got[key] == json_safe(want[key]), key
