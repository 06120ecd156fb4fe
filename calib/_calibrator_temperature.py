"""The ``temperature`` of :class:`calib.LogitBiasCalibrator`: validation, fitting, the tie rule.

``temperature`` is None (T = 1), one T > 0, a pair (T_S, T_U) (the row rule of
:mod:`calib.probability`: a sample predicted in U is divided by T_U, any other by T_S), or
``"fit"`` / ``"fit_per_group"`` (one T / a pair (T_S, T_U)): minimising the NLL of softmax((z + γ·1_U)/T) on exactly the data the selector was
fed (its declared data kind, :data:`TEMPERATURE_DATA`), never more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._probability_checks import temperature_value
from .temperature import fit_temperature, fit_temperature_pseudo_splits

#: The ``temperature`` values that fit T: one T, or (T_S, T_U) by the row rule.
FIT_KEYS = ("fit", "fit_per_group")

__all__ = [
    "FIT_KEYS",
    "TEMPERATURE_DATA",
    "check_temperature_param",
    "fitted_temperature",
    "break_ties",
]

#: What ``temperature="fit"`` is fitted on, by the selector's declared data kind.
TEMPERATURE_DATA: Mapping[str, str] = {
    "finetune_train": "the given fine-tuning training logits and labels (S rows only; the model "
    "was trained on them, so T is biased low)",
    "pseudo_splits": "the held-out S data of the pseudo splits (each split's pseudo-absent "
    "classes shifted by γ stand in for U; no U row)",
    "target_labelled": "the given labelled target data, U included: an upper bound for "
    "analysis, like the oracle's γ (in-sample when that data is also the test set)",
}


def check_temperature_param(temperature: Any, method: str, data_kind: str | None) -> Any:
    """``temperature`` in canonical form: 1.0, a float, a (T_S, T_U) tuple, or a fit key.

    Raises:
        ValueError / TypeError: not None, a finite number > 0, a pair of them or ``"fit"``;
            a fit for a selector whose data carries no labels (``target_unlabelled``,
            or no data): NLL needs labels.
    """
    if temperature is None:
        return 1.0
    if isinstance(temperature, str):
        if temperature not in FIT_KEYS:
            raise ValueError(
                f"temperature must be None, a number > 0, a pair (T_S, T_U), 'fit' or "
                f"'fit_per_group', got {temperature!r}"
            )
        if data_kind not in TEMPERATURE_DATA:
            what = "label-free" if data_kind == "target_unlabelled" else "fed no data"
            raise ValueError(
                f"temperature={temperature!r} is refused for method {method!r}: the selector is {what} "
                "and the NLL that fits T needs labels it must not see; pass a temperature "
                "value (e.g. one fitted elsewhere) or None (T = 1)"
            )
        return temperature
    return temperature_value(temperature)


def fitted_temperature(
    temperature: Any,
    data_kind: str | None,
    data: Mapping[str, Any],
    absent: np.ndarray,
    gamma: float,
) -> tuple[Any, dict[str, Any]]:
    """(temperature_, info entries): the canonical ``temperature`` resolved at γ.

    ``data`` holds the inputs the selector was fed (``logits``/``labels`` or ``pseudo_splits``).
    The info entries: ``temperature`` (as fitted or given), ``temperature_data`` (the data kind
    T was fitted on, or ``"given"``), ``temperature_samples`` (labelled rows seen; 0 if given)
    and ``temperature_note`` (:data:`TEMPERATURE_DATA`, for a fitted T).
    """
    per_group = temperature == "fit_per_group"
    if temperature not in FIT_KEYS:
        t = temperature
        info = {"temperature_data": "given", "temperature_samples": 0}
    elif data_kind == "pseudo_splits":
        splits = data["pseudo_splits"]
        t = fit_temperature_pseudo_splits(list(splits), gamma, per_group=per_group)
        n = int(sum(np.asarray(s.labels).shape[0] for s in splits))
        info = {"temperature_data": data_kind, "temperature_samples": n}
    else:  # finetune_train or target_labelled: exactly the given logits and labels
        t = fit_temperature(data["logits"], data["labels"], absent, gamma, per_group=per_group)
        info = {"temperature_data": data_kind, "temperature_samples": int(len(data["labels"]))}
    if temperature in FIT_KEYS:
        info["temperature_note"] = TEMPERATURE_DATA[data_kind]
    t = (float(t[0]), float(t[1])) if isinstance(t, tuple) else float(t)
    return t, {"temperature": list(t) if isinstance(t, tuple) else t, **info}


def break_ties(p: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Make ``pred`` the unique argmax of each row of ``p`` (N, C), in place; returns ``p``.

    One temperature per row never changes the order of the shifted scores, but float64
    rounding can leave the predicted column tied with another (an exact tie of z + γ that the
    decision rule sends out of U, or scores within a rounding unit, flattened by exp). There
    the predicted probability is raised to the next float above the row maximum, a change of
    one unit in the last place, so that ``argmax(p) == pred`` exactly.
    """
    rows = np.flatnonzero(p.argmax(axis=1) != pred)
    if rows.size:
        top = p[rows].max(axis=1)
        deficit = top - p[rows, pred[rows]]
        if (deficit > 1e-12).any():  # more than rounding: the probabilities disagree with γ
            raise RuntimeError(f"probabilities disagree with the prediction by {deficit.max()}")
        p[rows, pred[rows]] = np.nextafter(top, np.inf)
    return p
