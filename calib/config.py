"""Deprecated location: the plan builder lives in :mod:`calib.run.plan`."""

from .run.plan import (  # noqa: F401
    ConfigError,
    RunPlan,
    build_calibration,
    build_plan,
    build_split,
    build_train_config,
    domain_from_config,
)

__all__ = ["ConfigError", "RunPlan", "build_plan", "build_split", "build_train_config"]
