"""Turn a plain config mapping (e.g. a resolved Hydra config) into a ready-to-run plan.

Everything a run needs is built and checked here, before any training starts:
registry keys exist, numbers are in range, datasets are on disk in the expected
layout. A bad value stops the run at start with a message naming the key, never an
hour in. No Hydra import: a Python user can pass a dict with the same keys as
``conf/config.yaml``::

    plan = build_plan(cfg_dict)
    results = plan.run()
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .data import DATASETS, ClassSplit, Domain
from .models import create_model
from .pipeline import CalibrationConfig, EvalConfig, PCVConfig, run_pipeline
from .train import TrainConfig

__all__ = ["ConfigError", "RunPlan", "build_plan", "build_split", "build_train_config"]


class ConfigError(ValueError):
    """A config value is missing or invalid; the message names the key."""


def _section(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = cfg.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
    return dict(value)


def _wrap(key: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; re-raise value/type/key errors as ConfigError naming the config key."""
    try:
        return fn()
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"invalid {key}: {msg}") from err


def domain_from_config(spec: Mapping[str, Any], key: str = "dataset") -> Domain:
    """A :class:`~calib.data.Domain` from ``{name: <DATASETS key>, **builder kwargs}``."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if not name:
        raise ConfigError(f"{key}.name is required (one of: {', '.join(DATASETS.names())})")
    builder = _wrap(f"{key}.name", lambda: DATASETS.get(name))
    return _wrap(key, lambda: builder(**spec))


def build_split(spec: Mapping[str, Any], num_classes: int) -> ClassSplit:
    """The seen/absent class split from the ``split`` config section."""
    kind = spec.get("kind", "random")

    def make() -> ClassSplit:
        if kind == "explicit":
            if spec.get("seen") is None:
                raise ConfigError("split.seen is required with split.kind=explicit")
            return ClassSplit.explicit(spec["seen"], spec.get("absent"), num_classes=num_classes)
        if kind == "random":
            if spec.get("n_seen") is None:
                raise ConfigError("split.n_seen is required with split.kind=random")
            return ClassSplit.random(
                num_classes, spec["n_seen"], spec.get("n_absent"), seed=spec.get("seed", 0)
            )
        if kind == "benchmark":
            if spec.get("benchmark") is None:
                raise ConfigError("split.benchmark is required with split.kind=benchmark")
            split = ClassSplit.from_benchmark(spec["benchmark"], source=spec.get("source"))
            if split.num_classes != num_classes:
                raise ConfigError(
                    f"split.benchmark={spec['benchmark']} is a {split.num_classes}-class split "
                    f"but the dataset has {num_classes} classes"
                )
            return split
        raise ConfigError(f"split.kind must be explicit, random or benchmark, got {kind!r}")

    return _wrap("split", make)


def build_train_config(
    section: Mapping[str, Any],
    *,
    optimizer: Mapping[str, Any] | None,
    scheduler: Mapping[str, Any] | None,
    seed: int,
    key: str,
) -> TrainConfig:
    """A :class:`~calib.train.TrainConfig` from a training section plus optimizer/scheduler groups.

    With ``optimizer`` given (fine-tuning), its ``lr``/``lr_head`` are multiplied by the
    section's ``lr_scale``; without it (source training) the section names its own optimizer.
    """
    s = dict(section)
    lr_scale = float(s.pop("lr_scale", 1.0))
    if optimizer is not None:
        opt = dict(optimizer)
        s["optimizer"] = opt.get("name")
        s["lr"] = None if opt.get("lr") is None else float(opt["lr"]) * lr_scale
        s["lr_head"] = None if opt.get("lr_head") is None else float(opt["lr_head"]) * lr_scale
        s["weight_decay"] = opt.get("weight_decay")
        s["momentum"] = opt.get("momentum")
        s["optimizer_kwargs"] = dict(opt.get("kwargs") or {})
    else:
        kwargs = dict(s.pop("optimizer_kwargs", None) or {})
        if "nesterov" in s:
            kwargs["nesterov"] = s.pop("nesterov")
        s["optimizer_kwargs"] = kwargs
    if scheduler is not None:
        s["scheduler"] = scheduler.get("name", "cosine")
        s["warmup_iters"] = int(scheduler.get("warmup_iters", 0) or 0)
    s.setdefault("seed", seed)
    return _wrap(key, lambda: TrainConfig(**s))


def build_calibration(
    spec: Mapping[str, Any], finetune: TrainConfig, seed: int
) -> CalibrationConfig:
    spec = dict(spec)
    pcv_spec = spec.pop("pcv", None)
    pcv = None
    if pcv_spec is not None:
        pcv_spec = dict(pcv_spec)
        ft_override = pcv_spec.pop("finetune", None)
        pcv_ft = None
        if ft_override:
            pcv_ft = _wrap(
                "calibration.pcv.finetune",
                lambda: TrainConfig(**{**finetune.__dict__, **dict(ft_override)}),
            )
        pcv_spec.setdefault("seed", seed)
        pcv = _wrap("calibration.pcv", lambda: PCVConfig(**pcv_spec, finetune=pcv_ft))
    return _wrap("calibration", lambda: CalibrationConfig(**spec, pcv=pcv))


@dataclass
class RunPlan:
    """Everything one run needs, built and validated; :meth:`run` executes it."""

    name: str
    run_dir: Path
    target: Domain
    split: ClassSplit
    make_model: Callable[[], nn.Module]
    finetune: TrainConfig
    calibration: CalibrationConfig
    eval: EvalConfig
    source: Domain | None = None
    source_train: TrainConfig | None = None
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def run(self) -> dict[str, Any]:
        return run_pipeline(
            target=self.target,
            split=self.split,
            make_model=self.make_model,
            finetune=self.finetune,
            run_dir=self.run_dir,
            calibration=self.calibration,
            source=self.source,
            source_train=self.source_train,
            eval=self.eval,
            device=self.device,
            seed=self.seed,
            progress=self.progress,
            title=self.name,
            meta=self.meta,
        )


def build_plan(cfg: Mapping[str, Any], run_dir: str | os.PathLike | None = None) -> RunPlan:
    """Validate ``cfg`` (the keys of ``conf/config.yaml``) and build a :class:`RunPlan`.

    Raises:
        ConfigError: a value is missing or invalid (the message names the key).
        calib.data.DatasetNotFoundError: a dataset is not on disk in the expected layout.
    """
    seed = int(cfg.get("seed", 0))
    name = str(cfg.get("name", "run"))
    run_dir = Path(run_dir or cfg.get("run_dir") or os.path.join("outputs", name))

    target = domain_from_config(_section(cfg, "dataset"), "dataset")
    source_spec = cfg.get("source")
    source = domain_from_config(source_spec, "source") if source_spec else None
    if source is not None and source.num_classes != target.num_classes:
        raise ConfigError(
            f"source has {source.num_classes} classes but the target has {target.num_classes}: "
            "both domains must share one label space"
        )
    split = build_split(_section(cfg, "split"), target.num_classes)

    finetune = build_train_config(
        _section(cfg, "finetune"),
        optimizer=_section(cfg, "optimizer"),
        scheduler=_section(cfg, "scheduler"),
        seed=seed,
        key="finetune",
    )
    source_train = None
    if source is not None:
        source_train = build_train_config(
            _section(cfg, "source_train"),
            optimizer=None,
            scheduler=None,
            seed=seed,
            key="source_train",
        )
    calibration = build_calibration(_section(cfg, "calibration"), finetune, seed)
    eval_cfg = _wrap("eval", lambda: EvalConfig(**_section(cfg, "eval")))

    model_spec = _section(cfg, "model")
    model_name = model_spec.pop("name", None)
    if not model_name:
        raise ConfigError("model.name is required")
    model_kwargs = dict(model_spec.pop("kwargs", None) or {})
    if model_kwargs.get("class_names") == "from_dataset":  # e.g. a CLIP zero-shot head
        model_kwargs["class_names"] = list(target.class_names)
    make_model = functools.partial(
        create_model,
        model_name,
        target.num_classes,
        pretrained=model_spec.pop("pretrained", False),
        weights=model_spec.pop("weights", None),
        **model_kwargs,
        **model_spec,
    )
    _wrap("model", make_model)  # builds once now so that a bad model config fails at start

    return RunPlan(
        name=name,
        run_dir=run_dir,
        target=target,
        split=split,
        make_model=make_model,
        finetune=finetune,
        calibration=calibration,
        eval=eval_cfg,
        source=source,
        source_train=source_train,
        device=str(cfg.get("device", "auto")),
        seed=seed,
        progress=bool(cfg.get("progress", True)),
        meta={
            "name": name,
            "seed": seed,
            "model": model_name,
            "optimizer": finetune.optimizer,
            "dataset": target.name,
            "source": None if source is None else source.name,
        },
    )
