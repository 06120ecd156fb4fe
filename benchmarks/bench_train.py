"""Training throughput of ``calib.train.train`` against a plain PyTorch loop (same model, batch).

    python benchmarks/bench_train.py                      # small CNN, 28x28 inputs, CPU
    python benchmarks/bench_train.py --iters 100 --batch-size 128 --threads 2 --device cuda

Both loops do the same work per iteration: forward, cross-entropy, backward, SGD (Nesterov)
step, cosine scheduler step. ``train`` adds its per-epoch sampler, label checks and loss /
accuracy statistics, and (with ``--run-dir``) an atomic checkpoint per epoch plus the final
weights: a fixed cost per epoch, small against the paper's 500-iteration epochs. The figure is
the best images/s over ``--repeat`` runs, setup included; the ratio is train / plain (1.0 = no
overhead). Measured on 2 shared CPU cores: ratio 1.00 without checkpoints, 0.87 with them at
40 iterations per epoch.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from calib.train import TrainConfig, create_optimizer, create_scheduler, train


class SmallCNN(nn.Module):
    """A digits-sized CNN with the ``backbone`` / ``head`` split that ``calib`` models have."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def plain_loop(model, dataset, batch_size, iters, device) -> float:
    """Images/s of a textbook loop with the same optimizer and schedule."""
    model.to(device).train()
    optimizer = create_optimizer("sgd", model, lr=1e-3)
    scheduler = create_scheduler("cosine", optimizer, iters)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    done, seen = 0, 0
    start = time.perf_counter()
    while done < iters:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            done, seen = done + 1, seen + len(y)
            if done == iters:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def calib_loop(model, dataset, batch_size, iters, device, run_dir) -> float:
    """Images/s of ``calib.train.train`` for one epoch of ``iters`` iterations."""
    config = TrainConfig(
        optimizer="sgd", lr=1e-3, epochs=1, iters_per_epoch=iters, batch_size=batch_size
    )
    start = time.perf_counter()
    train(
        model, dataset, config, run_dir=run_dir, device=device, progress=False, log=lambda s: None
    )
    return iters * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2048, help="dataset size")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run-dir", action="store_true", help="also write the checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    dataset = TensorDataset(
        torch.randn(args.n, 1, 28, 28, generator=g), torch.randint(0, 10, (args.n,), generator=g)
    )

    plain, ours = -math.inf, -math.inf
    for _ in range(args.repeat):  # interleaved, so that machine load hits both alike
        torch.manual_seed(0)
        plain = max(plain, plain_loop(SmallCNN(), dataset, args.batch_size, args.iters, device))
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = tmp if args.run_dir else None
            ours = max(
                ours, calib_loop(SmallCNN(), dataset, args.batch_size, args.iters, device, run_dir)
            )
    print(
        f"{args.iters} iters x batch {args.batch_size} on {device} ({args.threads} threads), "
        f"best of {args.repeat}"
    )
    print(f"plain PyTorch loop : {plain:9.0f} img/s")
    print(f"calib.train.train  : {ours:9.0f} img/s")
    print(f"ratio train/plain  : {ours / plain:9.3f}")


if __name__ == "__main__":
    main()
