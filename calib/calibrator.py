"""``LogitBiasCalibrator``: one bias γ on the absent-class logits, chosen by a registered selector.

A scikit-learn style estimator: ``__init__`` only stores its parameters, ``fit`` picks
γ with the selector named by ``method`` (see :mod:`calib.selectors`) and returns the
calibrator, whose fitted state ends in ``_``::

    cal = LogitBiasCalibrator(method="alg").fit(train_logits, train_labels, seen_classes)
    cal.gamma_                       # the bias, in logit units
    cal.transform(test_logits)       # logits + γ on the absent columns
    cal.predict(test_logits)         # labels under the bias rule of calib._gaps
    cal.save("alg.json"); LogitBiasCalibrator.load("alg.json")

Files are JSON (no pickle): a format tag, a version, the parameters and the fitted state.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import check_classes, check_logits, is_tensor, like_input
from ._gaps import compute_gaps
from .io import atomic_write_json
from .selectors import SELECTORS, PseudoSplit, selector_arguments

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

__all__ = ["LogitBiasCalibrator", "NotFittedError", "FILE_FORMAT", "FILE_VERSION"]

#: Format tag and version written into every saved calibrator file.
FILE_FORMAT = "calib.LogitBiasCalibrator"
FILE_VERSION = 1

_PARAMS = ("method", "gamma", "criterion", "prior")

# Why a selector refuses an input it does not take, where a hint helps.
_UNUSED_HINTS = {
    ("prior", "labels"): "it is label-free: pass unlabelled logits only",
    ("fixed", "logits"): "pass num_classes to say how many columns the head has",
    ("pcv", "logits"): "PCV scores the held-out S data inside pseudo_splits",
    ("pcv", "labels"): "PCV scores the held-out S data inside pseudo_splits",
}


class NotFittedError(ValueError, AttributeError):
    """A calibrator was used before ``fit`` (or ``load``); like scikit-learn's error of that name."""


