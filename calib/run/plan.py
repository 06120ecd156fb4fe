"""Turn a plain config mapping (e.g. a resolved Hydra config) into a ready-to-run plan.

Everything a run needs is built and checked here, before any training starts: every value's
type and range (:mod:`calib.run.schema`), registry keys, datasets on disk in the expected
layout, the model (built once, under the run's seed, and kept), a one-batch dry run of it on
the target data, and the optimizer and schedule of every training stage. A bad value stops
the run at start with one line naming the key, never an hour in. No Hydra import: a Python
user can pass a dict with the same keys as ``conf/config.yaml``::

    plan = build_plan(cfg_dict)
    results = plan.run()
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calib import distributed
from calib.data import Domain, dataset_targets
from calib.run.identity import identity_leaves
from calib.run.pipeline import RunPlan
from calib.run.schema import ConfigError, check_config
from calib.run.sections import (
    build_calibration,
    build_method,
    build_split,
    build_train_config,
    domain_from_config,
    resolved_split_classes,
    section,
    source_spec,
    split_names_classes,
    wrap,
)
from calib.run.settings import EvalConfig
from calib.run.stages import StageStore
from calib.train import TrainConfig, resolve_device, resolve_precision
from calib.train.backend_flags import require_cublas_workspace
from calib.train.optim import create_optimizer
from calib.train.sampling import batches_per_pass
from calib.train.schedule import create_scheduler

#: Top-level keys of how the device computes, with their defaults (conf/config.yaml): they
#: change speed or run-to-run rounding, never a number in expectation, and key no stage.
COMPUTE_DEFAULTS: dict[str, Any] = {
    "deterministic": False,
    "cudnn_benchmark": True,
    "compile": False,
    "dist_timeout_min": 60,
}

__all__ = [
    "COMPUTE_DEFAULTS",
    "ConfigError",
    "RunPlan",
    "build_plan",
    "build_split",
    "build_train_config",
    "check_device",
    "dry_run",
]


def _import_plugins(modules: list[str]) -> None:
    """Import what ``imports`` lists — module names or ``.py`` files — so that the models,
    selectors or data sets they register can be named by the rest of the config.

    A registration the plugin gets wrong (a selector or method of the wrong signature, a name
    already taken, e.g. a built-in's) raises TypeError or ValueError while it is imported:
    that stops the run here, as a :class:`ConfigError` naming the plugin and its line.
    """
    for module in modules:
        try:
            if module.endswith(".py"):
                path = Path(module).resolve()
                spec = importlib.util.spec_from_file_location(f"calib_plugin_{path.stem}", path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise ImportError(f"no Python file at {path}")
                mod = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = mod
                spec.loader.exec_module(mod)
            else:
                importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"imports: cannot import {module!r} ({err})") from err
        except (SyntaxError, TypeError, ValueError) as err:
            raise ConfigError(
                f"imports: {module!r}{_plugin_line(err, module)} failed: "
                f"{type(err).__name__}: {err}"
            ) from err


def _plugin_line(err: BaseException, module: str) -> str:
    """`` (line N)``: the last line of the plugin's own code that the error passed through."""
    if isinstance(err, SyntaxError) and err.lineno is not None:
        return f" (line {err.lineno})"
    if module.endswith(".py"):
        ends = (str(Path(module).resolve()),)
    else:
        stem = os.sep + module.replace(".", os.sep)
        ends = (stem + ".py", stem + os.sep + "__init__.py")
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if f.filename.endswith(ends)]
    return f" (line {lines[-1]})" if lines else ""


def _resolve_progress(value: Any) -> bool:
    return sys.stderr.isatty() if value == "auto" else bool(value)


