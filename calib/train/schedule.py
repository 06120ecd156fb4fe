"""Per-iteration learning-rate schedules by name.

The scheduler is stepped once per optimizer step. With ``warmup_steps = W`` and
``total_steps = T``, step ``t`` (0-based, the step about to be taken) of a group whose base
rate is ``b`` uses::

    warm-up (t < W):   b * (t + 1) / W
    cosine  (t >= W):  m + (b - m) * (1 + cos(pi * (t - W) / (T - W))) / 2
    constant (t >= W): b

with ``m = min(min_lr, b)``; steps past ``T`` stay at the last value (``m`` for cosine).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from calib.registry import Registry

__all__ = ["SCHEDULERS", "create_scheduler", "cosine_lr", "WarmupCosine", "WarmupConstant"]


def cosine_lr(
    step: int, base_lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0
) -> float:
    """The learning rate of the cosine schedule at ``step`` (the formula in the module docstring)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    floor = min(min_lr, base_lr)
    span = total_steps - warmup_steps
    progress = 1.0 if span <= 0 else min(step - warmup_steps, span) / span
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """``LambdaLR`` factor of the cosine schedule for one param group (a plain object, so
    ``LambdaLR.state_dict`` records its parameters)."""

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int, min_lr: float) -> None:
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_lr = min_lr

    def __call__(self, step: int) -> float:
        lr = cosine_lr(step, self.base_lr, self.total_steps, self.warmup_steps, self.min_lr)
        return lr / self.base_lr


class WarmupConstant:
    """``LambdaLR`` factor: linear warm-up, then 1."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        return (step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0


SchedulerFactory = Callable[[torch.optim.Optimizer, int, int, float], LRScheduler]
SCHEDULERS: Registry[SchedulerFactory] = Registry("scheduler")


@SCHEDULERS.register("cosine")
def _cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float
) -> LRScheduler:
    factors = [
        WarmupCosine(group["lr"], total_steps, warmup_steps, min_lr)
        for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, factors)


@SCHEDULERS.register("constant")
def _constant(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float
) -> LRScheduler:
    return LambdaLR(optimizer, [WarmupConstant(warmup_steps) for _ in optimizer.param_groups])


def create_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    min_lr: float = 0.0,
) -> LRScheduler:
    """Build schedule ``name`` (a :data:`SCHEDULERS` key: ``"cosine"``, ``"constant"``).

    Args:
        optimizer: its groups' current ``lr`` are the base rates.
        total_steps: number of optimizer steps of the whole run (>= 1).
        warmup_steps: linear warm-up steps (0 <= warmup_steps <= total_steps).
        min_lr: the cosine floor (absolute, per group capped at the group's base rate).

    Call ``scheduler.step()`` after every ``optimizer.step()``.

    Raises:
        KeyError: unknown ``name``. ValueError: a step count or ``min_lr`` out of range.
    """
    factory = SCHEDULERS.get(name)
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) exceeds total_steps ({total_steps})")
    if not (isinstance(min_lr, (int, float)) and math.isfinite(min_lr) and min_lr >= 0):
        raise ValueError(f"min_lr must be a finite number >= 0, got {min_lr!r}")
    for group in optimizer.param_groups:
        if not group["lr"] > 0:
            raise ValueError(
                f"param group {group.get('name', '?')!r} has lr {group['lr']!r}; need > 0"
            )
    return factory(optimizer, total_steps, warmup_steps, float(min_lr))
