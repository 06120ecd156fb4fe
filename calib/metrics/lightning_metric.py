"""A ``torchmetrics.Metric`` around :class:`calib.metrics.streaming.SeenAbsentState`, for Lightning.

Optional: importing this module needs ``torchmetrics`` (``pip install torchmetrics``); nothing
else in calib imports it. Use it like any torchmetrics metric::

    from calib.metrics.lightning_metric import SeenAbsentMetric

    metric = SeenAbsentMetric(num_classes=C, seen_classes=S, gamma=0.0, topk=(1, 5))
    # in a LightningModule:  self.val_metric = metric
    # validation_step:       self.val_metric.update(logits, labels)
    # on_validation_epoch_end: self.log_dict(self.val_metric.compute()); self.val_metric.reset()

Each ``update`` reduces the batch where the logits are to O(1) numbers per sample (the gap and
hit flags of :mod:`calib.rules.gaps`), kept as list states that torchmetrics concatenates over
batches and gathers over processes (``dist_reduce_fx="cat"``, uneven shards allowed). ``compute``
returns the keys of :func:`calib.accuracy_report` at ``gamma`` (Acc Y/Y, S/Y, U/Y, S/S, U/U,
hmean, and ``_top{k}``) and ``ausuc``, each a 0-d float64 tensor, equal to what the
whole-matrix functions give on every sample seen. After torchmetrics' gather the samples come
in rank order (rank 0's, then rank 1's, ...): counts are exact whatever the order; weighted
and class-balanced sums may differ from one process's in the last bits (for the data-set order
use :meth:`calib.metrics.streaming.SeenAbsentState.sync`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from calib.metrics.streaming import SeenAbsentState
from calib.validation import check_average, check_real

__all__ = ["SeenAbsentMetric"]

#: The per-sample columns kept as list states (``rank``: one column per γ: here one).
_STATES = ("gap", "hit_other", "hit_absent", "hit_seen", "label", "weight")
_RANKS = ("rank", "rank_seen", "rank_absent")


class SeenAbsentMetric(Metric):
    """Acc S/Y, U/Y, Y/Y, hmean (top-1 and top-k) at a bias γ, and AUSUC, as a torchmetrics metric.

    Args:
        num_classes: C, the logits' width.
        seen_classes: the fine-tuning classes S; absent_classes: U (default: every other column).
        gamma: the bias added to U for the accuracies (logit units); AUSUC covers every γ.
        topk: besides top-1, the k > 1 to report (keys suffixed ``_top{k}``).
        average: ``"micro"`` (per sample) or ``"macro"`` (class-balanced).
        class_names: (C,) one name per logit column (index = label), so that S and U may be
            given by name; kept by the metric's :class:`SeenAbsentState` (``class_names``).
        **kwargs: passed to ``torchmetrics.Metric`` (``dist_sync_on_step``, ``process_group``,
            ...).

    ``update(preds, target, sample_weight=None)``: ``preds`` (n, C) logits of any float dtype
    on any device, ``target`` (n,) labels, ``sample_weight`` (n,) weights ≥ 0 or None.
    Errors of bad input are those of :meth:`SeenAbsentState.update`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        seen_classes: Any,
        absent_classes: Any = None,
        gamma: float = 0.0,
        topk: Iterable[int] = (1,),
        average: str = "micro",
        *,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gamma = check_real(gamma, "gamma")
        self.average = check_average(average)
        # the settings and the reduction of one batch; it never holds samples itself
        self._template = SeenAbsentState(
            num_classes,
            seen_classes,
            absent_classes,
            topk=topk,
            gammas=(self.gamma,),
            class_names=class_names,
        )
        names = _STATES + (_RANKS if self._template.topk else ())
        for name in names:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Any, target: Any, sample_weight: Any = None) -> None:
        """Reduce one batch to its per-sample values (on the logits' device) and keep them."""
        cols = self._template.reduce(preds, target, sample_weight)
        if "weight" not in cols:  # every batch keeps a weight, so that batches concatenate
            cols["weight"] = np.ones(cols["gap"].shape[0])
        for name in self._defaults:
            value = cols[name]
            if value.dtype == np.bool_:
                value = value.astype(np.uint8)  # gloo and NCCL gather bytes, not bools
            getattr(self, name).append(torch.from_numpy(value).to(self.device))

    def state(self) -> SeenAbsentState:
        """Every sample so far (after a sync: of every process) as a :class:`SeenAbsentState`."""
        state = SeenAbsentState(
            self._template.num_classes,
            self._template.seen_classes,
            self._template.absent_classes,
            topk=(1, *self._template.topk),
            gammas=self._template.gammas,
            class_names=self._template.class_names,
        )
        if isinstance(self.gap, list) and not self.gap:
            return state  # no update yet: reading it says so
        cols = {name: dim_zero_cat(getattr(self, name)) for name in self._defaults}
        return state.extend({name: value.cpu().numpy() for name, value in cols.items()})

    def compute(self) -> dict[str, torch.Tensor]:
        """The report's accuracies at ``gamma`` and ``ausuc``, 0-d float64 tensors."""
        state = self.state()
        report = state.report(self.gamma, average=self.average)
        out = {key: value for key, value in report.items() if key.startswith(("acc_", "hmean"))}
        out["ausuc"] = state.ausuc(self.average)
        return {
            key: torch.tensor(value, dtype=torch.float64, device=self.device)
            for key, value in out.items()
        }
