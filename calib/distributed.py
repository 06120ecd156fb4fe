"""torch.distributed for calib: one process per device, launched by ``torchrun``.

calib uses the existing engines: ``torchrun`` starts the processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (NCCL on CUDA, gloo on the
CPU). Without those variables, or with ``WORLD_SIZE=1``, everything here is a no-op and the
code runs as one ordinary process::

    torchrun --nproc_per_node 4 -m calib.experiments.run experiment=imagenet_r

    with distributed_context("auto") as ctx:          # joins the group, leaves it at exit
        result = train(model, dataset, config)        # DDP over ctx.world_size processes
        out = extract(model, extraction_loader(test_set, batch_size=256))  # sharded, gathered
        if ctx.is_main:
            ...write files...

The rest of calib reads the current :func:`context`: :func:`calib.train.train` wraps the
model in ``DistributedDataParallel`` and gives each rank its part of every global batch;
:func:`calib.extract.extract` gathers the shards of a :class:`ShardSampler` back into dataset
order. Only rank 0 writes files; :func:`barrier` orders a write by rank 0 before reads by the
others. Multi-node runs need ``run_dir`` on a file system that all nodes share.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from calib.launch import DistributedContext, launch_env

__all__ = [
    "DEFAULT_TIMEOUT",
    "DistributedContext",
    "ShardSampler",
    "all_gather_object",
    "all_gather_rows",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "context",
    "distributed_context",
    "init_distributed",
    "interleave_shards",
    "is_main",
    "launch_env",
    "local_device",
    "process_group_timeout",
]

#: How long a collective waits for the other ranks unless told otherwise: an hour, not NCCL's
#: 10 minutes, since a rank may wait at a barrier while rank 0 waits for a shared source model
#: that another job is training (:class:`calib.run.source_cache.SourceCache`).
DEFAULT_TIMEOUT = datetime.timedelta(minutes=60)


def context() -> DistributedContext:
    """The current context: the joined process group's, else one process.

    Raises:
        RuntimeError: the launcher started several processes (``WORLD_SIZE > 1``) but this one
            has not joined the group: each would silently train on all the data alone.
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            backend=str(dist.get_backend()),
        )
    env = launch_env()
    if env.world_size > 1:
        raise RuntimeError(
            f"this process was launched as rank {env.rank} of {env.world_size} (torchrun) but "
            "has not joined the process group; call calib.distributed.init_distributed() or "
            "wrap the job in calib.distributed.distributed_context() first"
        )
    return env


def is_main() -> bool:
    """True on rank 0 (and in a one-process run).

    Never raises: before the group is joined, the rank is the one ``torchrun`` assigned.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return launch_env().is_main


def local_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device this process should use.

    ``None``/``"auto"``: CUDA when available, else the CPU. On CUDA without an index
    (``"auto"``, ``"cuda"``) a multi-process run gives each process ``cuda:LOCAL_RANK``. An
    explicit index is kept in one process; in several it must be this process's
    ``LOCAL_RANK`` (what ``"cuda"`` resolves to).

    Raises:
        ValueError: an explicit CUDA index other than ``LOCAL_RANK`` in a multi-process run
            (``device=cuda:0`` under ``torchrun`` would put every rank on GPU 0).
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type != "cuda":
        return device
    env = launch_env()
    if env.world_size == 1:
        return device
    if device.index is None:
        return torch.device("cuda", env.local_rank)
    if device.index != env.local_rank:
        raise ValueError(
            f"device={device}: this run has {env.world_size} processes (torchrun) and this one, "
            f"rank {env.rank}, has its own GPU cuda:{env.local_rank} (LOCAL_RANK); an explicit "
            "index would put every rank on the same GPU. Use device=cuda (or auto): each "
            "process then takes cuda:LOCAL_RANK (choose the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    return device


def init_distributed(
    device: str | torch.device | None = "auto",
    backend: str | None = None,
    timeout: datetime.timedelta | None = None,
) -> DistributedContext:
    """Join the process group that ``torchrun`` describes; a no-op for one process.

    Args:
        device: the device this process computes on (see :func:`local_device`); picks the
            backend and, on CUDA, becomes the current device.
        backend: ``None`` = ``"nccl"`` for CUDA devices, ``"gloo"`` otherwise.
        timeout: how long a collective waits for the other ranks; ``None`` =
            :data:`DEFAULT_TIMEOUT` (an hour; torch's own default for NCCL is 10 minutes).

    Returns:
        The context; already joined groups are reused, not re-initialised.
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not isinstance(timeout, datetime.timedelta) or timeout <= datetime.timedelta(0):
        raise ValueError(f"timeout must be a positive datetime.timedelta, got {timeout!r}")
    if dist.is_available() and dist.is_initialized():
        return context()
    env = launch_env()
    if env.world_size == 1:
        return env
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; cannot run several ranks")
    device = local_device(device)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"rank {env.rank} wants {device} but this node has {torch.cuda.device_count()} "
                "CUDA devices; start at most that many processes per node (--nproc_per_node)"
            )
        torch.cuda.set_device(device)
    options: dict[str, Any] = {"backend": backend, "init_method": "env://", "timeout": timeout}
    if backend == "nccl" and device.index is not None:
        options["device_id"] = device
    dist.init_process_group(rank=env.rank, world_size=env.world_size, **options)
    return context()


