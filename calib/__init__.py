"""calib: post-fine-tuning logit calibration.

A classifier fine-tuned on a target domain where only the classes S appear stops
predicting the absent classes U. Adding one bias γ to the logits of U restores them
("Fine-Tuning is Fine, if Calibrated", Mai et al., NeurIPS 2024).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it. Resolved on first access (see __getattr__).
_API = {
    "accuracy_report": "calib.metrics",
    "seen_absent_curve": "calib.curve",
    "SeenAbsentCurve": "calib.curve",
    "ausuc": "calib.curve",
    "ncm_report": "calib.ncm",
    "LogitBiasCalibrator": "calib.calibrator",
    "PseudoSplit": "calib.selectors",
    "CalibratedClassifier": "calib.wrapper",
    "calibrate": "calib.wrapper",
    "Registry": "calib.registry",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'calib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
