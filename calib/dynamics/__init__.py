"""Training dynamics: evaluate the model during fine-tuning and keep the history.

- :mod:`calib.dynamics.stats`: pure statistics of the head (weight norms, update similarity)
  and of the logits (seen vs absent, ground truth vs other absent classes).
- :mod:`calib.dynamics.record`: one epoch's flat history row (:data:`HISTORY_KEYS`).
- :mod:`calib.dynamics.history`: ``history.jsonl`` / ``history.csv`` / ``history/*.npz``,
  resumable, rank 0 only.
- :mod:`calib.dynamics.evaluator`: :class:`EpochEvaluator`, the ``on_epoch_end`` callback of
  :func:`calib.train.train`.

The figures drawn from a history are in :mod:`calib.figures.dynamics`.
"""

from __future__ import annotations

from calib.dynamics.evaluator import EpochEvaluator, linear_head_weight
from calib.dynamics.history import (
    HistoryWriter,
    epochs_with_arrays,
    read_epoch_arrays,
    read_history,
)
from calib.dynamics.record import HISTORY_KEYS, epoch_evaluation, epoch_record
from calib.dynamics.stats import head_statistics, logit_statistics, mean_cosine

__all__ = [
    "EpochEvaluator",
    "HISTORY_KEYS",
    "HistoryWriter",
    "epoch_evaluation",
    "epoch_record",
    "epochs_with_arrays",
    "head_statistics",
    "linear_head_weight",
    "logit_statistics",
    "mean_cosine",
    "read_epoch_arrays",
    "read_history",
]
