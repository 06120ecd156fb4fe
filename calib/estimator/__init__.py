"""The estimator: :class:`LogitBiasCalibrator` (scikit-learn's contract), its file format and its
temperature.

- :mod:`calib.estimator.calibrator`: fit γ with a selector, predict, transform, score, report.
- :mod:`calib.estimator.temperature`: the NLL-optimal temperature after γ, and the estimator's
  ``temperature`` parameter (what it may be fitted on).
- :mod:`calib.estimator.file`: the JSON file format (exact round trip).
- The post-hoc alternatives to one γ, with the same contract
  (:mod:`calib.estimator.correction`): :mod:`calib.estimator.weight_aligning` (``wa``),
  :mod:`calib.estimator.bias_correction` (``bic``), :mod:`calib.estimator.pretrained_ensemble`
  (``gla``).
"""

from __future__ import annotations

from calib.estimator.bias_correction import BiasCorrection
from calib.estimator.calibrator import LogitBiasCalibrator, NotFittedError
from calib.estimator.correction import LogitCorrection
from calib.estimator.pretrained_ensemble import PretrainedEnsemble
from calib.estimator.weight_aligning import WeightAligning

__all__ = [
    "LogitBiasCalibrator",
    "NotFittedError",
    "LogitCorrection",
    "WeightAligning",
    "BiasCorrection",
    "PretrainedEnsemble",
]
