"""Kill -9 a training process after its first checkpoint, restart it: same final weights, bit for bit.

The restart and the uninterrupted reference run in the test's own process (a resume must not
depend on the state a fresh process starts with).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers_train import RESUME_CONFIG, run_resume_job

SCRIPT = Path(__file__).resolve().parents[1] / "helpers_train.py"
TIMEOUT_S = 120


def _command(run_dir: Path, delay: float) -> list[str]:
    # as a module: run as a script, tests/ would lead sys.path and its selectors/ (the tests of
    # calib.selectors) would shadow the standard library's selectors
    return [sys.executable, "-m", "tests.helpers_train", str(run_dir), "--delay", str(delay)]


def _env() -> dict[str, str]:
    # helpers_train imports calib from this checkout whether or not it is installed
    root = str(SCRIPT.parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)


@pytest.mark.slow
def test_sigkill_after_first_checkpoint_then_rerun_matches_uninterrupted_run(tmp_path):
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    last = killed_dir / "checkpoints" / "last.pt"

    # Only the victim needs a process of its own; it sleeps 10 ms per sample (~0.3 s per
    # epoch) so that it is still training when its first checkpoint appears. The rerun and
    # the uninterrupted reference run in the test's process.
    victim = subprocess.Popen(
        _command(killed_dir, 0.01), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not last.exists():
            assert victim.poll() is None, "the training process exited before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(TIMEOUT_S)
    assert not (killed_dir / "checkpoints" / "done").exists(), (
        "killed too late: the run had finished"
    )

    rerun = run_resume_job(killed_dir)
    resumed = [line for line in rerun if "resuming from epoch" in line]
    assert len(resumed) == 1, rerun
    k = int(resumed[0].split("resuming from epoch ")[1].split("/")[0])
    epochs = RESUME_CONFIG["epochs"]
    assert 1 <= k < epochs
    assert sum("fine-tune epoch" in line for line in rerun) == epochs - k  # only the missing ones

    reference = run_resume_job(reference_dir)
    assert not any("resuming" in line for line in reference)

    got, expected = _final_weights(killed_dir), _final_weights(reference_dir)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
