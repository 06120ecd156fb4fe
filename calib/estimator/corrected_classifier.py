"""``CorrectedClassifier``: a model (and, for ``gla``, the pre-trained model) with a fitted
post-hoc correction applied to its logits: the ``CalibratedClassifier`` of ``wa``, ``bic``, ``gla``.

It imports torch (not imported by :mod:`calib.estimator`): ``from
calib.estimator.corrected_classifier import CorrectedClassifier``. The output is the
correction's :meth:`~calib.estimator.correction.LogitCorrection.transform` of the model's logits
(float64, on the logits' device), so its argmax is the correction's ``predict``. No gradient flows
through it: the correction is post-hoc. For ``wa`` the same logits come from one model whose head
rows were rescaled once (:meth:`calib.estimator.weight_aligning.WeightAligning.aligned_head`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from calib.estimator.correction import LogitCorrection

__all__ = ["CorrectedClassifier"]


class CorrectedClassifier(nn.Module):
    """``correction(model(x))``, or ``correction(model(x), pretrained(x))`` for ``gla``.

    Args:
        model: the fine-tuned classifier; ``model(*inputs)`` gives (N, C) logits.
        correction: a fitted :class:`~calib.estimator.correction.LogitCorrection`.
        pretrained: the pre-trained classifier, for a correction that reads its logits
            (``gla``: a second forward pass per call); refused for the others.

    Raises:
        ValueError: an unfitted correction, or a pre-trained model missing or not needed.
    """

    def __init__(
        self, model: nn.Module, correction: LogitCorrection, pretrained: nn.Module | None = None
    ) -> None:
        super().__init__()
        if not isinstance(correction, LogitCorrection):
            raise ValueError(
                f"correction must be a fitted wa/bic/gla estimator, got {type(correction).__name__}"
            )
        correction._check_fitted()
        needs = "pretrained_logits" in correction.extra_inputs
        if needs and pretrained is None:
            raise ValueError(
                f"{correction.name} needs pretrained: the pre-trained model, run on the same inputs "
                "(a second forward pass)"
            )
        if not needs and pretrained is not None:
            raise ValueError(f"{correction.name} does not use a pre-trained model; pass none")
        self.model = model
        self.pretrained = pretrained
        self.correction = correction

    def _inputs(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        with torch.no_grad():
            z = self.model(*args, **kwargs).detach()
            extra = {}
            if self.pretrained is not None:
                extra["pretrained_logits"] = self.pretrained(*args, **kwargs).detach()
        return z, extra

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The correction's ``class_names_`` (one name per column, index = label), or None."""
        return getattr(self.correction, "class_names_", None)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Corrected logits (N, C), float64, on the model's output device."""
        z, extra = self._inputs(*args, **kwargs)
        return self.correction.transform(z, **extra)

    def predict(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Labels (N,) int64: the correction's ``predict`` of the model's logits."""
        z, extra = self._inputs(*args, **kwargs)
        return self.correction.predict(z, **extra)

    def predict_proba(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """softmax(corrected / T) (N, C), float64, with the correction's temperature."""
        z, extra = self._inputs(*args, **kwargs)
        return self.correction.predict_proba(z, **extra)
