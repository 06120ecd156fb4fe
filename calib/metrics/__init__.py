"""The metrics of the seen/absent setting, each exact and checked against brute force in tests.

- :mod:`calib.metrics.accuracy`: :func:`accuracy_report` — Acc S/Y, U/Y, Y/Y, S/S, U/U, hmean
  (top-1 and top-k) at one γ.
- :mod:`calib.metrics.curve`: :func:`seen_absent_curve` over every γ, exact, and its area
  :func:`ausuc`.
- :mod:`calib.metrics.ncm`: the nearest-class-mean classifier on features.
- :mod:`calib.metrics.probability`: ECE, NLL, Brier and reliability diagrams after γ and T.
- :mod:`calib.metrics.binning`: the confidence bins of ECE and the diagrams.
- :mod:`calib.metrics.premise`: :func:`premise_check` — did fine-tuning keep what γ needs
  (U/U against a paired noise bound, AUSUC, the selectors' spread), or can no γ help?
- :mod:`calib.metrics.weights`: the per-sample weights of ``sample_weight=`` and of the
  class-balanced ``average="macro"`` that the accuracies, the curve, AUSUC, NCM and the
  probability report take.
- :mod:`calib.metrics.streaming`: :class:`SeenAbsentState` — the curve, AUSUC and reports from
  a stream of logit batches in O(N) memory (merge, sync across processes), and the γ of
  alg/prior/oracle/pcv from states.
- :mod:`calib.metrics.lightning_metric` (needs torchmetrics; not imported here):
  :class:`SeenAbsentMetric`, a ``torchmetrics.Metric`` around the state.
"""

from __future__ import annotations

from calib.metrics.accuracy import accuracy_report, harmonic_mean
from calib.metrics.curve import SeenAbsentCurve, ausuc, seen_absent_curve
from calib.metrics.ncm import ncm_report
from calib.metrics.premise import PremiseCheck, paired_drop_bound, premise_check
from calib.metrics.probability import probability_report, reliability_diagram
from calib.metrics.streaming import SeenAbsentState

__all__ = [
    "PremiseCheck",
    "SeenAbsentCurve",
    "SeenAbsentState",
    "accuracy_report",
    "ausuc",
    "harmonic_mean",
    "ncm_report",
    "paired_drop_bound",
    "premise_check",
    "probability_report",
    "reliability_diagram",
    "seen_absent_curve",
]
