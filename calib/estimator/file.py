"""The JSON file of a :class:`calib.LogitBiasCalibrator`: format tag, version, parameters, fit.

No pickle: a format tag, a version, the constructor parameters (validated against the
selector's declaration when read) and the fitted state.

``fitted.class_names`` (a list of str, or null) is the fitted ``class_names_``. It came after
version 2 without a new version: names change no number, so a reader that predates them
loads the same γ, S, U and T from a file that has them, and a file without them loads with
``class_names_ = None``. A new version is for a field that changes what the calibrator
computes (version 2: the temperature).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from calib.class_names import check_class_names
from calib.io import atomic_write_json, json_safe
from calib.validation import check_classes

__all__ = [
    "FILE_FORMAT",
    "FILE_VERSION",
    "READ_VERSIONS",
    "calibrator_from_payload",
    "calibrator_payload",
    "save_calibrator",
    "load_calibrator",
]

#: Format tag and version written into every saved calibrator file.
FILE_FORMAT = "calib.LogitBiasCalibrator"
FILE_VERSION = 2
#: Versions this calib reads: 1 (before the temperature; loads with T = 1) and 2.
READ_VERSIONS = (1, 2)


def save_calibrator(cal: Any, path: str | os.PathLike) -> None:
    """Write the fitted calibrator ``cal`` to ``path`` as JSON, atomically."""
    _write(path, calibrator_payload(cal))


def calibrator_payload(cal: Any) -> dict[str, Any]:
    """The fitted calibrator ``cal`` as the strict-JSON object of its file (non-finite numbers
    of ``info_`` as None): what :func:`save_calibrator` writes, and what a
    :class:`calib.CalibratedClassifier` file keeps of its calibrator."""
    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "params": cal.get_params(),
        "fitted": {
            "gamma": cal.gamma_,
            "temperature": _temperature_json(cal.temperature_),
            "num_classes": cal.num_classes_,
            "seen_classes": cal.seen_classes_.tolist(),
            "absent_classes": cal.absent_classes_.tolist(),
            "class_names": _names_json(getattr(cal, "class_names_", None)),
            "info": cal.info_,
        },
    }
    return json_safe(payload)


def load_calibrator(cls: Any, path: str | os.PathLike) -> Any:
    """Read a file of :func:`save_calibrator` into a new ``cls`` instance."""
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
    return calibrator_from_payload(cls, data, str(path))


def calibrator_from_payload(cls: Any, data: Any, where: str) -> Any:
    """A new ``cls`` instance from an object of :func:`calibrator_payload` (parsed JSON).

    Raises:
        ValueError: not a calibrator's object, another version, missing or invalid fields, an
            unknown method or bad parameters; the message starts with ``where``.
    """
    tag = data.get("format") if isinstance(data, dict) else None
    if tag != FILE_FORMAT:
        raise ValueError(
            f"{where} is not a calibrator file: format tag {tag!r}, expected {FILE_FORMAT!r}"
        )
    version = data.get("version")
    if isinstance(version, bool) or version not in READ_VERSIONS:
        raise ValueError(
            f"{where} is a calibrator file of version {version!r}; this version "
            f"of calib reads versions {', '.join(map(str, READ_VERSIONS))}"
        )
    try:
        return _from_payload(cls, data)
    except (KeyError, TypeError, ValueError) as err:
        detail = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{where} is a corrupt calibrator file: {detail}") from None


def _from_payload(cls: Any, data: dict[str, Any]) -> Any:
    params, fitted = data["params"], data["fitted"]
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise TypeError("'params' and 'fitted' must be objects")
    unknown = set(params) - set(cls._get_param_names())
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
    if isinstance(params.get("temperature"), list):  # JSON has no tuple: (T_S, T_U) back
        params = {**params, "temperature": tuple(params["temperature"])}
    probe = cls(**params)
    spec = probe._spec()
    probe._selector_params(spec)  # a registered method and valid parameters
    probe._temperature_param(spec)
    gamma = fitted["gamma"]
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma):
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
    names = fitted.get("class_names")  # written before class names: none
    if names is not None and not isinstance(names, list):
        raise TypeError(f"class_names must be a list of names or null, got {names!r:.80}")
    names = check_class_names(names, width)
    info = fitted.get("info", {})
    if not isinstance(info, dict):
        raise TypeError("'info' must be an object")
    temperature = _temperature_of(fitted.get("temperature", 1.0))  # version 1: T = 1

    cal = probe
    cal.gamma_ = float(gamma)
    cal.temperature_ = temperature
    cal.seen_classes_ = seen
    cal.absent_classes_ = absent
    cal.num_classes_ = width
    cal.class_names_ = names
    cal.classes_ = np.arange(width)
    cal.n_features_in_ = width
    cal.info_ = info
    return cal


def _names_json(names: Any) -> list[str] | None:
    return None if names is None else [str(n) for n in names]


def _temperature_json(t: Any) -> Any:
    return list(t) if isinstance(t, tuple) else t


def _temperature_of(value: Any) -> float | tuple[float, float]:
    """The fitted temperature of a file: a number > 0 or a pair [T_S, T_U] of them."""
    values = value if isinstance(value, list) else [value]
    if (isinstance(value, list) and len(values) != 2) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in values
    ):
        raise ValueError(f"temperature must be a number > 0 or a pair of them, got {value!r}")
    return (float(values[0]), float(values[1])) if isinstance(value, list) else float(value)


def _write(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomic JSON write; an OS error names the destination, not the temporary file."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot save to {path}: {parent} is a file, not a folder")
            break
    try:
        atomic_write_json(path, payload)  # strict JSON: non-finite numbers become null
    except OSError as err:
        reason = err.strerror or str(err)
        raise type(err)(err.errno, f"cannot save calibrator to {path}: {reason}") from None
