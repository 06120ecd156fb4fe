"""The fine-tuning loop: cross-entropy over all logits, resumable and deterministic.

:func:`train` runs ``config.epochs`` epochs; at the end of each it writes an atomic,
checksummed checkpoint when given a ``run_dir`` (layout in :mod:`calib.train.checkpoint`).
Called again on the same ``run_dir`` it resumes after the last finished epoch, and on a
finished run it only loads the final weights. The batches of epoch ``e`` depend only on
``(config.seed, e)`` (:mod:`calib.train.sampling`) and the RNG states are checkpointed, so a
killed-and-resumed run ends with the same weights, bit for bit, as an uninterrupted one (same
device and library versions).

Under ``torchrun`` (a joined process group, see :mod:`calib.distributed`) every rank calls
:func:`train` with the same arguments: the model is wrapped in ``DistributedDataParallel``,
``config.batch_size`` is the global batch (each rank takes its slice of every global batch),
the logged loss and accuracy are over the global batch, and only rank 0 writes checkpoints
(the RNG states of all ranks go into them). With a model without BatchNorm and dropout, W
processes compute what one process computes on the same global batches, up to the order of
float additions in the gradient average. BatchNorm normalises over each rank's slice unless
``sync_batchnorm`` is set (CUDA only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from calib import distributed
from calib.io import atomic_save
from calib.train.backend_flags import backend_flags
from calib.train.checkpoint import (
    RunFiles,
    capture_rng_state,
    check_settings,
    load_checkpoint,
    read_done,
    restore_rng_state,
    save_checkpoint,
    write_done,
)
from calib.train.config import TrainConfig
from calib.train.precision import resolve_precision
from calib.train.sampling import (
    STREAM_INIT,
    derive_seed,
)
from calib.train.trainer import LossFn as _LossFn
from calib.train.trainer import _Trainer, convert_sync_batchnorm, seed_globals

__all__ = [
    "TrainConfig",
    "TrainResult",
    "LossFn",
    "EpochCallback",
    "train",
    "resolve_device",
    "convert_sync_batchnorm",
]

logger = logging.getLogger("calib.train")

#: ``loss_fn(logits, labels, inputs) -> scalar loss``: the training objective (default:
#: cross-entropy over all logits with ``config.label_smoothing``). Called inside autocast.
LossFn = _LossFn
#: ``on_epoch_end(epoch, model)``: called with the plain (un-wrapped) model after epoch ``epoch``
#: (1-based) and once with ``epoch = 0`` before the first step of a fresh run.
EpochCallback = Callable[[int, nn.Module], None]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: one dict per epoch (all epochs of the run, resumed or not): ``epoch``
            (1-based), ``loss`` (mean cross-entropy), ``acc`` (training accuracy over all
            logits), ``lr`` (backbone lr at the epoch's last step), ``seconds``, ``images_per_s``.
        resumed_from: number of epochs already done when ``train`` was called (``None`` for a
            fresh start).
        already_done: the run had finished before; nothing was trained, the final weights were
            loaded.
    """

    history: list[dict[str, Any]]
    resumed_from: int | None = None
    already_done: bool = False


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU.

    Under ``torchrun`` a CUDA device without an index (``"auto"``, ``"cuda"``) is this
    process's ``cuda:LOCAL_RANK`` (:func:`calib.distributed.local_device`).
    """
    return distributed.local_device(device)


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    desc: str = "fine-tune",
    loss_fn: LossFn | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` with cross-entropy over all its logits.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits ``(N, C)``; the head
            (``model.head``) gets ``config.lr_head``. Moved to ``device``; trained in place.
        dataset: map-style dataset of ``(input, label)`` items, labels in ``[0, C)``. It is
            used as given: restricting to the fine-tuning classes is the caller's job.
        config: hyperparameters.
        run_dir: where checkpoints go (``run_dir/checkpoints/``). ``None`` = no checkpoints.
            An existing ``last.pt`` is resumed; a finished run (``done`` marker) is not
            retrained, its final weights are loaded into ``model``. The settings recorded
            there must equal ``config`` (except ``num_workers`` and the speed switches
            ``deterministic``, ``cudnn_benchmark``, ``compile``), with ``amp`` as the precision
            it resolves to on ``device``, and the dataset size.
        device: ``None``/"auto" = CUDA when available, else CPU.
        progress: show a tqdm bar per epoch.
        log: receives one line per epoch and resume notices; default ``logging`` (INFO,
            logger "calib.train").
        desc: label for the bar and the log lines.
        loss_fn: the objective, ``loss_fn(logits, labels, inputs)`` (see :data:`LossFn`);
            default cross-entropy over all logits. Part of what a method trains with: the
            caller keys its run directory by it (the checkpoint settings cannot see it).
        on_epoch_end: called as ``on_epoch_end(epoch, model)`` on every rank with the
            un-wrapped model after each epoch (``epoch`` 1-based, before that epoch's
            checkpoint is written) and with ``epoch = 0`` before the first step of a fresh
            run; not called for epochs finished before a resume, nor on a finished run. The
            global RNG states are restored after each call, so a callback that draws random
            numbers leaves the training stream unchanged. A run killed during a call repeats
            that epoch, and the call, when resumed.

    Returns:
        :class:`TrainResult`. ``model`` ends with the trained weights, in its original
        train/eval mode, without gradients (``p.grad is None``); nothing of the optimizer is
        kept (its state is freed also when training raises).

    Raises:
        CheckpointError: a corrupt or unreadable checkpoint or done marker (named).
        ConfigMismatchError: ``run_dir`` holds a run made with other settings.
        ValueError: bad labels or logits shape, warm-up longer than the run.
        FloatingPointError: the loss diverged.

    A fresh run seeds the global torch / numpy / random RNGs from ``config.seed`` (dropout,
    augmentations in the main process); a resumed run restores them from the checkpoint.

    Several processes (``torchrun``, group joined with
    :func:`calib.distributed.init_distributed`): every rank calls ``train`` with the same
    arguments and ends with the same weights; ``config.batch_size`` is the global batch
    (divisible by the number of processes); only rank 0 logs, shows progress and writes
    files, and every rank returns once the run is marked done. ``run_dir`` must be on a file
    system all ranks see.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()  # the fields may have been changed since construction
    ctx = distributed.context()
    log = (log or logger.info) if ctx.is_main else _silent
    progress = progress and ctx.is_main
    device = resolve_device(device)
    if not hasattr(dataset, "__len__"):
        raise TypeError("train needs a map-style dataset with __len__")
    # fingerprinted by the precision it computes in on this device, not the amp it asked for
    precision = resolve_precision(config.amp, device)
    settings = config.settings(precision, dataset_size=len(dataset))  # type: ignore[arg-type]
    files = RunFiles(Path(run_dir)) if run_dir is not None else None

    if files is not None and files.done.exists():
        done = read_done(files)
        check_settings(files.done, done["settings"], settings)
        weights = torch.load(files.final, map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
        model.to(device)
        log(f"{desc}: run already finished ({files.done}); loaded {files.final}")
        return TrainResult(list(done["history"]), resumed_from=config.epochs, already_done=True)

    flags = backend_flags(
        deterministic=config.deterministic,
        cudnn_benchmark=config.cudnn_benchmark and device.type == "cuda",
    )
    with flags:
        history, resumed_from = _train_epochs(
            model, dataset, config, device, progress, log, desc, ctx, loss_fn, files, settings,
            on_epoch_end,
        )  # fmt: skip
    if files is not None:
        if ctx.is_main:
            weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            atomic_save(files.final, lambda fh: torch.save(weights, fh))
            write_done(files, settings=settings, history=history)
            files.last.unlink(missing_ok=True)  # the done marker and final.pt supersede it
        distributed.barrier()  # no rank returns before the run is marked done
    return TrainResult(history, resumed_from=resumed_from)


def _train_epochs(
    model, dataset, config, device, progress, log, desc, ctx, loss_fn, files, settings, on_epoch_end
) -> tuple[list[dict[str, Any]], int | None]:
    """The epochs of :func:`train` from its last checkpoint on; ``(history, resumed_from)``."""
    trainer = _Trainer(model, dataset, config, device, progress, log, desc, ctx, loss_fn)
    start, resumed_from = 0, None
    if files is not None and files.last.exists():  # every rank loads the same file
        state = load_checkpoint(files.last)
        check_settings(files.last, state.get("settings", {}), settings)
        start = resumed_from = trainer.load_state(files.last, state)
        log(f"{desc}: resuming from epoch {start}/{config.epochs} ({files.last})")
    else:
        seed_globals(derive_seed(config.seed, STREAM_INIT, 0, ctx.rank))

    was_training = model.training
    if on_epoch_end is not None and resumed_from is None:
        _call_isolated(on_epoch_end, 0, model)
    trainer.wrap()
    try:
        for epoch in range(start, config.epochs):
            stats = trainer.run_epoch(epoch)
            # DDP broadcasts rank 0's buffers at the start of each forward, so the last step
            # left every rank the BatchNorm statistics of its own batch slice: give every rank
            # rank 0's, those of the checkpoint, so that a fresh run evaluates as a resumed one
            distributed.broadcast_buffers(model)
            trainer.history.append(stats)
            log(trainer.format(stats))
            if on_epoch_end is not None:
                _call_isolated(on_epoch_end, epoch + 1, model)
            if files is not None:
                rng_states = distributed.all_gather_object(capture_rng_state())
                if ctx.is_main:
                    save_checkpoint(files.last, trainer.state(epoch + 1, settings, rng_states))
                distributed.barrier()
    finally:
        trainer.unwrap()
        trainer.release()
        model.train(was_training)

    return trainer.history, resumed_from


def _call_isolated(callback: EpochCallback, epoch: int, model: nn.Module) -> None:
    """``callback(epoch, model)`` without touching the training's RNG streams or model mode."""
    rng, training = capture_rng_state(), model.training
    try:
        callback(epoch, model)
    finally:
        restore_rng_state(rng)
        model.train(training)


def _silent(line: str) -> None:
    """The log of ranks other than 0: one copy of each line is enough."""
