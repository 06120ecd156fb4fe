"""Kill -9 a training process after its first checkpoint, restart it: same final weights, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("helpers_train.py")
TIMEOUT_S = 120


def _command(run_dir: Path, delay: float) -> list[str]:
    return [sys.executable, str(SCRIPT), str(run_dir), "--delay", str(delay)]


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

    # The reference runs at full speed alongside; the victim sleeps 10 ms per sample
    # (~0.3 s per epoch) so that it is still training when its first checkpoint appears.
    reference = subprocess.Popen(
        _command(reference_dir, 0.0),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    victim = subprocess.Popen(
        _command(killed_dir, 0.01), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not last.exists():
        assert victim.poll() is None, "the training process exited before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(TIMEOUT_S)
    assert not (killed_dir / "checkpoints" / "done").exists(), (
        "killed too late: the run had finished"
    )

    rerun = subprocess.run(
        _command(killed_dir, 0.0), env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    resumed = [line for line in rerun.stdout.splitlines() if "resuming from epoch" in line]
    assert len(resumed) == 1, rerun.stdout
    k = int(resumed[0].split("resuming from epoch ")[1].split("/")[0])
    assert 1 <= k < 6
    assert rerun.stdout.count("fine-tune epoch") == 6 - k  # only the missing epochs were trained

    out, _ = reference.communicate(timeout=TIMEOUT_S)
    assert reference.returncode == 0, out
    assert "resuming" not in out

    got, expected = _final_weights(killed_dir), _final_weights(reference_dir)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