def build_plan(cfg: Mapping[str, Any], run_dir: str | os.PathLike | None = None) -> RunPlan:
    """Validate ``cfg`` (the keys of ``conf/config.yaml``) and build a :class:`RunPlan`.

    Raises:
        ConfigError: a value is missing or invalid (the message names the key).
        calib.data.DatasetNotFoundError: a dataset is not on disk in the expected layout.
        calib.run.StaleRunError: ``run_dir`` holds a run made with other settings.
    """
    cfg = dict(cfg)
    check_config(cfg)
    if cfg.get("sequence") is not None:
        raise ConfigError(
            "sequence: a sequence of fine-tunings is one run per stage: run it with "
            "calib.run.sequence_run.run_sequence (calib-run does), not build_plan"
        )
    _import_plugins(list(cfg.get("imports") or []))
    seed = int(cfg.get("seed", 0))
    name = str(cfg.get("name", "run"))
    run_dir = Path(run_dir or cfg.get("run_dir") or os.path.join("outputs", name))
    named = split_names_classes(section(cfg, "split"))
    if not named:  # a folder made with other settings is refused now, before any data set
        StageStore(run_dir).check_config(identity_leaves(cfg))
    device = str(cfg.get("device", "auto"))
    switches = compute_switches(cfg)
    if switches["deterministic"]:  # before the first CUDA matrix product of the process
        require_cublas_workspace()

    check_device(device)

    target, source = _domains(cfg)
    split = build_split(
        section(cfg, "split"),
        target.num_classes,
        class_names=target.class_names,
        train_labels=lambda: dataset_targets(target.train),
    )
    if named:  # keyed by the column indices the names stand for: the same stages, the same folder
        cfg = _with_class_indices(cfg, target)
        StageStore(run_dir).check_config(identity_leaves(cfg))
    finetune, source_train = _train_configs(
        cfg, seed, with_source=source is not None, switches=switches
    )
    method = build_method(section(cfg, "finetune"))
    calibration = build_calibration(section(cfg, "calibration"), finetune, seed)
    eval_cfg = wrap("eval", lambda: EvalConfig(**section(cfg, "eval")))
    make_model, model_name = _model_factory(section(cfg, "model"), target)
    # the precision each training and extraction computes in on this device: the stages are
    # keyed by it (calib.run.stage_plan), results.json records it
    target_device = resolve_device(device)
    precision = {
        "finetune": resolve_precision(finetune.amp, target_device),
        "eval": resolve_precision(eval_cfg.amp, target_device),
    }
    if source_train is not None:
        precision["source_train"] = resolve_precision(source_train.amp, target_device)

    plan = RunPlan(
        name=name,
        run_dir=run_dir,
        target=target,
        split=split,
        make_model=make_model,
        finetune=finetune,
        method=method,
        calibration=calibration,
        eval=eval_cfg,
        source=source,
        source_train=source_train,
        device=device,
        seed=seed,
        progress=_resolve_progress(cfg.get("progress", "auto")),
        cache_dir=None if cfg.get("cache_dir") is None else Path(cfg["cache_dir"]),
        meta={
            "name": name,
            "seed": seed,
            "model": model_name,
            "optimizer": finetune.optimizer,
            "method": method.name,
            "dataset": target.name,
            "source": None if source is None else source.name,
            "precision": precision,
            "deterministic": switches["deterministic"],
            "compile": switches["compile"],
            "config": cfg,
        },
        config=cfg,
    )

    dry_run(plan)  # builds the model once (kept for the run) and runs one batch through it
    plan.stages()  # the stages and their keys, planned once: the run uses these
    return plan


def _with_class_indices(cfg: dict[str, Any], target: Domain) -> dict[str, Any]:
    """``cfg`` with the class names of ``split.seen``/``split.absent`` replaced by their
    column indices in ``target`` (in the order given), so that a run given names is keyed,
    recorded (``run.json``, ``results["meta"]["config"]``) and collated as the run given the
    indices: ``split.seen=[zero, one]`` and ``split.seen=[0, 1]`` share every stage."""
    spec = section(cfg, "split")
    seen, absent = resolved_split_classes(spec, target.class_names)
    return {**cfg, "split": {**spec, "seen": seen, "absent": absent}}


