"""Which samples each training epoch sees, as a pure function of (seed, epoch).

The training stream is the concatenation of shuffled passes over the dataset, pass ``k``
being ``randperm(N)`` drawn from a generator seeded by ``(seed, k)``. Epoch ``e`` of
``iters`` iterations of ``batch_size`` takes stream positions
``[e * iters * batch_size, (e + 1) * iters * batch_size)``, so every sample is drawn equally
often across epochs and the batches of epoch ``e`` never depend on what ran before: a run
resumed at epoch ``e`` sees exactly the batches an uninterrupted run sees. With
``iters=None`` an epoch is one pass (pass ``e``) in full batches: the remainder of fewer than
``batch_size`` samples is left out (other samples each epoch, as each pass is reshuffled), so
no batch is too small for BatchNorm; a dataset smaller than one batch is one batch.

In a run of ``W`` processes ``batch_size`` is the global batch: rank ``r`` takes the
``r``-th contiguous slice of ``batch_size / W`` samples of every global batch, so the union
over ranks of each global batch is the one-process batch, and averaging the ranks' gradients
(DDP) gives the one-process gradient up to the order of float additions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["derive_seed", "EpochBatchSampler", "seed_worker", "epoch_generator", "batches_per_pass"]

# Independent seed streams derived from the one config seed.
STREAM_ORDER = 0  # the shuffled passes
STREAM_WORKERS = 1  # DataLoader worker seeds (augmentation randomness in workers)
STREAM_INIT = 2  # the global RNGs at the start of a fresh run (dropout, main-process augmentation)


def derive_seed(seed: int, stream: int, index: int, rank: int = 0) -> int:
    """A 63-bit seed for item ``index`` of ``stream`` on process ``rank``.

    Statistically independent across inputs; rank 0 gets the one-process seed, so a
    one-process run and rank 0 of a multi-process run draw the same numbers.
    """
    key = (stream, index) if rank == 0 else (stream, index, rank)
    seq = np.random.SeedSequence(entropy=seed, spawn_key=key)
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def batches_per_pass(n: int, batch_size: int) -> int:
    """Batches of a one-pass epoch: ``n // batch_size`` full ones, or one when ``n < batch_size``."""
    return max(1, n // batch_size)


def epoch_generator(seed: int, stream: int, index: int, rank: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, stream, index, rank))


class EpochBatchSampler(Sampler[list[int]]):
    """Index batches of one epoch (see the module docstring).

    Args:
        n: dataset size (>= 1).
        batch_size: samples per global batch (>= 1).
        seed: the run's seed.
        epoch: 0-based epoch index.
        iters: iterations per epoch; ``None`` = one pass over the data.
        rank, world_size: this process's slice of every global batch (default: one process).

    Raises:
        ValueError: ``batch_size`` not divisible by ``world_size``, or (several processes) a
            dataset smaller than one global batch, which cannot be split evenly.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        epoch: int,
        iters: int | None,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if n < 1:
            raise ValueError("cannot train on an empty dataset")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if batch_size % world_size:
            raise ValueError(
                f"the batch size ({batch_size}) is the global batch of all {world_size} "
                f"processes and must be divisible by their number"
            )
        if world_size > 1 and n < batch_size:
            raise ValueError(
                f"the dataset ({n} samples) is smaller than one global batch ({batch_size}); "
                f"it cannot be split evenly over {world_size} processes"
            )
        self.n, self.batch_size, self.seed, self.epoch, self.iters = (
            n,
            batch_size,
            seed,
            epoch,
            iters,
        )
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        if self.iters is None:
            return batches_per_pass(self.n, self.batch_size)
        return self.iters

    def _pass(self, k: int) -> torch.Tensor:
        return torch.randperm(self.n, generator=epoch_generator(self.seed, STREAM_ORDER, k))

    def indices(self) -> torch.Tensor:
        """All sample indices of the epoch, in order (int64, length = samples drawn)."""
        if self.iters is None:
            return self._pass(self.epoch)[: len(self) * self.batch_size]
        start = self.epoch * self.iters * self.batch_size
        stop = start + self.iters * self.batch_size
        passes = [self._pass(k) for k in range(start // self.n, (stop - 1) // self.n + 1)]
        offset = (start // self.n) * self.n
        return torch.cat(passes)[start - offset : stop - offset]

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's part of each global batch (the whole batch for one process)."""
        per_rank = self.batch_size // self.world_size
        lo, hi = self.rank * per_rank, (self.rank + 1) * per_rank
        for batch in self.indices().split(self.batch_size):
            yield (batch if self.world_size == 1 else batch[lo:hi]).tolist()


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed.

    Torch seeds each worker with ``base_seed + worker_id``, ``base_seed`` drawn from the
    loader's generator (itself seeded per epoch), so augmentations are reproducible too.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 (the global RNG user code draws from)
    random.seed(seed)
