"""One :func:`calib.train.train` call's state: model, optimizer, schedule, scaler, the epoch loop.

Split from :mod:`calib.train.loop` (which holds the public ``train``); see its docstring for
the guarantees (determinism, resume, DDP).
"""

from __future__ import annotations

import functools
import math
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from calib import distributed
from calib.train.checkpoint import (
    CheckpointError,
    restore_rng_state,
)
from calib.train.config import TrainConfig
from calib.train.optim import create_optimizer
from calib.train.precision import autocast_dtype, resolve_precision
from calib.train.sampling import (
    STREAM_INIT,
    STREAM_WORKERS,
    EpochBatchSampler,
    batches_per_pass,
    derive_seed,
    epoch_generator,
    seed_worker,
)
from calib.train.schedule import create_scheduler

__all__ = ["convert_sync_batchnorm", "seed_globals"]

#: ``loss_fn(logits, labels, inputs) -> loss`` (re-exported by :mod:`calib.train.loop`).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global RNG)
    random.seed(seed)


def convert_sync_batchnorm(model: nn.Module) -> Callable[[], None]:
    """Replace ``model``'s BatchNorm layers by ``nn.SyncBatchNorm``, in place; returns an undo.

    The new layers share the old ones' parameters (``requires_grad`` included) and
    running-statistics tensors, so the optimizer and checkpoints see the same tensors, and the
    undo (which puts the original layer objects back) keeps what was trained.

    A layer that stays in eval mode when the model is put in train mode (frozen statistics:
    :func:`calib.methods.parts.keep_in_eval`, as ``linear_probe``, ``lp_ft``'s probe and
    ``lora`` do) is replaced by one that stays in eval mode too: ``train()`` leaves it alone
    until the undo. timm's fused norm + activation layers (``BatchNormAct2d``, e.g. in
    EfficientNet-Lite) go through timm's converter, which keeps the activation (torch's drops
    it); any other BatchNorm subclass with a forward of its own is refused.

    Raises:
        ValueError: a BatchNorm subclass neither converter reproduces, named.
    """
    originals = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.modules.batchnorm._BatchNorm)
        and not isinstance(child, nn.SyncBatchNorm)
    ]
    converters = [_sync_converter(model, child) for _, _, child in originals]
    frozen = _frozen_in_train_mode(model, [child for _, _, child in originals])
    replaced = []
    for (parent, name, child), convert in zip(originals, converters, strict=True):
        layer = convert(child)
        if child in frozen:
            _stay_in_eval(layer)
        setattr(parent, name, layer)
        replaced.append(layer)

    def undo() -> None:
        for (parent, name, child), layer in zip(originals, replaced, strict=True):
            vars(layer).pop("train", None)  # the override of _stay_in_eval (a cycle otherwise)
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)

    return undo


def _sync_converter(model: nn.Module, layer: nn.Module) -> Callable[[nn.Module], nn.Module]:
    """The converter that keeps ``layer``'s forward: torch's for a plain BatchNorm, timm's for
    timm's ``BatchNormAct2d``."""
    forward = type(layer).forward
    if forward is nn.modules.batchnorm._BatchNorm.forward:
        return nn.SyncBatchNorm.convert_sync_batchnorm
    if type(layer).__module__.startswith("timm."):
        from timm.layers import BatchNormAct2d
        from timm.layers import convert_sync_batchnorm as timm_convert

        if forward is BatchNormAct2d.forward:
            return timm_convert
    name = next(n for n, m in model.named_modules() if m is layer)
    raise ValueError(
        f"sync_batchnorm: cannot convert {name!r}, a {type(layer).__module__}."
        f"{type(layer).__qualname__}: a BatchNorm subclass with a forward of its own, which "
        "torch's SyncBatchNorm would replace by a plain BatchNorm (silently dropping what it "
        "adds); set sync_batchnorm=false for this model"
    )