class LogitBiasCalibrator:
    """Add one bias γ to the logits of the absent classes U; γ chosen by a selector.

    Args:
        method: selector key in :data:`calib.selectors.SELECTORS`: ``"alg"`` (default),
            ``"pcv"``, ``"oracle"``, ``"prior"``, ``"fixed"`` or a registered one.
        gamma: γ for ``method="fixed"`` (logit units).
        criterion: ``"acc_all"`` or ``"hmean"`` for ``oracle``/``pcv`` (None = selector default).
        prior: share of U predictions for ``prior`` (None = |U| / (|S| + |U|)).

    Fitted attributes:
        gamma_: the bias (float, logit units).
        seen_classes_: S, sorted int64 array. absent_classes_: U, sorted int64 array.
        num_classes_: C, the number of logit columns.
        info_: the selector's details (criterion reached, sample counts, ...).
    """

    def __init__(
        self,
        method: str = "alg",
        gamma: float | None = None,
        criterion: str | None = None,
        prior: float | None = None,
    ) -> None:
        self.method = method
        self.gamma = gamma
        self.criterion = criterion
        self.prior = prior

    # ------------------------------------------------------------------ sklearn parameters

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (scikit-learn contract)."""
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params: Any) -> LogitBiasCalibrator:
        """Set constructor parameters; returns self. Unknown names raise ``ValueError``."""
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise ValueError(
                f"LogitBiasCalibrator has no parameter(s) {unknown}; known: {list(_PARAMS)}"
            )
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = LogitBiasCalibrator().get_params()
        shown = [
            f"{k}={v!r}" for k, v in self.get_params().items() if k == "method" or v != defaults[k]
        ]
        return f"LogitBiasCalibrator({', '.join(shown)})"

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        logits: Any = None,
        labels: Any = None,
        seen_classes: Any = None,
        absent_classes: Any = None,
        *,
        pseudo_splits: Sequence[PseudoSplit] | None = None,
        num_classes: int | None = None,
    ) -> LogitBiasCalibrator:
        """Choose γ with the selector ``method``; returns self.

        Each selector takes the data it needs and refuses the rest (so that, e.g., labels
        never reach the label-free ``prior``, nor test logits ``pcv``):

        - ``alg``: ``logits``, ``labels`` of the fine-tuning training samples (S only).
        - ``oracle``: labelled target ``logits``, ``labels`` including absent classes.
        - ``prior``: unlabelled target ``logits``.
        - ``pcv``: ``pseudo_splits``.
        - ``fixed``: nothing (``num_classes`` gives the head's width).

        Args:
            logits: (N, C) scores, numpy or torch (any device).
            labels: (N,) integer labels.
            seen_classes: S, the fine-tuning classes (required).
            absent_classes: U, the columns that get γ; default every column not in S.
            pseudo_splits: for ``pcv``, a sequence of :class:`calib.PseudoSplit`.
            num_classes: C; needed when no logits or pseudo splits tell it, checked otherwise.

        Raises:
            ValueError: unknown method, missing or unused data, inconsistent widths, or any
                error of the selector (bad input, data it may not see).
        """
        method = self.method
        try:
            required, optional = selector_arguments(method)
        except (KeyError, TypeError) as err:
            raise ValueError(f"LogitBiasCalibrator(method={method!r}): {err.args[0]}") from None
        accepted = required | optional
        if seen_classes is None:
            raise ValueError("fit needs seen_classes: the fine-tuning classes S")

        data = {"logits": logits, "labels": labels, "pseudo_splits": pseudo_splits}
        params = {name: getattr(self, name) for name in _PARAMS if name != "method"}
        for name, value in data.items():
            if value is not None and name not in accepted:
                hint = _UNUSED_HINTS.get((method, name), f"it takes {sorted(accepted)}")
                raise ValueError(f"method {method!r} does not use {name}: {hint}")
        for name, value in params.items():
            if value is not None and name not in accepted:
                raise ValueError(f"method {method!r} takes no parameter {name!r} (got {value!r})")

        z = check_logits(logits) if logits is not None else None
        if pseudo_splits is not None:
            pseudo_splits = data["pseudo_splits"] = list(pseudo_splits)
        width = self._num_classes(z, pseudo_splits, num_classes)
        seen, absent = check_classes(seen_classes, absent_classes, width)

        kwargs = {name: value for name, value in {**data, **params}.items() if value is not None}
        if z is not None:
            kwargs["logits"] = z
        kwargs.update(seen_classes=seen, absent_classes=absent, num_classes=width)
        kwargs = {name: value for name, value in kwargs.items() if name in accepted}
        missing = sorted(required - set(kwargs))
        if missing:
            raise ValueError(f"method {method!r} needs {', '.join(missing)}")

        gamma, info = SELECTORS.get(method)(**kwargs)
        gamma = float(gamma)
        if not math.isfinite(gamma):
            raise ValueError(f"selector {method!r} returned a non-finite γ: {gamma}")
        self.gamma_ = gamma
        self.seen_classes_ = seen
        self.absent_classes_ = absent
        self.num_classes_ = width
        self.info_ = dict(info)
        return self

    @staticmethod
    def _num_classes(
        z: np.ndarray | None, pseudo_splits: list[PseudoSplit] | None, num_classes: int | None
    ) -> int:
        widths = {}
        if z is not None:
            widths["logits"] = z.shape[1]
        if pseudo_splits:
            first = pseudo_splits[0]
            shape = getattr(getattr(first, "logits", None), "shape", None)
            if shape is not None and len(shape) == 2:
                widths["pseudo_splits"] = int(shape[1])
        if num_classes is not None:
            if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
                raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
            widths["num_classes"] = int(num_classes)
        if not widths:
            raise ValueError("cannot tell the number of classes: pass logits or num_classes")
        if len(set(widths.values())) > 1:
            raise ValueError(f"inconsistent number of classes: {widths}")
        return next(iter(widths.values()))

    # ------------------------------------------------------------------ using γ

    def _check_fitted(self) -> None:
        if not hasattr(self, "gamma_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(...) or "
                f"{type(self).__name__}.load(path) before using it"
            )

    def _check_width(self, num_columns: int, what: str) -> None:
        if num_columns != self.num_classes_:
            raise ValueError(
                f"{what} has {num_columns} columns but the calibrator was fitted on "
                f"{self.num_classes_}"
            )

    def transform(self, logits: Any) -> Any:
        """``logits`` with γ added to the absent columns, shape (N, C).

        A torch tensor comes back as a tensor on its device with its dtype (integer
        tensors become the default float dtype), a numpy array as numpy (float32 and
        float64 kept, other dtypes become float64). The input is not modified.
        """
        self._check_fitted()
        if is_tensor(logits):
            return self._transform_tensor(logits)
        z = check_logits(logits)
        self._check_width(z.shape[1], "logits")
        return z + self._bias(z.dtype)

    def _transform_tensor(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[0] == 0:
            raise ValueError(
                f"logits must be a non-empty 2-D (samples, classes) tensor, got shape {tuple(logits.shape)}"
            )
        self._check_width(logits.shape[1], "logits")
        if not logits.is_floating_point():
            logits = logits.to(torch.get_default_dtype())
        if not torch.isfinite(logits).all():
            raise ValueError("logits have non-finite value(s) (NaN or inf)")
        bias = torch.from_numpy(self._bias(np.float64)).to(logits.device, logits.dtype)
        return logits + bias

    def _bias(self, dtype: Any) -> np.ndarray:
        """(C,) γ on the absent columns and 0 elsewhere.

        Adding it row-wise is one pass over the logits; γ is rounded to the logits' dtype
        first, as :class:`calib.CalibratedClassifier` does, so both give identical numbers.
        """
        bias = np.zeros(self.num_classes_, dtype=dtype)
        bias[self.absent_classes_] = self.gamma_
        return bias

    def predict(self, logits: Any) -> Any:
        """Predicted labels (N,) under γ, by the rule of :mod:`calib._gaps` (γ > gap → U).

        Same type as the input (a tensor on its device, or a numpy array), int64.
        """
        self._check_fitted()
        z = check_logits(logits)
        self._check_width(z.shape[1], "logits")
        pred = compute_gaps(z, self.absent_classes_).predict(self.gamma_)
        return like_input(pred.astype(np.int64, copy=False), logits)

    def score(self, logits: Any, labels: Any) -> dict[str, float]:
        """:func:`calib.accuracy_report` of ``logits`` under γ (acc_all, acc_seen, hmean, ...)."""
        self._check_fitted()
        from .metrics import accuracy_report  # the metrics module is not needed to fit

        z = check_logits(logits)
        self._check_width(z.shape[1], "logits")
        return accuracy_report(
            z, labels, self.seen_classes_, self.absent_classes_, gamma=self.gamma_
        )

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        """Write the calibrator as JSON, atomically. γ round-trips exactly (Python float repr).

        Non-finite numbers in ``info_`` (e.g. an unbounded interval end) are written as null.
        """
        self._check_fitted()
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "params": self.get_params(),
            "fitted": {
                "gamma": self.gamma_,
                "num_classes": self.num_classes_,
                "seen_classes": self.seen_classes_.tolist(),
                "absent_classes": self.absent_classes_.tolist(),
                "info": self.info_,
            },
        }
        atomic_write_json(path, payload)  # strict JSON: non-finite numbers become null

    @classmethod
    def load(cls, path: str | os.PathLike) -> LogitBiasCalibrator:
        """Read a calibrator written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not valid JSON, not a calibrator file, another version,
                or has missing/invalid fields (the message names the file).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"no calibrator file at {path}") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} is not a calibrator file (not UTF-8 text: {err})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a calibrator file (invalid JSON: {err})") from None
        tag = data.get("format") if isinstance(data, dict) else None
        if tag != FILE_FORMAT:
            raise ValueError(
                f"{path} is not a calibrator file: format tag {tag!r}, expected {FILE_FORMAT!r}"
            )
        if data.get("version") != FILE_VERSION:
            raise ValueError(
                f"{path} is a calibrator file of version {data.get('version')!r}; this version "
                f"of calib reads version {FILE_VERSION}"
            )
        try:
            return cls._from_payload(data)
        except (KeyError, TypeError, ValueError) as err:
            detail = f"missing field {err}" if isinstance(err, KeyError) else str(err)
            raise ValueError(f"{path} is a corrupt calibrator file: {detail}") from None

    @classmethod
    def _from_payload(cls, data: dict[str, Any]) -> LogitBiasCalibrator:
        params, fitted = data["params"], data["fitted"]
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise TypeError("'params' and 'fitted' must be objects")
        unknown = set(params) - set(_PARAMS)
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
        gamma = fitted["gamma"]
        if (
            isinstance(gamma, bool)
            or not isinstance(gamma, (int, float))
            or not math.isfinite(gamma)
        ):
            raise ValueError(f"gamma must be a finite number, got {gamma!r}")
        width = fitted["num_classes"]
        if isinstance(width, bool) or not isinstance(width, int):
            raise ValueError(f"num_classes must be an integer, got {width!r}")
        classes = {}
        for name in ("seen_classes", "absent_classes"):
            values = fitted[name]
            if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values
            ):
                raise ValueError(f"{name} must be a list of integers")
            classes[name] = values
        seen, absent = check_classes(classes["seen_classes"], classes["absent_classes"], width)
        info = fitted.get("info", {})
        if not isinstance(info, dict):
            raise TypeError("'info' must be an object")

        cal = cls(**params)
        cal.gamma_ = float(gamma)
        cal.seen_classes_ = seen
        cal.absent_classes_ = absent
        cal.num_classes_ = width
        cal.info_ = info
        return cal
