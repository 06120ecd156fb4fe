"""Finished source models, shared by every run with the same source settings.

A sweep of 7 optimizers over one experiment needs its source model once, not 7 times. The
source stage's key (:mod:`calib.run.identity`: model, source data, source training settings,
seed) names a folder of the cache, ``<cache_dir>/source/<key>/``, where the model is trained
(resumably, by :func:`calib.train.train`) and kept. Processes that reach the same entry at
once — SLURM array tasks, parallel sweep jobs — take an exclusive lock on it (``fcntl.flock``,
released by the OS if its holder dies): one trains, the others wait and then load the finished
weights. Under ``torchrun`` rank 0 holds the lock for its job while every rank trains.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from calib import distributed
from calib.io import atomic_write_json
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
    def hold(self, stage: Stage) -> Iterator[Path]:
        """Lock ``stage``'s entry for this job (rank 0 locks; all ranks wait for it)."""
        path = self.entry(stage)
        fh = None
        if distributed.is_main():
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path / "stage.json", {"key": stage.key, "identity": stage.identity})
            fh = open(path / ".lock", "a+")  # noqa: SIM115 (held across the yield)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("source model %s is being trained by another process; waiting", path)
                fcntl.flock(fh, fcntl.LOCK_EX)
        distributed.barrier()
        try:
            yield path
        finally:
            distributed.barrier()
            if fh is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
