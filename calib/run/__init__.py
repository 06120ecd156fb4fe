"""The run harness: settings → plan → stages → results.

- :mod:`~calib.run.schema`: the typed config schema, checked before anything is built.
- :mod:`~calib.run.settings`: ``CalibrationConfig``, ``PCVConfig``, ``EvalConfig``.
- :mod:`~calib.run.plan`: ``build_plan`` (config mapping → validated :class:`RunPlan`),
  with a dry run of the model and every optimizer (:mod:`~calib.run.dry_run`).
- :mod:`~calib.run.identity`, :mod:`~calib.run.stage_plan`, :mod:`~calib.run.stages`: what
  each stage depends on, its key, and the run folder's records that refuse stale numbers.
- :mod:`~calib.run.runner`, :mod:`~calib.run.source_cache`: cached, resumable training and
  extraction; source models shared between runs.
- :mod:`~calib.run.pipeline`: ``run_pipeline``, the stages in order.
- :mod:`~calib.run.results`, :mod:`~calib.run.collate`: results schema, the one table
  renderer, and collation of many runs.

The harness uses the core (metrics, selectors, calibrator) and never imports Hydra.
"""

from .identity import NON_IDENTITY_KEYS, identity_leaves
from .pipeline import run_pipeline
from .plan import RunPlan, build_plan, build_split, build_train_config
from .schema import ConfigError
from .settings import CalibrationConfig, EvalConfig, PCVConfig
from .stages import StaleRunError

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
    "identity_leaves",
    "run_pipeline",
]
