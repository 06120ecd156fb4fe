"""calib: post-fine-tuning logit calibration.

A classifier fine-tuned on a target domain where only the classes S appear stops
predicting the absent classes U. Adding one bias γ to the logits of U restores them
("Fine-Tuning is Fine, if Calibrated", Mai et al., NeurIPS 2024).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> module that defines it. Resolved on first access (see __getattr__), so that
# `import calib` stays light: the metrics need neither timm, matplotlib nor the data sets.
_API = {
    "accuracy_report": "calib.metrics.accuracy",
    "seen_absent_curve": "calib.metrics.curve",
    "SeenAbsentCurve": "calib.metrics.curve",
    "ausuc": "calib.metrics.curve",
    "SeenAbsentState": "calib.metrics.streaming",
    "ncm_report": "calib.metrics.ncm",
    "premise_check": "calib.metrics.premise",
    "PremiseCheck": "calib.metrics.premise",
    "LogitBiasCalibrator": "calib.estimator.calibrator",
    "WeightAligning": "calib.estimator.weight_aligning",
    "BiasCorrection": "calib.estimator.bias_correction",
    "PretrainedEnsemble": "calib.estimator.pretrained_ensemble",
    "PseudoSplit": "calib.selectors",
    "make_pseudo_splits": "calib.pseudo_cv",
    "Stage": "calib.sequence",
    "StageResult": "calib.sequence",
    "finetune_sequence": "calib.sequence",
    "NotFittedError": "calib.estimator.calibrator",
    "SELECTORS": "calib.selectors",
    "SelectorSpec": "calib.selectors",
    "register_selector": "calib.selectors",
    "CalibratedClassifier": "calib.wrapper",
    "calibrate": "calib.wrapper",
    "extraction_loader": "calib.extract",
    "Extracted": "calib.extract",
    "ClassSplit": "calib.data",
    "Domain": "calib.data",
    "create_model": "calib.models",
    "Classifier": "calib.models",
    "TrainConfig": "calib.train",
    "run_pipeline": "calib.run.pipeline",
    "build_plan": "calib.run.plan",
    "Registry": "calib.registry",
    "infer_seen_classes": "calib.class_names",
}

if TYPE_CHECKING:  # explicit imports for type checkers and IDEs; at run time they load lazily
    from calib.class_names import infer_seen_classes
    from calib.data import ClassSplit, Domain
    from calib.estimator.bias_correction import BiasCorrection
    from calib.estimator.calibrator import LogitBiasCalibrator, NotFittedError
    from calib.estimator.pretrained_ensemble import PretrainedEnsemble
    from calib.estimator.weight_aligning import WeightAligning
    from calib.extract import Extracted, extraction_loader
    from calib.metrics.accuracy import accuracy_report
    from calib.metrics.curve import SeenAbsentCurve, ausuc, seen_absent_curve
    from calib.metrics.ncm import ncm_report
    from calib.metrics.premise import PremiseCheck, premise_check
    from calib.metrics.streaming import SeenAbsentState
    from calib.models import Classifier, create_model
    from calib.pseudo_cv import make_pseudo_splits
    from calib.registry import Registry
    from calib.run.pipeline import run_pipeline
    from calib.run.plan import build_plan
    from calib.selectors import SELECTORS, PseudoSplit, SelectorSpec, register_selector
    from calib.sequence import Stage, StageResult, finetune_sequence
    from calib.train import TrainConfig
    from calib.wrapper import CalibratedClassifier, calibrate

__all__ = [
    "BiasCorrection",
    "CalibratedClassifier",
    "ClassSplit",
    "Classifier",
    "Domain",
    "Extracted",
    "LogitBiasCalibrator",
    "NotFittedError",
    "PremiseCheck",
    "PretrainedEnsemble",
    "PseudoSplit",
    "Registry",
    "SELECTORS",
    "SeenAbsentCurve",
    "SeenAbsentState",
    "SelectorSpec",
    "Stage",
    "StageResult",
    "TrainConfig",
    "WeightAligning",
    "accuracy_report",
    "ausuc",
    "build_plan",
    "calibrate",
    "create_model",
    "extraction_loader",
    "finetune_sequence",
    "infer_seen_classes",
    "make_pseudo_splits",
    "ncm_report",
    "premise_check",
    "register_selector",
    "run_pipeline",
    "seen_absent_curve",
    "__version__",
]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'calib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
