"""Deploy a calibrated model: ``CalibratedClassifier`` adds γ to the absent-class logits.

The wrapper is an ``nn.Module`` whose output is the wrapped model's logits plus γ on
the absent columns; γ and the absent mask are buffers, so they travel with
``.to(device)`` and ``state_dict()``. :func:`calibrate` is the one-call path for a
fine-tuned model: extract its logits on a loader, fit a :class:`LogitBiasCalibrator`,
wrap::

    calibrated = calib.calibrate(model, train_loader, seen_classes, method="alg")
    calibrated(x)                 # model(x) + γ on the absent columns
    calibrated.calibrator.gamma_  # the fitted calibrator
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import _class_index
from .calibrator import LogitBiasCalibrator, NotFittedError
from .extract import extract, model_device
from .selectors import selector_arguments

__all__ = ["CalibratedClassifier", "calibrate"]

_ESTIMATOR_PARAMS = ("gamma", "criterion", "prior")
_FIT_INPUTS = ("pseudo_splits",)


class CalibratedClassifier(nn.Module):
    """``model(x) + γ · 1[c ∈ U]``: a classifier with its absent-class logits raised by γ.

    The wrapped model's weights are never changed. Its output must be (N, num_classes).

    Args:
        model: the fine-tuned classifier.
        gamma: the bias γ in logit units (finite).
        absent_classes: U, the columns that receive γ.
        num_classes: C, the number of logit columns.

    Buffers:
        gamma: 0-d float64 tensor. absent_mask: (C,) bool tensor, True on U.

    Attributes:
        calibrator: the fitted :class:`LogitBiasCalibrator` this wrapper was built from, or None.
    """

    gamma: torch.Tensor
    absent_mask: torch.Tensor

    def __init__(
        self, model: nn.Module, gamma: float, absent_classes: Any, num_classes: int
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
        num_classes = int(num_classes)
        absent = _class_index(absent_classes, num_classes, "absent_classes")
        if absent.size == num_classes:
            raise ValueError(
                "absent_classes covers every column: at least one column must stay un-shifted"
            )
        gamma = float(gamma)
        if not math.isfinite(gamma):
            raise ValueError(f"gamma must be finite, got {gamma}")
        device = model_device(model)
        mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
        mask[torch.as_tensor(absent, device=device)] = True
        self.model = model
        self.num_classes = num_classes
        self.register_buffer("gamma", torch.tensor(gamma, dtype=torch.float64, device=device))
        self.register_buffer("absent_mask", mask)
        self.calibrator: LogitBiasCalibrator | None = None

    @classmethod
    def from_calibrator(
        cls, model: nn.Module, calibrator: LogitBiasCalibrator
    ) -> CalibratedClassifier:
        """Wrap ``model`` with the γ and absent classes of a fitted calibrator (kept as ``.calibrator``)."""
        if not hasattr(calibrator, "gamma_"):
            raise NotFittedError("from_calibrator needs a fitted calibrator: call fit(...) first")
        wrapped = cls(model, calibrator.gamma_, calibrator.absent_classes_, calibrator.num_classes_)
        wrapped.calibrator = calibrator
        return wrapped

    @property
    def absent_classes(self) -> np.ndarray:
        """U as a sorted int64 numpy array."""
        return torch.nonzero(self.absent_mask).flatten().cpu().numpy()

    def _bias(self, dtype: torch.dtype) -> torch.Tensor:
        """(C,) γ on the absent columns, 0 elsewhere, in the output's dtype."""
        return torch.where(self.absent_mask, self.gamma, 0.0).to(dtype)

    def _check(self, out: Any) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != self.num_classes:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"the wrapped model must return (N, {self.num_classes}) logits, got {shape}"
            )
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (N, C): the model's logits plus γ on the absent columns."""
        out = self._check(self.model(x))
        return out + self._bias(out.dtype)

    def forward_features_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, calibrated logits), for a wrapped model with ``forward_features_logits``."""
        inner = getattr(self.model, "forward_features_logits", None)
        if not callable(inner):
            raise TypeError(
                f"the wrapped {type(self.model).__name__} has no forward_features_logits"
            )
        features, out = inner(x)
        out = self._check(out)
        return features, out + self._bias(out.dtype)

    def extra_repr(self) -> str:
        n_absent = int(self.absent_mask.sum())
        return f"gamma={float(self.gamma):.6g}, absent_classes={n_absent} of {self.num_classes}"


def calibrate(
    model: nn.Module,
    loader: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    method: str = "alg",
    device: str | torch.device | None = None,
    num_classes: int | None = None,
    progress: bool = True,
    **selector_kwargs: Any,
) -> CalibratedClassifier:
    """Extract ``model``'s logits on ``loader``, fit a :class:`LogitBiasCalibrator`, wrap.

    What ``loader`` must hold depends on ``method``:

    - ``alg``: the fine-tuning training data (labels in S only).
    - ``oracle``: labelled target data including absent classes (an upper bound).
    - ``prior``: target data; labels, if any, are not used.
    - ``pcv`` and ``fixed``: none (``loader`` may be None): pass ``pseudo_splits=`` for
      ``pcv``, ``gamma=`` for ``fixed``, and ``num_classes`` unless the loader should be
      run to learn it.

    Args:
        model: the fine-tuned classifier; its weights are not changed and its train/eval
            mode is restored after extraction.
        loader: yields ``(x, y)`` batches or dicts with ``"image"``/``"label"``.
        seen_classes: S. absent_classes: U (default every column not in S).
        method: selector key (see :mod:`calib.selectors`).
        device: where to run the model (None = where it is); a given device moves the model.
        num_classes: C, when no logits tell it.
        progress: show a progress bar during extraction.
        **selector_kwargs: ``gamma``, ``criterion``, ``prior`` (calibrator parameters) and
            ``pseudo_splits`` (data for ``pcv``).

    Returns:
        The :class:`CalibratedClassifier`, with the fitted calibrator as ``.calibrator``.
    """
    unknown = sorted(set(selector_kwargs) - set(_ESTIMATOR_PARAMS) - set(_FIT_INPUTS))
    if unknown:
        raise TypeError(
            f"calibrate() got unexpected keyword(s) {unknown}; selector options are "
            f"{list(_ESTIMATOR_PARAMS + _FIT_INPUTS)}"
        )
    params = {k: v for k, v in selector_kwargs.items() if k in _ESTIMATOR_PARAMS}
    pseudo_splits = selector_kwargs.get("pseudo_splits")
    calibrator = LogitBiasCalibrator(method=method, **params)
    try:
        required, optional = selector_arguments(method)
    except (KeyError, TypeError) as err:
        raise ValueError(f"calibrate(method={method!r}): {err.args[0]}") from None
    uses = required | optional

    fit_data: dict[str, Any] = {}
    needs_width = num_classes is None and pseudo_splits is None
    if "logits" in uses or needs_width:
        if loader is None:
            raise ValueError(f"method {method!r} needs a loader to extract logits from")
        extracted = extract(model, loader, device, progress=progress, desc=f"calibrate ({method})")
        if "logits" in uses:
            fit_data["logits"] = extracted.logits
        if "labels" in uses:
            if extracted.labels is None:
                raise ValueError(
                    f"method {method!r} needs labels, but the loader's batches have none"
                )
            fit_data["labels"] = extracted.labels
        if num_classes is None and pseudo_splits is None:
            num_classes = int(extracted.logits.shape[1])
    elif device is not None:
        model.to(device)

    calibrator.fit(
        seen_classes=seen_classes,
        absent_classes=absent_classes,
        pseudo_splits=pseudo_splits,
        num_classes=num_classes,
        **fit_data,
    )
    return CalibratedClassifier.from_calibrator(model, calibrator)
