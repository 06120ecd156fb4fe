"""Run a test function on W processes, alone or joined in a gloo group as torchrun starts them.

The processes come from a multiprocessing *forkserver*: one clean server process per test
process imports torch and calib once, and each group member is forked from it. With the spawn
method every member imported them afresh (seconds per member: the distributed tests spent most
of their time importing). The server never computes, so the forked members start from a
single-threaded process with nothing initialised but the imports; each member then joins the
group through the same environment variables torchrun sets. The members inherit the
environment the server started with (at the first call of the test process), not the caller's
current one: what a member needs from it, it must be given as an argument.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from calib import distributed

#: Imported once by the forkserver, inherited by every group member (``torch._dynamo``: torch's
#: first optimizer imports it, seconds per process).
PRELOAD = [
    "torch",
    "torch._dynamo",
    "numpy",
    "pytest",
    "calib.distributed",
    "calib.extract",
    "calib.run",
    "calib.train",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the group's rendezvous port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(fn, n: int, *args) -> None:
    """Run ``fn(i, *args)`` for i = 0..n-1, each in its own process, all at once.

    ``fn`` must be importable (a module-level function). An exception in any process fails the
    call with that process's traceback.
    """
    mp.set_forkserver_preload(PRELOAD)
    mp.start_processes(fn, args=args, nprocs=n, join=True, start_method="forkserver")


def run_group(fn, world: int, *args, timeout=None) -> None:
    """Run ``fn(rank, world, *args)`` on ``world`` processes joined in one gloo group
    (``timeout``: the group's, a ``datetime.timedelta``; None = calib's default)."""
    run_processes(_member, world, fn, world, free_port(), timeout, *args)


def _member(rank: int, fn, world: int, port: int, timeout, *args) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    with distributed.distributed_context("cpu", timeout=timeout) as ctx:
        assert ctx.is_distributed and ctx.backend == "gloo" and ctx.rank == rank
        fn(rank, world, *args)
