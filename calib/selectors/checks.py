"""Checks and criteria shared by the γ selectors of :mod:`calib.selectors`."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from calib.metrics.curve import SeenAbsentCurve
from calib.metrics.streaming import SeenAbsentState
from calib.validation import check_classes

__all__ = [
    "check_width",
    "check_groups",
    "criterion_values",
    "check_call_signature",
    "check_selector_result",
    "check_state",
]


def _describe(fn: Callable[..., Any]) -> str:
    """``fn`` as ``name(signature)`` for messages (where inspect can read it)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    try:
        return f"{name}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return str(name)


def check_call_signature(
    fn: Callable[..., Any], keywords: Iterable[str], what: str, call: str
) -> None:
    """Refuse ``fn`` unless it can be called with exactly these keyword arguments.

    ``what`` names the registration in the message (``"selector 'x'"``), ``call`` shows how
    ``fn`` is called. A function whose signature inspect cannot read (a builtin) is trusted.

    Raises:
        TypeError: ``fn`` lacks some of ``keywords`` (or takes them positional-only), or needs
            a parameter that is never passed; the message names ``fn`` and the parameters.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    keywords = list(keywords)
    params = sig.parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [k for k in keywords if k not in accepted and not var_kw]
    required = [
        n
        for n, p in params.items()
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and n not in keywords
    ]
    if missing or required:
        problems = []
        if missing:
            problems.append(f"does not take the keyword argument(s) {missing}")
        if required:
            problems.append(
                f"needs parameter(s) {required} that are never passed (declare them in "
                "params= or give them a default)"
            )
        raise TypeError(f"{what}: {_describe(fn)} {' and '.join(problems)}; it is called as {call}")


def check_selector_result(name: str, result: Any) -> tuple[float, dict[str, Any]]:
    """The ``(gamma, info)`` a selector returned, as (float, dict); an error naming the
    selector, what it returned and what is expected otherwise.

    Raises:
        TypeError: not a pair, γ not a real number, or info not a mapping.
        ValueError: a non-finite γ.
    """
    expected = "a selector must return (gamma, info): γ a finite real number, info a dict"
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        shown = f"{type(result).__name__} {result!r}"
        raise TypeError(f"selector {name!r} returned {shown[:200]}; {expected}")
    gamma, info = result
    if isinstance(gamma, (bool, np.bool_)) or not isinstance(gamma, numbers.Real):
        if not (isinstance(gamma, np.ndarray) and gamma.size == 1 and gamma.dtype.kind in "iuf"):
            raise TypeError(
                f"selector {name!r} returned γ = {gamma!r} ({type(gamma).__name__}); {expected}"
            )
        gamma = gamma.item()
    gamma = float(gamma)
    if not math.isfinite(gamma):
        raise ValueError(f"selector {name!r} returned a non-finite γ: {gamma}")
    if not isinstance(info, Mapping):
        raise TypeError(
            f"selector {name!r} returned info = {info!r} ({type(info).__name__}); {expected}"
        )
    return gamma, dict(info)


def check_width(num_classes: int | None, width: int) -> None:
    """``num_classes``, when given, must be the logits' width."""
    if num_classes is not None and int(num_classes) != width:
        raise ValueError(f"num_classes={num_classes!r} but the logits have {width} columns")


def check_state(
    state: SeenAbsentState,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any,
    num_classes: int | None,
    sample_weight: Any = None,
) -> None:
    """A :class:`~calib.metrics.streaming.SeenAbsentState` given as a selector's ``logits``: it
    holds its labels and weights (given to its ``update``), and was built with these S and U.

    Raises:
        ValueError: labels or sample_weight given beside it, another width, or other classes.
    """
    for name, value in (("labels", labels), ("sample_weight", sample_weight)):
        if value is not None:
            raise ValueError(
                f"{name} given with a SeenAbsentState: the state holds its own {name} (those "
                "given to its update); pass None"
            )
    check_width(num_classes, state.num_classes)
    seen, absent = check_classes(seen_classes, absent_classes, state.num_classes)
    for name, given, built in (
        ("seen_classes", seen, state.seen_classes),
        ("absent_classes", absent, state.absent_classes),
    ):
        if not np.array_equal(given, built):
            raise ValueError(
                f"{name} {given.tolist()[:10]} differ from those the SeenAbsentState was "
                f"built with: {built.tolist()[:10]}"
            )


def check_groups(
    y: np.ndarray,
    seen: np.ndarray,
    absent: np.ndarray,
    criterion: str,
    where: str = "",
    weights: np.ndarray | None = None,
) -> None:
    """``hmean`` is undefined unless the labels cover both S and U (with a weight > 0 in
    each, given ``weights``): say so before any curve."""
    if criterion != "hmean":
        return
    for group, classes in (("seen", seen), ("absent", absent)):
        rows = np.isin(y, classes)
        if not rows.any():
            raise ValueError(
                f"{where}criterion 'hmean' needs samples of both groups, but none has a label "
                f"in the {group} classes"
            )
        if weights is not None and not weights[rows].any():
            raise ValueError(
                f"{where}criterion 'hmean' needs samples of both groups, but sample_weight is 0 "
                f"for every sample of the {group} classes"
            )


def criterion_values(curve: SeenAbsentCurve, criterion: str) -> np.ndarray:
    """The criterion at every point of ``curve`` (a numpy curve), shape (M + 1,)."""
    if criterion == "acc_all":
        return np.asarray(curve.acc_all, dtype=np.float64)
    s = np.asarray(curve.acc_seen, dtype=np.float64)
    a = np.asarray(curve.acc_absent, dtype=np.float64)
    total = s + a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * s * a / total, 0.0)
