"""Finished source models, shared by every run with the same source settings.

A sweep of 7 optimizers over one experiment needs its source model once, not 7 times. The
source stage's key (:mod:`calib.run.identity`: model, source data, source training settings,
seed) names a folder of the cache, ``<cache_dir>/source/<key>/``, where the model is trained
(resumably, by :func:`calib.train.train`) and kept. Processes that reach the same entry at
once — SLURM array tasks, parallel sweep jobs — take an exclusive lock on it (``fcntl.flock``,
released by the OS if its holder dies): one trains, the others wait and then load the finished
weights. Under ``torchrun`` rank 0 holds the lock for its job while every rank trains.

While rank 0 waits for the lock (another job may be training that source model for hours), the
other ranks of its job wait too, each on the file system, not in a collective: a barrier would
fail after the process group's timeout (NCCL's default is 10 minutes). Rank 0 writes its job's
token into the entry once it holds the lock; the others poll for that token, then all meet.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from calib import distributed
from calib.io import atomic_write_json, atomic_write_text
from calib.run.stages import Stage

__all__ = ["SourceCache"]

log = logging.getLogger(__name__)


class SourceCache:
    """The content-addressed source models under ``root`` (``root/source/<key>/``)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def entry(self, stage: Stage) -> Path:
        """The folder of ``stage``'s source model (its training ``run_dir``)."""
        return self.root / "source" / stage.key

    @contextlib.contextmanager
    def hold(self, stage: Stage, poll_s: float = 1.0) -> Iterator[Path]:
        """Lock ``stage``'s entry for this job (rank 0 locks; every rank waits for it on the
        file system, polling every ``poll_s`` seconds, with no collective pending)."""
        path = self.entry(stage)
        holder = path / ".holder"
        fh = None
        # one token per job and entry, agreed on before anyone waits (a quick collective)
        token = distributed.all_gather_object(uuid.uuid4().hex)[0]
        if distributed.is_main():
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path / "stage.json", {"key": stage.key, "identity": stage.identity})
            fh = open(path / ".lock", "a+")  # noqa: SIM115 (held across the yield)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("source model %s is being trained by another process; waiting", path)
                fcntl.flock(fh, fcntl.LOCK_EX)
            atomic_write_text(holder, token)
        elif distributed.context().is_distributed:
            _wait_for(holder, token, poll_s)
        distributed.barrier()
        try:
            yield path
        finally:
            distributed.barrier()
            if fh is not None:
                holder.unlink(missing_ok=True)
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()


def _wait_for(holder: Path, token: str, poll_s: float) -> None:
    """Until ``holder`` holds ``token``: this job's rank 0 has the entry's lock."""
    while True:
        try:
            if holder.read_text(encoding="utf-8") == token:
                return
        except FileNotFoundError:
            pass
        time.sleep(poll_s)
