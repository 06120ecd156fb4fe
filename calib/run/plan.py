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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..data import DATASETS, ClassSplit, Domain
from ..train import TrainConfig
from .identity import identity_leaves
from .schema import ConfigError, check_config
from .settings import CalibrationConfig, EvalConfig, PCVConfig
from .stages import StageStore

__all__ = ["ConfigError", "RunPlan", "build_plan", "build_split", "build_train_config"]


def _section(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = cfg.get(key)
    return {} if value is None else dict(value)


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


def source_spec(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The source domain's builder arguments: ``source`` over ``dataset`` when both name the
    same dataset (a source domain of the target's dataset shares its root and image settings,
    so an experiment only sets what differs, e.g. ``source.domain``)."""
    source = cfg.get("source")
    if not source:
        return None
    source = dict(source)
    dataset = _section(cfg, "dataset")
    if source.get("name", dataset.get("name")) == dataset.get("name"):
        return {**dataset, **source}
    return source


def build_split(spec: Mapping[str, Any], num_classes: int) -> ClassSplit:
    """The seen/absent class split from the ``split`` config section.

    ``kind``: ``explicit`` (``seen``, ``absent`` or null = the rest), ``random`` (``n_seen`` or
    ``seen_fraction`` (n_seen = ⌊fraction · C⌋), ``n_absent`` or null, ``seed``), ``benchmark``
    (``benchmark``, ``source`` for Office-Home). A key of another kind must stay null.
    """
    kind = spec.get("kind", "random")
    used = {
        "explicit": {"seen", "absent"},
        "random": {"n_seen", "seen_fraction", "n_absent", "seed"},
        "benchmark": {"benchmark", "source"},
    }
    if kind not in used:
        raise ConfigError(f"split.kind must be explicit, random or benchmark, got {kind!r}")
    stray = sorted(
        k for k, v in spec.items() if k not in used[kind] | {"kind", "seed"} and v is not None
    )
    if stray:
        raise ConfigError(
            f"split.{stray[0]} is not used with split.kind={kind} (it takes "
            f"{', '.join(sorted(used[kind]))}); set it to null"
        )

    def make() -> ClassSplit:
        if kind == "explicit":
            if spec.get("seen") is None:
                raise ConfigError("split.seen is required with split.kind=explicit")
            return ClassSplit.explicit(spec["seen"], spec.get("absent"), num_classes=num_classes)
        if kind == "random":
            return ClassSplit.random(
                num_classes,
                _n_seen(spec, num_classes),
                spec.get("n_absent"),
                seed=spec.get("seed", 0),
            )
        if spec.get("benchmark") is None:
            raise ConfigError("split.benchmark is required with split.kind=benchmark")
        split = ClassSplit.from_benchmark(spec["benchmark"], source=spec.get("source"))
        if split.num_classes != num_classes:
            raise ConfigError(
                f"split.benchmark={spec['benchmark']} is a {split.num_classes}-class split "
                f"but the dataset has {num_classes} classes"
            )
        return split

    return _wrap("split", make)


def _n_seen(spec: Mapping[str, Any], num_classes: int) -> int:
    n_seen, fraction = spec.get("n_seen"), spec.get("seen_fraction")
    if (n_seen is None) == (fraction is None):
        raise ConfigError(
            "split.kind=random takes exactly one of split.n_seen, split.seen_fraction"
        )
    if n_seen is not None:
        return int(n_seen)
    if not 0 < fraction < 1:
        raise ConfigError(f"split.seen_fraction must be in (0, 1), got {fraction!r}")
    return max(1, int(fraction * num_classes))


def build_train_config(
    section: Mapping[str, Any],
    *,
    optimizer: Mapping[str, Any] | None,
    scheduler: Mapping[str, Any] | None,
    seed: int,
    key: str,
) -> TrainConfig:
    """A :class:`~calib.train.TrainConfig` from a training section plus optimizer/scheduler groups.

    With ``optimizer`` given (fine-tuning), the optimizer's lr and head lr (its registry
    defaults where the group leaves them null) are multiplied by the section's ``lr_scale``;
    without it (source training) the section names its own optimizer.
    """
    s = dict(section)
    lr_scale = s.pop("lr_scale", 1.0)
    if optimizer is not None:
        opt = dict(optimizer)
        s.update(
            optimizer=opt.get("name"),
            lr=opt.get("lr"),
            lr_head=opt.get("lr_head"),
            weight_decay=opt.get("weight_decay"),
            momentum=opt.get("momentum"),
            optimizer_kwargs=dict(opt.get("kwargs") or {}),
        )
    else:
        kwargs = dict(s.pop("optimizer_kwargs", None) or {})
        if "nesterov" in s:
            kwargs["nesterov"] = s.pop("nesterov")
        s["optimizer_kwargs"] = kwargs
    if scheduler is not None:
        s["scheduler"] = scheduler.get("name", "cosine")
        s["warmup_iters"] = int(scheduler.get("warmup_iters", 0) or 0)
        if scheduler.get("min_lr") is not None:
            s["min_lr"] = scheduler["min_lr"]
    s.setdefault("seed", seed)
    cfg = _wrap(key, lambda: TrainConfig(**s))
    return cfg if lr_scale == 1.0 else _wrap(key, lambda: _scaled(cfg, float(lr_scale)))


def _scaled(cfg: TrainConfig, scale: float) -> TrainConfig:
    with_scale = getattr(cfg, "with_lr_scale", None)
    if callable(with_scale):
        return with_scale(scale)
    from ..train.optim import OPTIMIZERS

    spec = OPTIMIZERS.get(cfg.optimizer)
    lr = spec.lr if cfg.lr is None else cfg.lr
    lr_head = cfg.lr_head if cfg.lr_head is not None else (getattr(spec, "lr_head", None) or lr)
    return dataclasses.replace(cfg, lr=lr * scale, lr_head=lr_head * scale)


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
                lambda: dataclasses.replace(finetune, **dict(ft_override)),
            )
        pcv_spec.setdefault("seed", seed)
        pcv = _wrap("calibration.pcv", lambda: PCVConfig(**pcv_spec, finetune=pcv_ft))
    options = {k: dict(v or {}) for k, v in (spec.pop("options", None) or {}).items()}
    return _wrap("calibration", lambda: CalibrationConfig(**spec, options=options, pcv=pcv))


def _import_plugins(modules: list[str]) -> None:
    """Import what ``imports`` lists — module names or ``.py`` files — so that the models,
    selectors or data sets they register can be named by the rest of the config."""
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


def _resolve_progress(value: Any) -> bool:
    return sys.stderr.isatty() if value == "auto" else bool(value)


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
    cache_dir: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None

    @property
    def identity(self) -> dict[str, Any]:
        """The config leaves that can change a number (see :mod:`calib.run.identity`)."""
        return identity_leaves(self.config)

    def stages(self):
        """The run's stages with their keys (:class:`calib.run.stage_plan.StagePlan`)."""
        from .pipeline import model_identity
        from .stage_plan import plan_stages

        return plan_stages(
            target=self.target,
            split=self.split,
            model_identity=model_identity(self._model()),
            finetune=self.finetune,
            calibration=self.calibration,
            eval_cfg=self.eval,
            source=self.source,
            source_train=self.source_train,
            seed=self.seed,
            config_leaves=self.identity,
        )

    def _model(self) -> nn.Module:
        if self.model is None:
            import torch

            torch.manual_seed(self.seed)
            self.model = self.make_model()
        return self.model

    def run(self) -> dict[str, Any]:
        from .pipeline import run_pipeline

        model, self.model = self._model(), None  # trained in place: a second run rebuilds it
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
            cache_dir=self.cache_dir,
            config_leaves=self.identity,
            config_record=self.config,
            model=model,
        )


