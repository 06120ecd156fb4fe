"""Deprecated location: the pipeline lives in :mod:`calib.run.pipeline` (settings in
:mod:`calib.run.settings`)."""

from .run.pipeline import run_pipeline  # noqa: F401
from .run.settings import CalibrationConfig, EvalConfig, PCVConfig  # noqa: F401

__all__ = ["PCVConfig", "CalibrationConfig", "EvalConfig", "run_pipeline"]
