"""A tiny model, synthetic data and a training script for the ``calib.train`` tests.

Run as a script (the kill-and-resume tests do, alone or under torchrun)::

    python tests/helpers_train.py RUN_DIR [--delay SECONDS_PER_SAMPLE]

It runs :func:`run_resume_job`: :func:`make_model` trained on :func:`make_dataset` with
:data:`RESUME_CONFIG`, one line printed per epoch, leaving ``RUN_DIR/checkpoints/final.pt``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from calib.train import TrainConfig, train

N_FEATURES, N_CLASSES = 8, 5


class TinyNet(nn.Module):
    """``backbone`` (Linear, BatchNorm, ReLU, Dropout) then ``head`` (Linear over all classes)."""

    def __init__(self, n_features: int = N_FEATURES, n_classes: int = N_CLASSES, hidden: int = 16):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(n_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2)
        )
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def make_model(seed: int = 0, **kwargs) -> TinyNet:
    """A :class:`TinyNet` initialised from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TinyNet(**kwargs)


def make_dataset(n: int = 64, seed: int = 0) -> TensorDataset:
    """``n`` Gaussian points whose label is the argmax of a fixed random linear map (learnable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=g)
    w = torch.randn(N_FEATURES, N_CLASSES, generator=g)
    return TensorDataset(x, (x @ w).argmax(1))


class SlowDataset(Dataset):
    """Wraps a dataset, sleeping ``delay`` seconds per item (to give a test time to act)."""

    def __init__(self, base: Dataset, delay: float) -> None:
        self.base, self.delay = base, delay

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        time.sleep(self.delay)
        return self.base[i]


# Crosses pass boundaries (4 x 8 = 32 samples per epoch of 48), momentum, warm-up, dropout, BN.
RESUME_CONFIG = dict(
    optimizer="sgd",
    lr=0.05,
    lr_head=0.1,
    epochs=6,
    iters_per_epoch=4,
    batch_size=8,
    warmup_iters=3,
    seed=7,
)


def run_resume_job(run_dir, delay: float = 0.0, log=None) -> list[str]:
    """Train the resume tests' job into ``run_dir`` on one thread, on the processes of the
    current launch (one when called from a test; every rank under torchrun); each rank sleeps
    ``delay`` seconds per sample. Returns the logged lines, also passed to ``log``."""
    from calib.distributed import distributed_context

    lines: list[str] = []

    def record(line: str) -> None:
        lines.append(line)
        if log is not None:
            log(line)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with distributed_context("cpu"):  # global batch 8: 4 per rank on 2 processes
            train(
                make_model(),
                SlowDataset(make_dataset(48), delay),
                TrainConfig(**RESUME_CONFIG),
                run_dir=run_dir,
                progress=False,
                log=record,
            )
    finally:
        torch.set_num_threads(threads)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    run_resume_job(args.run_dir, args.delay, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