def build_plan(cfg: Mapping[str, Any], run_dir: str | os.PathLike | None = None) -> RunPlan:
    """Validate ``cfg`` (the keys of ``conf/config.yaml``) and build a :class:`RunPlan`.

    Raises:
        ConfigError: a value is missing or invalid (the message names the key).
        calib.data.DatasetNotFoundError: a dataset is not on disk in the expected layout.
        calib.run.StaleRunError: ``run_dir`` holds a run made with other settings.
    """
    cfg = dict(cfg)
    check_config(cfg)
    _import_plugins(list(cfg.get("imports") or []))
    seed = int(cfg.get("seed", 0))
    name = str(cfg.get("name", "run"))
    run_dir = Path(run_dir or cfg.get("run_dir") or os.path.join("outputs", name))
    # a folder made with other settings is refused now, before any data set or model is built
    StageStore(run_dir).check_config(identity_leaves(cfg))
    device = str(cfg.get("device", "auto"))
    from .dry_run import check_device

    check_device(device)

    target = domain_from_config(_section(cfg, "dataset"), "dataset")
    src = source_spec(cfg)
    source = domain_from_config(src, "source") if src else None
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
    make_model, model_name = _model_factory(_section(cfg, "model"), target)

    plan = RunPlan(
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
        device=device,
        seed=seed,
        progress=_resolve_progress(cfg.get("progress", "auto")),
        cache_dir=None if cfg.get("cache_dir") is None else Path(cfg["cache_dir"]),
        meta={
            "name": name,
            "seed": seed,
            "model": model_name,
            "optimizer": finetune.optimizer,
            "dataset": target.name,
            "source": None if source is None else source.name,
            "config": cfg,
        },
        config=cfg,
    )
    from .dry_run import dry_run

    dry_run(plan)  # builds the model once (kept for the run) and runs one batch through it
    return plan


def _model_factory(spec: dict[str, Any], target: Domain) -> tuple[Callable[[], nn.Module], str]:
    from ..models import create_model

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
