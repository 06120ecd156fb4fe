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

import copy
import functools
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..data import ClassSplit, Domain
from ..train import TrainConfig
from .identity import identity_leaves
from .schema import ConfigError, check_config
from .sections import (
    build_calibration,
    build_method,
    build_split,
    build_train_config,
    domain_from_config,
    section,
    source_spec,
    wrap,
)
from .settings import CalibrationConfig, EvalConfig, MethodConfig
from .stages import StageStore

__all__ = ["ConfigError", "RunPlan", "build_plan", "build_split", "build_train_config"]


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
    method: MethodConfig
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
    title: str | None = None  # of the table and figures; default ``name``

    @property
    def identity(self) -> dict[str, Any]:
        """The config leaves that can change a number (see :mod:`calib.run.identity`)."""
        return identity_leaves(self.config)

    def stages(self, config_leaves: Mapping[str, Any] | None = None):
        """The run's stages with their keys (:class:`calib.run.stage_plan.StagePlan`).

        ``config_leaves``: the identity leaves to fold in (default the plan's own; ``{}`` keys
        the stages by the built objects alone, as for a Python caller of ``run_pipeline``).
        """
        from .pipeline import model_identity
        from .stage_plan import plan_stages

        return plan_stages(
            target=self.target,
            split=self.split,
            model_identity=model_identity(self._model()),
            finetune=self.finetune,
            method=self.method,
            calibration=self.calibration,
            eval_cfg=self.eval,
            source=self.source,
            source_train=self.source_train,
            seed=self.seed,
            config_leaves=self.identity if config_leaves is None else config_leaves,
        )

    def _model(self) -> nn.Module:
        if self.model is None:
            import torch

            torch.manual_seed(self.seed)
            self.model = self.make_model()
        return self.model

    def run(self) -> dict[str, Any]:
        from .pipeline import run_pipeline

        # a copy is trained: the plan's model (shared by dataclasses.replace copies of the plan)
        # stays the untrained one that stages() keys the run by
        model = copy.deepcopy(self._model())
        return run_pipeline(
            target=self.target,
            split=self.split,
            make_model=self.make_model,
            finetune=self.finetune,
            method=self.method,
            run_dir=self.run_dir,
            calibration=self.calibration,
            source=self.source,
            source_train=self.source_train,
            eval=self.eval,
            device=self.device,
            seed=self.seed,
            progress=self.progress,
            title=self.title or self.name,
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

    target, source = _domains(cfg)
    split = build_split(section(cfg, "split"), target.num_classes)
    finetune, source_train = _train_configs(cfg, seed, with_source=source is not None)
    method = build_method(section(cfg, "finetune"))
    calibration = build_calibration(section(cfg, "calibration"), finetune, seed)
    eval_cfg = wrap("eval", lambda: EvalConfig(**section(cfg, "eval")))
    make_model, model_name = _model_factory(section(cfg, "model"), target)

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
            "config": cfg,
        },
        config=cfg,
    )
    from .dry_run import dry_run

    dry_run(plan)  # builds the model once (kept for the run) and runs one batch through it
    return plan


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


def _train_configs(
    cfg: Mapping[str, Any], seed: int, with_source: bool
) -> tuple[TrainConfig, TrainConfig | None]:
    """The fine-tuning config (``finetune`` + ``optimizer`` + ``scheduler``) and the source's."""
    finetune = build_train_config(
        section(cfg, "finetune"),
        optimizer=section(cfg, "optimizer"),
        scheduler=section(cfg, "scheduler"),
        seed=seed,
        key="finetune",
    )
    if not with_source:
        return finetune, None
    source_train = build_train_config(
        section(cfg, "source_train"), optimizer=None, scheduler=None, seed=seed, key="source_train"
    )
    return finetune, source_train


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
