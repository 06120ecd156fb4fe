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


def derive_seed(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for item ``index`` of ``stream``, statistically independent across inputs."""
    seq = np.random.SeedSequence(entropy=seed, spawn_key=(stream, index))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def batches_per_pass(n: int, batch_size: int) -> int:
    """Batches of a one-pass epoch: ``n // batch_size`` full ones, or one when ``n < batch_size``."""
    return max(1, n // batch_size)


def epoch_generator(seed: int, stream: int, index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, stream, index))


class EpochBatchSampler(Sampler[list[int]]):
    """Index batches of one epoch (see the module docstring).

    Args:
        n: dataset size (>= 1).
        batch_size: samples per batch (>= 1).
        seed: the run's seed.
        epoch: 0-based epoch index.
        iters: iterations per epoch; ``None`` = one pass over the data.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, iters: int | None) -> None:
        if n < 1:
            raise ValueError("cannot train on an empty dataset")
        self.n, self.batch_size, self.seed, self.epoch, self.iters = (
            n,
            batch_size,
            seed,
            epoch,
            iters,
        )

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
        yield from (chunk.tolist() for chunk in self.indices().split(self.batch_size))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed.

    Torch seeds each worker with ``base_seed + worker_id``, ``base_seed`` drawn from the
    loader's generator (itself seeded per epoch), so augmentations are reproducible too.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 (the global RNG user code draws from)
    random.seed(seed)
