"""The estimator: :class:`LogitBiasCalibrator` (scikit-learn's contract), its file format and its
temperature.

- :mod:`calib.estimator.calibrator`: fit γ with a selector, predict, transform, score, report.
- :mod:`calib.estimator.temperature`: the NLL-optimal temperature after γ, and the estimator's
  ``temperature`` parameter (what it may be fitted on).
- :mod:`calib.estimator.file`: the JSON file format (exact round trip).
"""

from __future__ import annotations

from calib.estimator.calibrator import LogitBiasCalibrator, NotFittedError

__all__ = ["LogitBiasCalibrator", "NotFittedError"]
