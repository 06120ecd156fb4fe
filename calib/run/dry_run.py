"""Checks a plan passes before any work: the device exists, the model takes the data, and
every training stage's optimizer and schedule can be built.

A model whose input channels do not match the data, optimizer kwargs the optimizer does not
take, a warm-up longer than the run: each fails here, at start, with the config key named —
not inside ``conv2d`` after the source model has trained for an hour.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import distributed
from ..data import dataset_targets
from ..train import TrainConfig
from ..train.optim import create_optimizer
from ..train.sampling import batches_per_pass
from ..train.schedule import create_scheduler
from .schema import ConfigError

if TYPE_CHECKING:
    from .plan import RunPlan

__all__ = ["check_device", "dry_run"]


def check_device(device: str) -> None:
    """Refuse a device this machine does not have (``cuda`` without CUDA, a bad name)."""
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"device must be auto, cpu, cuda or cuda:<index>, got {device!r}"
        ) from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device}: this machine has no CUDA device; use device=cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        try:  # under torchrun an index other than LOCAL_RANK would share one GPU
            distributed.local_device(dev)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    elif dev.type != "cpu":
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got {device!r}")


def _channel_hint(plan: RunPlan, x: torch.Tensor, model: torch.nn.Module) -> str:
    """The config keys to change when the model's first convolution takes another number of
    channels than the images have; empty when that is not the mismatch."""
    if x.ndim != 4:
        return ""
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)), None)
    if conv is None or conv.in_channels == x.shape[1]:
        return ""
    kwargs = (plan.config.get("model") or {}).get("kwargs") or {}
    given = f"={kwargs['in_chans']}" if "in_chans" in kwargs else " (not set: its default)"
    return (
        f". The model takes {conv.in_channels} input channel(s) (model.kwargs.in_chans{given}) "
        f"but the {plan.target.name} images have {x.shape[1]} (dataset.channels): set "
        f"model.kwargs.in_chans={x.shape[1]}, or dataset.channels={conv.in_channels} where "
        "the dataset takes it"
    )


def _one_batch(plan: RunPlan) -> None:
    dataset = plan.target.train_eval
    n = min(2, len(dataset))
    if n == 0:
        raise ConfigError(f"dataset: {plan.target.name} has no training sample")
    items = [dataset[i] for i in range(n)]
    x = torch.stack([torch.as_tensor(item[0]) for item in items])
    model = plan._model()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:  # conv shape errors and the like: the model does not fit the data
        raise ConfigError(
            f"model: a batch of {plan.target.name} images of shape {tuple(x.shape)} does not go "
            f"through model {plan.meta.get('model')!r}: {str(err).splitlines()[0]}"
            f"{_channel_hint(plan, x, model)}"
        ) from err
    finally:
        model.train(was_training)
    if (
        not isinstance(out, torch.Tensor)
        or out.ndim != 2
        or out.shape[1] != plan.target.num_classes
    ):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model: {plan.meta.get('model')!r} returns {shape} for a batch of {n}, but "
            f"{plan.target.name} has {plan.target.num_classes} classes (need (N, C))"
        )


def _optimizer_and_schedule(
    cfg: TrainConfig, n_samples: int, key: str, opt_key: str, model
) -> None:
    try:
        optimizer = create_optimizer(
            cfg.optimizer,
            model,
            lr=cfg.lr,
            lr_head=cfg.lr_head,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            **cfg.optimizer_kwargs,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{opt_key}: {err}") from err
    iters = cfg.iters_per_epoch or batches_per_pass(max(n_samples, 1), cfg.batch_size)
    total = iters * cfg.epochs
    if cfg.warmup_iters > total:
        raise ConfigError(
            f"{key}: warmup_iters ({cfg.warmup_iters}) exceeds the run's {total} iterations "
            f"({cfg.epochs} epochs × {iters})"
        )
    try:
        create_scheduler(cfg.scheduler, optimizer, total, cfg.warmup_iters, min_lr=cfg.min_lr)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"{key}: {err}") from err


def _method(plan: RunPlan) -> None:
    """The method's extra and its head option work with this model."""
    import copy

    method = plan.method
    for module, install in method.spec.requires.items():
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"finetune.method={method.name} needs {module}, which does not import here "
                f"({err}): pip install '{install}'"
            ) from err
    if method.spec.uses_absent_data:
        labels = dataset_targets(plan.target.train)
        if not np.isin(labels, plan.split.absent).any():
            raise ConfigError(
                f"finetune.method={method.name} trains on the target data of S ∪ U (an upper "
                f"bound that uses absent-class data), but {plan.target.name} has no training "
                "sample of the absent classes U"
            )
    try:
        method.spec.prepare(copy.deepcopy(plan._model()), method.params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"finetune.method_options: {err}") from err


def _gradients(plan: RunPlan) -> None:
    """The method's training calls give every trainable parameter a gradient (one
    forward/backward each): an unused one never trains, and fails DDP at its second step."""
    from ..methods.gradient_check import check_gradients

    method = plan.method
    try:
        check_gradients(
            method.spec, method.params, plan._model(), plan.target.train, plan.split, plan.finetune
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"finetune.method={method.name}: {err}") from err


def dry_run(plan: RunPlan) -> None:
    """Build the model and pass one batch through it; build every stage's optimizer and schedule.

    Raises:
        ConfigError: naming the key whose value cannot work.
    """
    from ..plotting import figure_dpi

    try:
        figure_dpi()  # the figures come at the end of the run: a bad value is refused now
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        plan._model()
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"invalid model: {msg}") from err
    _one_batch(plan)
    _method(plan)
    _gradients(plan)
    labels = dataset_targets(plan.target.train)
    n_seen = int(np.isin(labels, plan.split.seen).sum())
    if n_seen == 0:
        raise ConfigError(f"split: {plan.target.name} has no training sample of the seen classes")
    model = plan._model()
    _optimizer_and_schedule(plan.finetune, n_seen, "scheduler", "optimizer", model)
    if plan.source is not None and plan.source_train is not None:
        _optimizer_and_schedule(
            plan.source_train, len(plan.source.train), "source_train", "source_train", model
        )
    pcv = plan.calibration.pcv
    if plan.calibration.needs_pcv and pcv is not None:
        n_fit = int(n_seen * (1 - pcv.holdout_fraction) * (1 - pcv.absent_fraction))
        cfg = pcv.finetune or plan.finetune
        _optimizer_and_schedule(cfg, n_fit, "calibration.pcv", "calibration.pcv.finetune", model)
