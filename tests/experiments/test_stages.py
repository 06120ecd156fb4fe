"""calib-run with `sequence.stages`: a sequence of fine-tunings from the command line, a user's
mistake answered with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_run import TINY

REPO = Path(__file__).resolve().parents[2]


def _stages(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "calib.experiments.run", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_shrinking_stages_are_refused_in_one_line_before_any_work(tmp_path):
    done = _stages(
        "experiment=digits_stages", "sequence.stages=[[0,1,2],[0,1]]", f"run_dir={tmp_path / 'run'}"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "sequence.stages[1] = [0, 1] drops class(es) [2]" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "stage_1").exists()


@pytest.mark.slow
def test_the_digits_stages_experiment_runs_every_stage(tmp_path):
    done = _stages(
        "experiment=digits_stages", *TINY, "eval.every_epochs=0", "sequence.stages=[[0,1],[0,1,2]]",
        f"run_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "run" / "sequence.json").read_text())
    assert [s["classes"] for s in record["stages"]] == [[0, 1], [0, 1, 2]]
    assert all(s["results"] is not None for s in record["stages"])
    assert "## stage 2: S = [0, 1, 2]" in (tmp_path / "run" / "sequence.md").read_text()
