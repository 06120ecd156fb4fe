"""A 2-process torchrun training killed mid-epoch resumes from its last checkpoint.

SIGKILL the whole torchrun process group once the first checkpoint exists, run the same
command again: the final weights equal, bit for bit, those of an uninterrupted 2-process run
(the model has BatchNorm and dropout; each rank's RNG state is in the checkpoint). A corrupted
checkpoint stops the rerun with an error naming the file; nothing is loaded from it. One
process can finish what two started (with a notice that its random streams differ).

Run as a script under torchrun, this file is the training job itself::

    python -m torch.distributed.run --nproc_per_node 2 tests/test_distributed_resume.py \\
        RUN_DIR [--delay SECONDS_PER_SAMPLE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 180
EPOCHS = 6


def _command(run_dir: Path, delay: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a local rendezvous on a free port: several jobs run side by side
        "--nproc_per_node",
        "2",
        str(Path(__file__).resolve()),
        str(run_dir),
        "--delay",
        str(delay),
    ]


def _env() -> dict[str, str]:
    root = str(HERE.parent)  # calib from this checkout, installed or not
    pythonpath = os.pathsep.join([root, str(HERE), os.environ.get("PYTHONPATH", "")])
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


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_uninterrupted_weights(tmp_path, jobs):
    killed_dir, reference_dir, corrupt_dir = (tmp_path / d for d in ("killed", "ref", "corrupt"))
    last = killed_dir / "checkpoints" / "last.pt"

    # The victim sleeps 20 ms per sample (~0.4 s per epoch) to be mid-epoch when killed.
    reference = _start(reference_dir, 0.0)
    victim = _start(killed_dir, 0.02)
    jobs += [reference, victim]
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
    shrunk = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(shrunk_dir)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    rerun, corrupt = _start(killed_dir, 0.0), _start(corrupt_dir, 0.0)
    jobs += [shrunk, rerun, corrupt]
    out, _ = rerun.communicate(timeout=TIMEOUT_S)
    assert rerun.returncode == 0, out
    resumed = [line for line in out.splitlines() if "resuming from epoch" in line]
    assert len(resumed) == 1, out  # logged once: by rank 0
    k = int(resumed[0].split("resuming from epoch ")[1].split("/")[0])
    assert 1 <= k < EPOCHS
    assert out.count("fine-tune epoch") == EPOCHS - k  # only the missing epochs were trained

    out_ref, _ = reference.communicate(timeout=TIMEOUT_S)
    assert reference.returncode == 0, out_ref
    assert "resuming" not in out_ref and out_ref.count("fine-tune epoch") == EPOCHS

    got, expected = _final_weights(killed_dir), _final_weights(reference_dir)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key

    out_corrupt, _ = corrupt.communicate(timeout=TIMEOUT_S)
    assert corrupt.returncode != 0, out_corrupt
    assert "CheckpointError" in out_corrupt and "SHA-256 mismatch" in out_corrupt, out_corrupt
    assert not (corrupt_dir / "checkpoints" / "final.pt").exists()

    out_shrunk, _ = shrunk.communicate(timeout=TIMEOUT_S)
    assert shrunk.returncode == 0, out_shrunk
    assert "written by a run of 2 process(es), resumed with 1" in out_shrunk, out_shrunk
    assert out_shrunk.count("fine-tune epoch") == EPOCHS - k
    assert (shrunk_dir / "checkpoints" / "done").exists()


def main(argv: list[str] | None = None) -> None:
    from calib.distributed import distributed_context
    from calib.train import TrainConfig, train
    from tests.helpers_train import RESUME_CONFIG, SlowDataset, make_dataset, make_model

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = TrainConfig(**{**RESUME_CONFIG, "epochs": EPOCHS})  # global batch 8: 4 per rank
    with distributed_context("cpu"):
        train(
            make_model(),
            SlowDataset(make_dataset(48), args.delay),
            config,
            run_dir=args.run_dir,
            progress=False,
            log=lambda line: print(line, flush=True),
        )


if __name__ == "__main__":
    main()
