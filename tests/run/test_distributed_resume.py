"""A 2-process torchrun training killed mid-epoch resumes from its last checkpoint.

SIGKILL the whole torchrun process group once the first checkpoint exists, run the same
command again: the final weights equal, bit for bit, those of an uninterrupted 2-process run
(the model has BatchNorm and dropout; each rank's RNG state is in the checkpoint). A corrupted
checkpoint stops the rerun with an error naming the file; nothing is loaded from it. One
process can finish what two started (with a notice that its random streams differ). Only the
killed job and its rerun are torchrun jobs; the uninterrupted reference runs on 2 processes of
a gloo group (:func:`tests.helpers_distributed.run_group`), the one-process continuations in
the test's own process.

The training job is :func:`tests.helpers_train.run_resume_job` on each rank::

    python -m torch.distributed.run --nproc_per_node 2 tests/helpers_train.py \\
        RUN_DIR [--delay SECONDS_PER_SAMPLE]
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from calib.train import CheckpointError
from tests.helpers_distributed import run_group
from tests.helpers_train import RESUME_CONFIG, run_resume_job

HERE = Path(__file__).resolve().parents[1]  # tests/
TIMEOUT_S = 180
EPOCHS = RESUME_CONFIG["epochs"]


def _command(run_dir: Path, delay: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a local rendezvous on a free port: several jobs run side by side
        "--nproc_per_node",
        "2",
        "-m",  # as a module: tests/ on sys.path would let its selectors/ shadow the stdlib's
        "tests.helpers_train",
        str(run_dir),
        "--delay",
        str(delay),
    ]


def _env() -> dict[str, str]:
    root = str(HERE.parent)  # calib from this checkout, installed or not
    pythonpath = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}


def _start(run_dir: Path, delay: float) -> subprocess.Popen:
    return subprocess.Popen(
        _command(run_dir, delay),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (Linux ``/proc``)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [d for c in map(int, children) for d in (c, *_descendants(c))]


def _kill_job(launcher: subprocess.Popen) -> None:
    """SIGKILL torchrun and every rank at once, as a node failure would (torchrun puts each
    rank in its own session, so killing torchrun's process group alone would leave them)."""
    for pid in [*_descendants(launcher.pid), launcher.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)


@pytest.fixture
def jobs():
    """Started torchrun jobs; any still running when the test ends are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for job in started:
        if job.poll() is None:
            _kill_job(job)
            job.communicate()


def _uninterrupted(rank: int, world: int, run_dir: str) -> None:
    lines = run_resume_job(run_dir)
    if rank == 0:  # the one that logs
        assert sum("fine-tune epoch" in line for line in lines) == EPOCHS
        assert not any("resuming" in line for line in lines)


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_uninterrupted_weights(tmp_path, jobs):
    killed_dir, reference_dir, corrupt_dir = (tmp_path / d for d in ("killed", "ref", "corrupt"))
    last = killed_dir / "checkpoints" / "last.pt"

    # The victim sleeps 20 ms per sample (~0.4 s per epoch) to be mid-epoch when killed.
    victim = _start(killed_dir, 0.02)
    jobs.append(victim)
    deadline = time.monotonic() + TIMEOUT_S
    while not last.exists():
        assert victim.poll() is None, "torchrun exited before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    _kill_job(victim)
    victim.communicate(timeout=TIMEOUT_S)
    assert not (killed_dir / "checkpoints" / "done").exists(), "killed too late: it had finished"

    # a copy with one flipped payload byte must be refused, not loaded
    shutil.copytree(killed_dir, corrupt_dir)
    data = bytearray((corrupt_dir / "checkpoints" / "last.pt").read_bytes())
    data[-100] ^= 0xFF
    (corrupt_dir / "checkpoints" / "last.pt").write_bytes(bytes(data))
    # the same checkpoint resumed by one process (e.g. a requeued job that got fewer GPUs)
    shrunk_dir = tmp_path / "shrunk"
    shutil.copytree(killed_dir, shrunk_dir)

    rerun = _start(killed_dir, 0.0)
    jobs.append(rerun)
    # while torchrun resumes, the two one-process cases run here
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        run_resume_job(corrupt_dir)
    assert not (corrupt_dir / "checkpoints" / "final.pt").exists()
    shrunk_log = run_resume_job(shrunk_dir)
    # the uninterrupted 2-process reference: the same job on a gloo group of 2 processes
    run_group(_uninterrupted, 2, str(reference_dir))

    out, _ = rerun.communicate(timeout=TIMEOUT_S)
    assert rerun.returncode == 0, out
    resumed = [line for line in out.splitlines() if "resuming from epoch" in line]
    assert len(resumed) == 1, out  # logged once: by rank 0
    k = int(resumed[0].split("resuming from epoch ")[1].split("/")[0])
    assert 1 <= k < EPOCHS
    assert out.count("fine-tune epoch") == EPOCHS - k  # only the missing epochs were trained

    assert (reference_dir / "checkpoints" / "done").exists()

    got, expected = _final_weights(killed_dir), _final_weights(reference_dir)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key

    assert any("written by a run of 2 process(es), resumed with 1" in x for x in shrunk_log)
    assert sum("fine-tune epoch" in line for line in shrunk_log) == EPOCHS - k
    assert (shrunk_dir / "checkpoints" / "done").exists()
