"""Fine-tuning: optimizers and schedules by name, a resumable deterministic training loop.

::

    from calib.train import TrainConfig, train

    cfg = TrainConfig(optimizer="sgd", lr=1e-4, lr_head=1e-3, epochs=20, iters_per_epoch=500)
    result = train(model, train_set, cfg, run_dir="runs/ar_cl/finetune")
    result.history[-1]   # {"epoch": 20, "loss": ..., "acc": ..., "lr": ..., ...}

Modules: :mod:`~calib.train.optim` (``OPTIMIZERS``, ``create_optimizer``),
:mod:`~calib.train.schedule` (``SCHEDULERS``, ``create_scheduler``),
:mod:`~calib.train.sampling` (the per-epoch sample order), :mod:`~calib.train.checkpoint`
(checksummed atomic checkpoints), :mod:`~calib.train.loop` (``TrainConfig``, ``train``),
:mod:`~calib.train.precision` (what ``amp`` computes in on a device) and
:mod:`~calib.train.backend_flags` (cuDNN autotuning, deterministic kernels).

Under ``torchrun`` (after :func:`calib.distributed.init_distributed`) the same call trains with
DistributedDataParallel: ``batch_size`` is the global batch, rank 0 writes the checkpoints.
"""

from calib.train.backend_flags import backend_flags
from calib.train.checkpoint import (
    CheckpointError,
    ConfigMismatchError,
    load_checkpoint,
    save_checkpoint,
)
from calib.train.config import TrainConfig
from calib.train.loop import (
    EpochCallback,
    LossFn,
    TrainResult,
    convert_sync_batchnorm,
    resolve_device,
    train,
)
from calib.train.optim import OPTIMIZERS, OptimizerSpec, create_optimizer, split_parameters
from calib.train.precision import PRECISIONS, autocast_dtype, resolve_precision
from calib.train.schedule import SCHEDULERS, cosine_lr, create_scheduler

__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULERS",
    "CheckpointError",
    "ConfigMismatchError",
    "EpochCallback",
    "LossFn",
    "OptimizerSpec",
    "TrainConfig",
    "TrainResult",
    "autocast_dtype",
    "backend_flags",
    "convert_sync_batchnorm",
    "cosine_lr",
    "create_optimizer",
    "create_scheduler",
    "load_checkpoint",
    "resolve_device",
    "resolve_precision",
    "save_checkpoint",
    "split_parameters",
    "train",
]