def _frozen_in_train_mode(model: nn.Module, layers: list[nn.Module]) -> set[nn.Module]:
    """The ``layers`` that ``model.train()`` leaves in eval mode (every mode put back after)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(True)
        return {layer for layer in layers if not layer.training}
    finally:
        for m, mode in modes:
            m.training = mode


#: Below this many samples per process, BatchNorm statistics of one batch are noisy enough to
#: change what a fine-tuning learns (the paper's batch of 64 spread over 8 GPUs gives 8).
SMALL_BATCHNORM_BATCH = 16


def _warn_small_batchnorm_batch(
    model: nn.Module, batch_size: int, world_size: int, config: Any
) -> None:
    """Warn when each process normalises train-mode BatchNorm over fewer than
    :data:`SMALL_BATCHNORM_BATCH` samples (no warning with ``sync_batchnorm``, or when every
    BatchNorm layer stays frozen)."""
    per_rank = batch_size // world_size
    if per_rank >= SMALL_BATCHNORM_BATCH or config.sync_batchnorm:
        return
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers or len(_frozen_in_train_mode(model, layers)) == len(layers):
        return
    warnings.warn(
        f"each of the {world_size} processes normalises BatchNorm over {per_rank} samples (the "
        f"global batch {batch_size} split {world_size} ways): statistics that noisy change what "
        "the model learns against one process; set sync_batchnorm=true, or run the paper's "
        "settings one GPU per run (README, 'Several GPUs and clusters')",
        RuntimeWarning,
        stacklevel=3,
    )


def _stay_in_eval(layer: nn.Module) -> None:
    """``layer.train(mode)`` keeps it in eval mode (an override on the instance, which the
    undo of :func:`convert_sync_batchnorm` removes)."""
    cls_train = type(layer).train

    def train(mode: bool = True) -> nn.Module:
        return cls_train(layer, False)

    object.__setattr__(layer, "train", train)
    layer.train(False)


def _cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor, *, label_smoothing: float
) -> torch.Tensor:
    """The default :data:`LossFn`: cross-entropy over all logits ``(N, C)``, mean over N."""
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            f"dataset items must be (input, label) pairs; the loader gave a {type(batch).__name__}"
        )
    x, y = batch[0], batch[1]
    if (
        not isinstance(y, torch.Tensor)
        or y.ndim != 1
        or y.dtype.is_floating_point
        or y.is_complex()
    ):
        raise TypeError(f"labels must be integer class indices, got {getattr(y, 'dtype', type(y))}")
    return x, y


class _Trainer:
    """State of one :func:`train` call: model, optimizer, scheduler, scaler, history."""

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        config: TrainConfig,
        device: torch.device,
        progress: bool,
        log: Callable[[str], None],
        desc: str,
        ctx: distributed.DistributedContext,
        loss_fn: LossFn | None = None,
    ) -> None:
        self.model, self.dataset, self.config = model, dataset, config
        # not the bound self._cross_entropy: a reference cycle would keep the trainer (model,
        # optimizer state, gradients) alive until a collection, and never after a gc.freeze()
        self.loss_fn = loss_fn or functools.partial(
            _cross_entropy, label_smoothing=config.label_smoothing
        )
        self.device, self.progress, self.log, self.desc = device, progress, log, desc
        self.ctx = ctx
        self.n = len(dataset)  # type: ignore[arg-type]
        if self.n < 1:
            raise ValueError("cannot train on an empty dataset")
        if ctx.world_size > 1:
            if config.batch_size % ctx.world_size:
                raise ValueError(
                    f"TrainConfig.batch_size ({config.batch_size}) is the global batch; it must "
                    f"be divisible by the {ctx.world_size} processes of this run"
                )
            if self.n < config.batch_size:
                raise ValueError(
                    f"the dataset ({self.n} samples) is smaller than one global batch "
                    f"({config.batch_size}); it cannot be split over {ctx.world_size} processes"
                )
            if config.sync_batchnorm and device.type != "cuda":
                raise ValueError(
                    "TrainConfig.sync_batchnorm needs CUDA devices (torch's SyncBatchNorm); "
                    f"this run computes on {device}"
                )
            _warn_small_batchnorm_batch(model, config.batch_size, ctx.world_size, config)
        self.iters = config.iters_per_epoch or batches_per_pass(self.n, config.batch_size)
        total_steps = self.iters * config.epochs
        if config.warmup_iters > total_steps:
            raise ValueError(
                f"TrainConfig.warmup_iters ({config.warmup_iters}) exceeds the run's "
                f"{total_steps} iterations"
            )
        self.precision = resolve_precision(config.amp, device)
        self.amp_dtype = autocast_dtype(self.precision)
        cl = config.channels_last
        self.channels_last = device.type == "cuda" if cl == "auto" else bool(cl)

        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = create_optimizer(
            config.optimizer,
            model,
            lr=config.lr,
            lr_head=config.lr_head,
            weight_decay=config.weight_decay,
            momentum=config.momentum,
            **config.optimizer_kwargs,
        )
        self.scheduler = create_scheduler(
            config.scheduler, self.optimizer, total_steps, config.warmup_iters, min_lr=config.min_lr
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.history: list[dict[str, Any]] = []
        self.net: nn.Module = model  # what the batches go through: the model, or its DDP wrapper
        self._restore_batchnorm: Callable[[], None] | None = None
        self._num_classes: int | None = None  # the logit columns, checked on the first batch

    # -- multi-process -----------------------------------------------------------------------
    def wrap(self) -> None:
        """Wrap the model in DDP (several processes), then in ``torch.compile`` (with
        ``config.compile``). Call after loading any checkpoint: DDP starts by broadcasting rank
        0's weights and buffers. The wrappers share the model's parameters; checkpoints and the
        returned model are the plain module's."""
        if self.ctx.is_distributed:
            if self.config.sync_batchnorm:
                self._restore_batchnorm = convert_sync_batchnorm(self.model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if self.config.compile:
            self.net = torch.compile(self.net)

    def unwrap(self) -> None:
        """Drop the DDP wrapper and restore the original BatchNorm layers."""
        self.net = self.model
        if self._restore_batchnorm is not None:
            self._restore_batchnorm()
            self._restore_batchnorm = None

    def release(self) -> None:
        """Free what only training needs, once :func:`train` returns or raises: the
        gradients (on the model's parameters) and the optimizer's state (Adam's moments: twice
        the trainable weights). A traceback that keeps the trainer alive then holds no more."""
        self.optimizer.zero_grad(set_to_none=True)
        self.model.zero_grad(set_to_none=True)  # also the frozen parameters a method thawed
        self.optimizer.state.clear()

    # -- checkpoint state ------------------------------------------------------------------
    def state(
        self, epoch: int, settings: dict[str, Any], rng_states: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The checkpoint of the end of ``epoch``; ``rng_states`` holds one entry per rank."""
        return {
            "format": "calib-train/1",
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_states[0],
            "rng_ranks": rng_states,
            "world_size": len(rng_states),
            "settings": settings,
            "history": self.history,
        }

    def load_state(self, path: Path, state: dict[str, Any]) -> int:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler.is_enabled() and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
            self.history = list(state["history"])
            epoch = int(state["epoch"])
            self._restore_rng(path, state, epoch)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as err:
            raise CheckpointError(f"checkpoint {path} does not fit this model/run: {err}") from err
        if not 0 <= epoch <= self.config.epochs or len(self.history) != epoch:
            raise CheckpointError(
                f"checkpoint {path} records an inconsistent epoch count ({epoch})"
            )
        return epoch

    def _restore_rng(self, path: Path, state: dict[str, Any], epoch: int) -> None:
        """Each rank takes back its own RNG state; a changed process count reseeds ranks > 0."""
        rank, world = self.ctx.rank, self.ctx.world_size
        saved_world = int(state.get("world_size", 1))
        if saved_world == world:
            restore_rng_state(state["rng_ranks"][rank] if world > 1 else state["rng"])
            return
        self.log(
            f"{self.desc}: {path} was written by a run of {saved_world} process(es), resumed "
            f"with {world}; it continues from epoch {epoch}, but its random streams (dropout, "
            "augmentation, BatchNorm statistics per rank) differ from an uninterrupted run"
        )
        if rank == 0:
            restore_rng_state(state["rng"])
        else:
            seed_globals(derive_seed(self.config.seed, STREAM_INIT, epoch, rank))

    # -- one epoch -------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train epoch ``epoch`` (0-based); return its history entry."""
        sampler, loader = self._loader(epoch)
        bar = tqdm(  # advanced by hand: wrapping the loader would start its workers twice
            total=len(sampler),
            desc=f"{self.desc} {epoch + 1}/{self.config.epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        postfix_every = max(1, len(sampler) // 20)
        loss_terms, correct, counts = [], [], []
        lr = self.optimizer.param_groups[0]["lr"]
        self.net.train()
        start = time.perf_counter()
        for i, batch in enumerate(loader):
            bar.update()
            lr = self.optimizer.param_groups[0]["lr"]
            logits, y, loss = self._step(batch, i, epoch)
            loss_terms.append(loss.detach().float() * y.numel())
            correct.append((logits.detach().argmax(1) == y).sum())
            counts.append(y.numel())
            if self.progress and i % postfix_every == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}", refresh=False)
        bar.close()
        return self._epoch_entry(epoch, loss_terms, counts, correct, lr, start)

    def _loader(self, epoch: int) -> tuple[EpochBatchSampler, DataLoader]:
        """This rank's batches of epoch ``epoch``, reproducible from the seed."""
        cfg, ctx = self.config, self.ctx
        sampler = EpochBatchSampler(
            self.n,
            cfg.batch_size,
            cfg.seed,
            epoch,
            cfg.iters_per_epoch,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=seed_worker,
            generator=epoch_generator(cfg.seed, STREAM_WORKERS, epoch, ctx.rank),
        )
        return sampler, loader

    def _step(self, batch, i: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimisation step on ``batch`` (the ``i``-th of the epoch); ``(logits, y, loss)``."""
        device = self.device
        x, y_cpu = _unpack(batch)
        x = x.to(device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y_cpu.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.net(x)
            if self._num_classes is None:
                self._num_classes = self._check_logits(logits, x)
            if int(y_cpu.min()) < 0 or int(y_cpu.max()) >= self._num_classes:
                raise ValueError(
                    f"labels must lie in [0, {self._num_classes}) (the model's logit columns); "
                    f"batch {i} of epoch {epoch + 1} has {int(y_cpu.min())}..{int(y_cpu.max())}"
                )
            loss = self.loss_fn(logits, y, x)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return logits, y, loss

    def _epoch_entry(self, epoch, loss_terms, counts, correct, lr, start) -> dict[str, Any]:
        """The epoch's history entry from its per-batch tallies, summed over ranks."""
        # per-batch loss sums, per-batch sample counts, and the correct count, summed over ranks
        # in one collective: the epoch's numbers are those of the global batches
        tally = torch.cat(
            [
                torch.stack(loss_terms).double().cpu(),  # synchronises the device
                torch.tensor(counts, dtype=torch.float64),
                torch.stack(correct).sum().double().cpu().reshape(1),
            ]
        )
        if self.ctx.is_distributed:
            tally = distributed.all_reduce_sum(tally)
        n_batches = len(loss_terms)
        losses, batch_counts = tally[:n_batches], tally[n_batches : 2 * n_batches]
        seconds = time.perf_counter() - start
        n_images = int(batch_counts.sum())
        return {
            "epoch": epoch + 1,
            "loss": self._mean_loss(losses, batch_counts, epoch),
            "acc": float(tally[-1]) / n_images,
            "lr": float(lr),
            "seconds": seconds,
            "images_per_s": n_images / seconds if seconds > 0 else math.inf,
        }

    @staticmethod
    def _check_logits(logits: torch.Tensor, x: torch.Tensor) -> int:
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != len(x):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(
                f"the model must return logits of shape (N, C); got {shape} for N={len(x)}"
            )
        return int(logits.shape[1])

    def _mean_loss(self, loss_terms: torch.Tensor, counts: torch.Tensor, epoch: int) -> float:
        finite = torch.isfinite(loss_terms)
        if not bool(finite.all()):
            # fp16 overflow: the grad scaler skipped those steps; tolerated while some are finite.
            if not self.scaler.is_enabled() or not bool(finite.any()):
                raise FloatingPointError(
                    f"the training loss became non-finite in epoch {epoch + 1}; "
                    "lower the learning rate or enable grad_clip"
                )
            self.log(
                f"{self.desc}: {int((~finite).sum())} batches of epoch {epoch + 1} had a "
                "non-finite fp16 loss; the grad scaler skipped their steps"
            )
        return float(loss_terms[finite].sum() / counts[finite].sum())

    def format(self, stats: dict[str, Any]) -> str:
        return (
            f"{self.desc} epoch {stats['epoch']}/{self.config.epochs}: loss {stats['loss']:.4f} "
            f"acc {stats['acc']:.4f} lr {stats['lr']:.3g} "
            f"{stats['images_per_s']:.0f} img/s ({stats['seconds']:.1f} s)"
        )