@contextlib.contextmanager
def distributed_context(
    device: str | torch.device | None = "auto",
    backend: str | None = None,
    timeout: datetime.timedelta | None = None,
) -> Iterator[DistributedContext]:
    """:func:`init_distributed` for a ``with`` block; leaves the group at exit if it joined it."""
    joined_here = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(device, backend, timeout)
    try:
        yield ctx
    finally:
        if joined_here and ctx.is_distributed and dist.is_initialized():
            dist.destroy_process_group()


def process_group_timeout() -> datetime.timedelta | None:
    """How long a collective of the joined process group waits for the other ranks (the
    timeout it was created with); ``None`` without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = dist.distributed_c10d._get_default_group()
    return group._get_backend(_comm_device()).options._timeout


def _comm_device() -> torch.device:
    """Where collective buffers must live: the current CUDA device for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if context().is_distributed:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_buffers(module: Any, src: int = 0) -> None:
    """Rank ``src``'s buffers of ``module`` (an ``nn.Module``: BatchNorm running statistics,
    ...) copied in place into every rank's; a no-op in one process. Every rank must call it."""
    if not context().is_distributed:
        return
    for buffer in module.buffers():
        sent = buffer.detach().to(_comm_device(), copy=True)
        dist.broadcast(sent, src=src)
        with torch.no_grad():
            buffer.copy_(sent.to(buffer.device))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over ranks, on ``tensor``'s device (a new tensor)."""
    if not context().is_distributed:
        return tensor.clone()
    buffer = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(tensor.device)


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (picklable objects)."""
    ctx = context()
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(tensor: torch.Tensor | None) -> list[torch.Tensor]:
    """Every rank's tensor, on every rank, when their first dimensions differ.

    Args:
        tensor: ``(n_r, *trailing)``; trailing shape and dtype equal on all ranks. ``None``
            for a rank that has no rows and does not know the trailing shape (an empty shard):
            it receives the others' tensors and contributes an empty one.

    Returns:
        ``world_size`` tensors, entry ``r`` of shape ``(n_r, *trailing)``, on the device of
        the given tensor (the CPU for ``None``).

    Raises:
        ValueError: ranks disagree on trailing shape or dtype, or every rank passed ``None``.
    """
    if not context().is_distributed:
        if tensor is None:
            raise ValueError("all_gather_rows: no rank has a tensor")
        return [tensor]
    meta = (None, None) if tensor is None else (tuple(tensor.shape), str(tensor.dtype))
    metas = all_gather_object(meta)
    known = {(shape[1:], dtype) for shape, dtype in metas if shape is not None}
    if not known:
        raise ValueError("all_gather_rows: no rank has a tensor")
    if len(known) > 1:
        raise ValueError(f"all_gather_rows: ranks disagree on trailing shape/dtype: {metas}")
    trailing, dtype_name = known.pop()
    dtype = getattr(torch, dtype_name.removeprefix("torch."))
    rows = [0 if shape is None else shape[0] for shape, _ in metas]
    comm = _comm_device()
    out_device = torch.device("cpu") if tensor is None else tensor.device
    local = torch.empty((0, *trailing), dtype=dtype) if tensor is None else tensor
    padded = torch.zeros((max(rows), *trailing), dtype=dtype, device=comm)
    padded[: local.shape[0]] = local.detach().to(comm)
    buffers = [torch.empty_like(padded) for _ in rows]
    dist.all_gather(buffers, padded)
    return [buf[:n].to(out_device) for buf, n in zip(buffers, rows, strict=True)]


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``W`` gets indices ``r, r + W, r + 2W, ...`` of ``range(n)``: no padding.

    Unlike ``torch.utils.data.DistributedSampler`` no index is repeated to even out the
    shards, so the union of the shards is ``range(n)`` exactly once, and
    :func:`interleave_shards` restores dataset order. Shards differ in length by at most one.

    Args:
        n: dataset size (>= 0).
        rank, world_size: default: this process's, from :func:`context`.
    """

    def __init__(self, n: int, rank: int | None = None, world_size: int | None = None) -> None:
        if rank is None or world_size is None:
            ctx = context()
            rank = ctx.rank if rank is None else rank
            world_size = ctx.world_size if world_size is None else world_size
        if n < 0 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"ShardSampler needs n >= 0 and 0 <= rank < world_size; got "
                f"n={n}, rank={rank}, world_size={world_size}"
            )
        self.n, self.rank, self.world_size = int(n), int(rank), int(world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


def interleave_shards(parts: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """Undo :class:`ShardSampler`: row ``j`` of ``parts[r]`` goes to row ``r + j * W``.

    Args:
        parts: ``W`` tensors ``(n_r, *trailing)``, ``n_r = len(range(r, n, W))``.
        n: total rows.

    Returns:
        ``(n, *trailing)`` in dataset order, on the device of ``parts[0]``.

    Raises:
        ValueError: a part does not have its shard's length (duplicates or gaps).
    """
    world = len(parts)
    if world < 1:
        raise ValueError("interleave_shards needs at least one part")
    for r, part in enumerate(parts):
        expected = len(range(r, n, world))
        if part.shape[0] != expected:
            raise ValueError(
                f"shard {r} of {world} has {part.shape[0]} rows; a ShardSampler over {n} "
                f"samples gives it {expected}"
            )
    out = torch.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype, device=parts[0].device)
    for r, part in enumerate(parts):
        out[r::world] = part.to(out.device)
    return out
