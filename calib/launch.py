"""The rank layout a launcher (torchrun, a SLURM job) asked for, read without importing torch.

:mod:`calib.distributed` joins the process group; this module only reads the environment, so
that a command line can tell rank 0 from the others before the heavy imports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ENV_VARS", "DistributedContext", "launch_env"]

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) run.

    Attributes:
        rank: global rank, ``0 <= rank < world_size``.
        world_size: number of processes.
        local_rank: rank on this node (selects the CUDA device).
        backend: ``"nccl"``/``"gloo"`` while a process group is joined, else ``None``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """More than one process, in a joined process group."""
        return self.world_size > 1 and self.backend is not None


def _env_int(environ: Mapping[str, str], name: str) -> int:
    raw = environ[name]
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def launch_env(environ: Mapping[str, str] | None = None) -> DistributedContext:
    """The rank layout the launcher asked for, from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

    All three unset: one process. ``backend`` is always ``None`` (nothing is joined here).

    Raises:
        ValueError: some but not all of the variables are set, or their values are
            inconsistent (``rank`` outside ``[0, world_size)``, ``world_size < 1``).
    """
    environ = os.environ if environ is None else environ
    present = [name for name in ENV_VARS if name in environ]
    if not present:
        return DistributedContext()
    if len(present) != len(ENV_VARS):
        missing = [name for name in ENV_VARS if name not in environ]
        raise ValueError(
            f"torchrun sets {', '.join(ENV_VARS)}; found {', '.join(present)} but not "
            f"{', '.join(missing)}. Launch with torchrun, or unset them for one process."
        )
    rank, world, local = (_env_int(environ, name) for name in ENV_VARS)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(
            f"inconsistent launch environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}"
        )
    return DistributedContext(rank=rank, world_size=world, local_rank=local)