def _domains(cfg: Mapping[str, Any]) -> tuple[Domain, Domain | None]:
    """The target domain and the source domain (None without one), sharing one label space."""
    target = domain_from_config(section(cfg, "dataset"), "dataset")
    src = source_spec(cfg)
    source = domain_from_config(src, "source") if src else None
    if source is not None and source.num_classes != target.num_classes:
        raise ConfigError(
            f"source has {source.num_classes} classes but the target has {target.num_classes}: "
            "both domains must share one label space"
        )
    return target, source


def compute_switches(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config's top-level compute keys (:data:`COMPUTE_DEFAULTS` where unset)."""
    return {key: cfg.get(key, default) for key, default in COMPUTE_DEFAULTS.items()}


def _train_configs(
    cfg: Mapping[str, Any], seed: int, with_source: bool, switches: Mapping[str, Any]
) -> tuple[TrainConfig, TrainConfig | None]:
    """The fine-tuning config (``finetune`` + ``optimizer`` + ``scheduler``) and the source's,
    with the run's compute switches (``deterministic``, ``cudnn_benchmark``, ``compile``); the
    pseudo runs' config derives from the fine-tuning's and keeps them."""
    flags = {k: bool(switches[k]) for k in ("deterministic", "cudnn_benchmark", "compile")}
    finetune = build_train_config(
        section(cfg, "finetune"),
        optimizer=section(cfg, "optimizer"),
        scheduler=section(cfg, "scheduler"),
        seed=seed,
        key="finetune",
    )
    finetune = dataclasses.replace(finetune, **flags)
    if not with_source:
        return finetune, None
    source_train = build_train_config(
        section(cfg, "source_train"), optimizer=None, scheduler=None, seed=seed, key="source_train"
    )
    return finetune, dataclasses.replace(source_train, **flags)


def _model_factory(spec: dict[str, Any], target: Domain) -> tuple[Callable[[], nn.Module], str]:
    from calib.models import create_model

    model_name = spec.pop("name", None)
    if not model_name:
        raise ConfigError("model.name is required")
    model_kwargs = dict(spec.pop("kwargs", None) or {})
    if model_kwargs.get("class_names") == "from_dataset":  # e.g. a CLIP zero-shot head
        model_kwargs["class_names"] = list(target.class_names)
    factory = functools.partial(
        create_model,
        model_name,
        target.num_classes,
        pretrained=spec.pop("pretrained", False),
        weights=spec.pop("weights", None),
        **model_kwargs,
        **spec,
    )
    return factory, model_name


# ---------------------------------------------------------------------- the dry run
#
# Checks a plan passes before any work: the device exists, the model takes the data, and
# every training stage's optimizer and schedule can be built. A model whose input channels do
# not match the data, optimizer kwargs the optimizer does not take, a warm-up longer than the
# run: each fails here, at start, with the config key named — not inside ``conv2d`` after the
# source model has trained for an hour.

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
    model = plan.initial_model()
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
        method.spec.prepare(copy.deepcopy(plan.initial_model()), method.params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"finetune.method_options: {err}") from err


def _gradients(plan: RunPlan) -> None:
    """The method's training calls give every trainable parameter a gradient (one
    forward/backward each): an unused one never trains, and fails DDP at its second step."""
    from calib.methods.gradient_check import check_gradients

    method = plan.method
    try:
        check_gradients(
            method.spec,
            method.params,
            plan.initial_model(),
            plan.target.train,
            plan.split,
            plan.finetune,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"finetune.method={method.name}: {err}") from err


def dry_run(plan: RunPlan) -> None:
    """Build the model and pass one batch through it; build every stage's optimizer and schedule.

    Raises:
        ConfigError: naming the key whose value cannot work.
    """
    from calib.figures.files import figure_dpi

    try:
        figure_dpi()  # the figures come at the end of the run: a bad value is refused now
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        plan.initial_model()
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as err:
        # OSError: a model.weights file that is missing or unreadable
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"invalid model: {msg}") from err
    _one_batch(plan)
    _method(plan)
    _gradients(plan)
    labels = dataset_targets(plan.target.train)
    n_seen = int(np.isin(labels, plan.split.seen).sum())
    if n_seen == 0:
        raise ConfigError(f"split: {plan.target.name} has no training sample of the seen classes")
    model = plan.initial_model()
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
