"""The run harness: settings → plan → stages → results.

- :mod:`~calib.run.schema`: the typed config schema, checked before anything is built.
- :mod:`~calib.run.settings`: ``CalibrationConfig``, ``PCVConfig``, ``EvalConfig``.
- :mod:`~calib.run.plan`: ``build_plan`` (config mapping → validated :class:`RunPlan`),
  with a dry run of the model and every optimizer (:mod:`~calib.run.plan`).
- :mod:`~calib.run.identity`, :mod:`~calib.run.stage_plan`, :mod:`~calib.run.stages`: what
  each stage depends on, its key, and the run folder's records that refuse stale numbers.
- :mod:`~calib.run.runner`, :mod:`~calib.run.source_cache`: cached, resumable training and
  extraction; source models shared between runs.
- :mod:`~calib.run.pipeline`: :class:`RunPlan` (the built run and its stages, planned once)
  and ``run_pipeline(plan)``, the stages in order.
- :mod:`~calib.run.results`, :mod:`~calib.run.collate`: results schema, the one table
  renderer, and collation of many runs.

The harness uses the core (metrics, selectors, calibrator) and never imports Hydra.
"""

import importlib
from typing import TYPE_CHECKING

# Public name -> module. Loaded on first access, so that `calib.run.schema` (the config check
# of `calib-run`) is importable without torch.
_API = {
    "NON_IDENTITY_KEYS": "identity",
    "identity_leaves": "identity",
    "run_pipeline": "pipeline",
    "RunPlan": "plan",
    "build_plan": "plan",
    "build_split": "sections",
    "build_train_config": "sections",
    "ConfigError": "schema",
    "check_config": "schema",
    "CalibrationConfig": "settings",
    "EvalConfig": "settings",
    "PCVConfig": "settings",
    "StaleRunError": "stages",
}

if TYPE_CHECKING:
    from calib.run.identity import NON_IDENTITY_KEYS, identity_leaves
    from calib.run.pipeline import run_pipeline
    from calib.run.plan import RunPlan, build_plan
    from calib.run.schema import ConfigError, check_config
    from calib.run.sections import build_split, build_train_config
    from calib.run.settings import CalibrationConfig, EvalConfig, PCVConfig
    from calib.run.stages import StaleRunError

__all__ = [
    "NON_IDENTITY_KEYS",
    "CalibrationConfig",
    "ConfigError",
    "EvalConfig",
    "PCVConfig",
    "RunPlan",
    "StaleRunError",
    "build_plan",
    "build_split",
    "build_train_config",
    "check_config",
    "identity_leaves",
    "run_pipeline",
]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'calib.run' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
