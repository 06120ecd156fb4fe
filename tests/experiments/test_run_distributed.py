"""`torchrun -m experiments.run`: the digits demo (tiny settings) on 2 gloo processes.

One run folder for both ranks (named by the overrides), written by rank 0 only, table printed
once; the same command again finds every stage done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calib.run import NON_IDENTITY_KEYS

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
TINY = [
    "source_train.epochs=1",
    "source_train.iters_per_epoch=8",  # a few DDP steps per stage: what is tested is the
    "finetune.epochs=1",  # folder, the one writer and the resume, not what is learnt
    "finetune.iters_per_epoch=4",
    "eval.every_epochs=0",
    "eval.figures=false",
    "calibration.pcv.num_splits=1",
    "device=cpu",
    "progress=false",
]


def _torchrun(cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "experiments.run", *TINY]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


@pytest.mark.slow
def test_calib_run_under_torchrun_writes_one_run_folder_once(tmp_path):
    first = _torchrun(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    run_dirs = list((tmp_path / "outputs" / "digits_demo").iterdir())
    assert len(run_dirs) == 1, run_dirs  # both ranks resolved the same folder
    run_dir = run_dirs[0]
    named = sorted(t for t in TINY if t.split("=")[0] not in NON_IDENTITY_KEYS)  # name no folder
    assert run_dir.name == ",".join(named)
    assert (run_dir / "run.log").exists() and (run_dir / "run_rank1.log").exists()
    assert (run_dir / ".hydra" / "config.yaml").exists()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["meta"]["world_size"] == 2
    assert set(results["calibrated"]) >= {"alg", "pcv", "oracle"}
    assert first.stdout.count("fine-tuned + γ (alg)") == 1  # rank 0 prints the table
    caches = {p.name: p.stat().st_mtime_ns for p in (run_dir / "extract").glob("*.pt")}
    assert "finetuned_test.pt" in caches and "pcv_split_0_heldout.pt" in caches

    again = _torchrun(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (again.stdout + again.stderr).count("run already finished") == 3  # source, ft, pcv
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "extract").glob("*.pt")} == caches
    assert json.loads((run_dir / "results.json").read_text())["calibrated"] == results["calibrated"]
