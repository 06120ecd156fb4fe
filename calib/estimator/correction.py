"""The contract every post-hoc logit correction shares (``wa``, ``bic``, ``gla``): the alternatives
to one additive γ on the absent-class logits, with :class:`calib.LogitBiasCalibrator`'s interface.

A correction maps the fine-tuned model's logits z (N, C) to corrected float64 logits (its
:meth:`LogitCorrection.transform`); :meth:`~LogitCorrection.predict` takes the corrected logits'
best column under the gap rule of :mod:`calib.rules.gaps` at γ = 0 (an exact tie between the best
seen and best absent column goes to the seen one, as for the calibrator) and
:meth:`~LogitCorrection.predict_proba` is softmax(corrected / T). What each correction is fitted
from is declared by its class (``data``) and nothing else is accepted: ``fit`` refuses any other
input with the reason, before any computation.

Every ``fit`` takes ``class_names=`` (one name per column, index = label), so that S and U (and
``bic``'s pseudo splits' classes) may be names; the fitted ``class_names_`` keeps them (a tuple
of str, or None) and the file round-trips them (``fitted.class_names``; a file without it loads
with None).

Subclasses implement ``_fit`` (the fitted parameters from their declared data), ``_correct``
(corrected logits) and declare their own fitted state (``_STATE``: name -> "float" or "floats"),
which the JSON file (format tag ``calib.<ClassName>``) round-trips exactly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from calib.class_names import check_class_names, resolve_classes
from calib.estimator.calibrator import NotFittedError
from calib.estimator.temperature import break_ties
from calib.io import atomic_write_json, json_safe
from calib.rules.gaps import gaps_of, scan_checked
from calib.validation import (
    check_labels,
    check_logits,
    check_num_classes,
    like_input,
    temperature_value,
)

__all__ = ["LogitCorrection", "CORRECTION_FILE_VERSION", "checked_input"]

#: Version of the JSON file of every correction.
CORRECTION_FILE_VERSION = 1


def checked_input(correction: str, kind: str, value: Any, name: str) -> np.ndarray:
    """``value`` checked as a (N, C) score matrix; any error names the correction and the data
    kind it was given as, then the value (``check_logits``'s message: the first bad entry)."""
    try:
        return check_logits(value, name)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{correction} ({kind}): {err}") from None


class LogitCorrection(ClassifierMixin, BaseEstimator):
    """Base class: fit from declared data, then transform / predict / predict_proba / save / load.

    Class attributes (set by each subclass):
        name: the correction's key (``"wa"``, ``"bic"``, ``"gla"``).
        data: the data kind it is fitted from, in words (errors name it).
        extra_inputs: inputs besides the fine-tuned logits that ``transform`` needs per sample
            (``gla``: the pre-trained model's logits), i.e. its inference cost.

    Fitted attributes (every subclass): ``seen_classes_``, ``absent_classes_`` (sorted int64),
    ``class_names_`` (tuple of str, or None), ``num_classes_``, ``classes_`` (``arange(C)``), ``n_features_in_``, ``temperature_``
    (float), ``info_`` (dict), plus the subclass's own state.
    """

    name: ClassVar[str] = ""
    data: ClassVar[str] = ""
    extra_inputs: ClassVar[tuple[str, ...]] = ()
    _STATE: ClassVar[dict[str, str]] = {}

    # ------------------------------------------------------------------ fitting helpers

    def _refuse(self, given: dict[str, Any], reason: str) -> None:
        """Refuse every input in ``given`` that is not None: this correction does not read it."""
        for key, value in given.items():
            if value is not None:
                raise ValueError(
                    f"{self.name} does not use {key}: it is fitted from {self.data} only; {reason}"
                )

    def _set_classes(self, seen: Any, absent: Any, width: int, class_names: Any = None) -> None:
        """S and U (column indices, or names given ``class_names``) for ``width`` columns."""
        if seen is None:
            raise ValueError(f"{self.name}.fit needs seen_classes: the fine-tuning classes S")
        width = check_num_classes(width)
        names = check_class_names(class_names, width)
        s, u = resolve_classes(seen, absent, width, names)
        self.seen_classes_, self.absent_classes_ = s, u
        self.class_names_ = names
        self.num_classes_ = int(width)
        self.classes_ = np.arange(width)
        self.n_features_in_ = int(width)

    def _given_temperature(self) -> float | None:
        """T given as a number (or None: 1); ``"fit"`` → None here, the subclass fits it."""
        t = self.temperature
        if t is None:
            return 1.0
        if isinstance(t, str):
            if t != "fit":
                raise ValueError(f"temperature must be None, a number > 0 or 'fit', got {t!r}")
            return None
        value = temperature_value(t)
        if isinstance(value, tuple):
            raise ValueError(f"{self.name}: temperature must be one number > 0, got {t!r}")
        return float(value)

    # ------------------------------------------------------------------ using it

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "info_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "info_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(...) or "
                f"{type(self).__name__}.load(path) before using it"
            )

    def _logits(self, logits: Any, name: str = "logits") -> np.ndarray:
        self._check_fitted()
        z = checked_input(
            self.name, "fine-tuned logits" if name == "logits" else name, logits, name
        )
        if z.shape[1] != self.num_classes_:
            raise ValueError(
                f"{self.name}: {name} has {z.shape[1]} columns but the correction was fitted on "
                f"{self.num_classes_}"
            )
        return z

    def _correct(self, z: np.ndarray, **extra: Any) -> np.ndarray:
        raise NotImplementedError

    def transform(self, logits: Any, **extra: Any) -> Any:
        """Corrected logits (N, C), float64 (a tensor comes back as a float64 tensor on its
        device); ``extra``: the inputs named in ``extra_inputs``."""
        z = self._logits(logits)
        return like_input(self._correct(z, **extra), logits)

    def _predict(self, corrected: np.ndarray) -> np.ndarray:
        scanned = scan_checked(corrected, self.seen_classes_, self.absent_classes_)
        return gaps_of(scanned).predict(0.0).astype(np.int64, copy=False)

    def predict(self, logits: Any, **extra: Any) -> Any:
        """Labels (N,) int64: the best corrected column (an exact S/U tie goes to S)."""
        corrected = self._correct(self._logits(logits), **extra)
        return like_input(self._predict(corrected), logits)

    def predict_proba(self, logits: Any, **extra: Any) -> Any:
        """softmax(corrected / T): (N, C) float64, rows sum to 1, argmax == :meth:`predict`."""
        from calib.metrics.probability import shifted_probabilities

        corrected = self._correct(self._logits(logits), **extra)
        p = shifted_probabilities(corrected, self.absent_classes_, 0.0, self.temperature_)
        return like_input(break_ties(p, self._predict(corrected)), logits)

    def score(self, logits: Any, labels: Any, **extra: Any) -> float:
        """Accuracy of :meth:`predict` over all samples (``acc_all``)."""
        corrected = self._correct(self._logits(logits), **extra)
        y = check_labels(labels, corrected.shape[0], corrected.shape[1])
        return float((self._predict(corrected) == y).mean())

    def report(self, logits: Any, labels: Any, topk: tuple[int, ...] = (1,), **extra: Any):
        """:func:`calib.accuracy_report` of the corrected logits (γ = 0): acc_all, acc_seen, ..."""
        from calib.metrics.accuracy import accuracy_report

        corrected = self._correct(self._logits(logits), **extra)
        return accuracy_report(
            corrected, labels, self.seen_classes_, self.absent_classes_, 0.0, topk
        )

    # ------------------------------------------------------------------ files

    @classmethod
    def file_format(cls) -> str:
        return f"calib.{cls.__name__}"

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted correction as JSON, atomically (floats round-trip exactly)."""
        self._check_fitted()
        state = {}
        for key, kind in self._STATE.items():
            value = getattr(self, key)
            state[key] = [float(v) for v in value] if kind == "floats" else float(value)
        payload = {
            "format": self.file_format(),
            "version": CORRECTION_FILE_VERSION,
            "params": self.get_params(),
            "fitted": {
                "state": state,
                "temperature": self.temperature_,
                "num_classes": self.num_classes_,
                "seen_classes": self.seen_classes_.tolist(),
                "absent_classes": self.absent_classes_.tolist(),
                "class_names": _names_json(getattr(self, "class_names_", None)),
                "info": self.info_,
            },
        }
        path = Path(path)
        try:
            atomic_write_json(path, json_safe(payload))
        except OSError as err:
            reason = err.strerror or str(err)
            raise type(err)(err.errno, f"cannot save {self.name} to {path}: {reason}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> LogitCorrection:
        """Read a file of :meth:`save`. ValueError naming the file when it is not one."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no {cls.name} file at {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a {cls.name} file: {err}") from None
        tag = data.get("format") if isinstance(data, dict) else None
        if tag != cls.file_format():
            raise ValueError(
                f"{path} is not a {cls.name} file: format tag {tag!r}, "
                f"expected {cls.file_format()!r}"
            )
        if data.get("version") != CORRECTION_FILE_VERSION:
            raise ValueError(f"{path}: version {data.get('version')!r}, expected 1")
        try:
            return cls._from_payload(data)
        except (KeyError, TypeError, ValueError) as err:
            detail = f"missing field {err}" if isinstance(err, KeyError) else str(err)
            raise ValueError(f"{path} is a corrupt {cls.name} file: {detail}") from None

    @classmethod
    def _from_payload(cls, data: dict[str, Any]) -> LogitCorrection:
        params, fitted = data["params"], data["fitted"]
        obj = cls(**params)
        obj._given_temperature()  # a valid parameter
        names = fitted.get("class_names")  # written before class names: none
        if names is not None and not isinstance(names, list):
            raise TypeError(f"class_names must be a list of names or null, got {names!r:.80}")
        for key in ("seen_classes", "absent_classes"):  # indices in a file, never names
            values = fitted[key]
            if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values
            ):
                raise ValueError(f"{key} must be a list of integers")
        obj._set_classes(
            fitted["seen_classes"], fitted["absent_classes"], fitted["num_classes"], names
        )
        t = fitted["temperature"]
        if (
            isinstance(t, bool)
            or not isinstance(t, (int, float))
            or not (t > 0 and math.isfinite(t))
        ):
            raise ValueError(f"temperature must be a number > 0, got {t!r}")
        obj.temperature_ = float(t)
        for key, kind in cls._STATE.items():
            value = fitted["state"][key]
            if kind == "floats":
                arr = np.asarray(value, dtype=np.float64)
                if arr.ndim != 1 or not np.isfinite(arr).all():
                    raise ValueError(f"{key} must be a list of finite numbers")
                setattr(obj, key, arr)
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{key} must be a number, got {value!r}")
                setattr(obj, key, float(value))
        obj._check_state()
        obj.info_ = dict(fitted.get("info") or {})
        return obj

    def _check_state(self) -> None:
        """Subclass hook: the loaded state is consistent with the classes (shapes)."""


def _names_json(names: Any) -> list[str] | None:
    return None if names is None else [str(n) for n in names]
