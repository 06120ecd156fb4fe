"""Temperature scaling after the bias γ: the T that minimises the NLL of softmax((z + γ·1_U)/T).

γ decides between seen (S) and absent (U) classes; T only sharpens or flattens the
probabilities, so it never changes a prediction. T is fitted exactly: with β = 1/T and the
shifted scores s = z + γ·1_U, the mean NLL f(β) = mean_i [logsumexp(β s_i) − β s_{i,y_i}] is
convex in β (a log-sum-exp of linear functions), with f'(β) = mean_i [E_p s_i − s_{i,y_i}] and
f''(β) = mean_i Var_p s_i ≥ 0. The root of f' is found in log β = −log T by Newton steps
safeguarded by bisection inside the bracket T ∈ [1e-3, 1e3], to |Δ log T| ≤ 1e-12; no grid.
When the optimum lies outside the bracket (every training sample right with a margin → T → 0;
a classifier worse than chance → T → ∞) the bracket end is returned with a RuntimeWarning.

**Per-group temperatures** (``per_group=True``) return (T_S, T_U): a sample whose prediction
under γ is an absent column is scaled by T_U, any other sample by T_S (columns outside S and
U go with S). Each row keeps one temperature, so the argmax is still that of γ alone (and
of the single-T case): per-group T changes the confidences of the samples predicted in U apart
from those predicted in S, never a decision. (Scaling the S columns and the U columns of one
row by different temperatures would instead move samples between the groups — a second,
logit-dependent bias that would undo the selector's γ.) The NLL then separates: T_S is fitted
on the rows predicted outside U, T_U on the rows predicted in U; a group without rows falls
back to the pooled T, with a RuntimeWarning.

**Which data each γ selector may fit T on** (T must not see more than its selector):

==========  ==========================================================================
selector    data for T
==========  ==========================================================================
``alg``     the fine-tuning training logits of S (the data ALG uses): available, but
            biased — the model was trained on them, so they are overconfident and the
            fitted T is too small; no U sample, so T_U is fitted only on S samples
            that γ sends to U (all wrong).
``pcv``     the held-out S data of the PCV pseudo splits, each split's pseudo-absent
            classes standing in for U and shifted by γ (:func:`fit_temperature_pseudo_splits`):
            no U data, and held out from the pseudo models' training.
``prior``   none: the prior selector is label-free and NLL needs labels, so T = 1. (A user
            who keeps the fine-tuning labels may reuse the ``alg`` T; that is then a
            different data budget and should be reported as such.)
``oracle``  the labelled target data with U (the oracle's own data): an upper bound for
            analysis, in-sample when that data is also the test set.
``fixed``   none (T = 1) unless labelled data are given.
==========  ==========================================================================
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib.class_names import check_class_names, class_ids
from calib.rules.gaps import compute_gaps
from calib.selectors.data_kinds import DataKind, data_kind
from calib.validation import (
    check_absent,
    check_classes,
    check_gamma,
    check_labels,
    check_logits,
    temperature_value,
)

__all__ = [
    "T_BRACKET",
    "fit_temperature",
    "fit_temperature_pseudo_splits",
    "FIT_KEYS",
    "check_temperature_param",
    "fitted_temperature",
    "break_ties",
]

#: The temperatures the fit searches, (T_min, T_max).
T_BRACKET = (1e-3, 1e3)

_XTOL = 1e-12  # on log T
_MAXITER = 200


@dataclass(frozen=True)
class _Block:
    """Rows of one data set: shifted scores with the row max subtracted, labels, row weight."""

    scores: np.ndarray  # (n, C) float64, every row's max is 0
    labels: np.ndarray  # (n,)
    weight: float  # each row's weight in the objective

    @classmethod
    def make(cls, scores: np.ndarray, labels: np.ndarray, weight: float) -> _Block:
        # a per-row constant changes no probability: subtracting the max keeps exp() in range
        return cls(scores - scores.max(axis=1, keepdims=True), labels, weight)


def _slope(blocks: Sequence[_Block], beta: float) -> tuple[float, float]:
    """(f'(β), f''(β)) of the weighted NLL f(β) = Σ w·[logsumexp(β s) − β s_y]."""
    grad = curv = 0.0
    for b in blocks:
        p = np.exp(beta * b.scores)  # every row's max is 0, so no overflow and a sum >= 1
        p /= p.sum(axis=1, keepdims=True)
        mean = np.einsum("ij,ij->i", p, b.scores)
        centred = b.scores - mean[:, None]
        var = np.einsum("ij,ij,ij->i", p, centred, centred)
        s_y = b.scores[np.arange(b.labels.size), b.labels]
        grad += b.weight * float((mean - s_y).sum())
        curv += b.weight * float(var.sum())
    return grad, curv


def _solve(blocks: Sequence[_Block], what: str) -> float:
    """The T in T_BRACKET minimising the weighted NLL of ``blocks`` (safeguarded Newton in log β)."""
    t_min, t_max = T_BRACKET
    lo, hi = -math.log(t_max), -math.log(t_min)  # u = log β = −log T
    g_lo, _ = _slope(blocks, math.exp(lo))
    g_hi, _ = _slope(blocks, math.exp(hi))
    if g_lo >= 0 and g_hi <= 0:
        warnings.warn(f"{what}: the NLL does not depend on T; T = 1", RuntimeWarning, stacklevel=3)
        return 1.0
    if g_lo >= 0:
        warnings.warn(
            f"{what}: the NLL keeps falling as T grows (predictions worse than uniform); "
            f"T clipped to {t_max:g}",
            RuntimeWarning,
            stacklevel=3,
        )
        return t_max
    if g_hi <= 0:
        warnings.warn(
            f"{what}: the NLL keeps falling as T shrinks (every sample right with a margin); "
            f"T clipped to {t_min:g}",
            RuntimeWarning,
            stacklevel=3,
        )
        return t_min
    u = 0.0  # start at T = 1
    for _ in range(_MAXITER):
        beta = math.exp(u)
        g, h = _slope(blocks, beta)
        if g == 0.0:
            break
        if g < 0:
            lo = u
        else:
            hi = u
        d = beta * h  # dG/du for G(u) = f'(e^u)
        step = u - g / d if d > 0 else math.nan
        if not lo < step < hi:  # also catches NaN
            step = 0.5 * (lo + hi)
        if abs(step - u) <= _XTOL or hi - lo <= _XTOL:
            u = step
            break
        u = step
    return math.exp(-u)


def _shifted(z: np.ndarray, absent: np.ndarray | None, gamma: float) -> np.ndarray:
    s = z.astype(np.float64, copy=True)
    if absent is not None and gamma != 0.0:
        s[:, absent] += gamma
    return s


def _resolve_absent(
    absent_classes: Any, seen_classes: Any, num_classes: int, class_names: Any = None
) -> np.ndarray | None:
    names = check_class_names(class_names, num_classes)
    seen_classes = class_ids(seen_classes, names, "seen_classes")
    absent_classes = class_ids(absent_classes, names, "absent_classes")
    if seen_classes is not None:
        return check_classes(seen_classes, absent_classes, num_classes)[1]
    if absent_classes is not None:
        return check_absent(absent_classes, num_classes)
    return None


def _fit_groups(
    blocks: list[_Block], predicted_absent: list[np.ndarray], what: str
) -> tuple[float, float]:
    """(T_S, T_U): one fit on the rows predicted outside U, one on the rows predicted in U."""
    pooled: float | None = None
    temps = []
    for name, in_u in (("T_S", False), ("T_U", True)):
        part = [
            _Block(b.scores[m == in_u], b.labels[m == in_u], b.weight)
            for b, m in zip(blocks, predicted_absent, strict=True)
            if (m == in_u).any()
        ]
        if part:
            temps.append(_solve(part, f"{what}, {name}"))
            continue
        group = "an absent" if in_u else "a non-absent"
        warnings.warn(
            f"{what}: no sample is predicted in {group} column, so {name} cannot be fitted; "
            "it falls back to the pooled T",
            RuntimeWarning,
            stacklevel=3,
        )
        if pooled is None:
            pooled = _solve(blocks, what)
        temps.append(pooled)
    return temps[0], temps[1]


def fit_temperature(
    logits: Any,
    labels: Any,
    absent_classes: Any = None,
    gamma: float = 0.0,
    *,
    per_group: bool = False,
    seen_classes: Any = None,
    class_names: Any = None,
) -> float | tuple[float, float]:
    """The temperature T minimising the mean NLL of softmax((z + γ·1_U)/T) on labelled data.

    Args:
        logits: (N, C) scores, numpy array or torch tensor (any device, any float dtype).
        labels: (N,) integer labels in [0, C).
        absent_classes: the columns U that receive γ; default every column not in
            ``seen_classes``, or no column at all (plain temperature scaling) when
            ``seen_classes`` is None too.
        gamma: the bias added to U, in logit units; finite.
        per_group: fit (T_S, T_U) instead of one T (module docstring); needs U.
        seen_classes: S, used only to check U against it or to derive it.
        class_names: one name per column (index = label), so that U and S may be names.

    Returns:
        T as a float, or (T_S, T_U) with ``per_group``; each in :data:`T_BRACKET`.

    Raises:
        ValueError / TypeError: malformed logits, labels or class sets; a non-finite gamma;
            gamma ≠ 0 or per_group without any absent column.
    """
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1])
    absent = _resolve_absent(absent_classes, seen_classes, z.shape[1], class_names)
    gamma = check_gamma(gamma)
    if not isinstance(per_group, (bool, np.bool_)):
        raise TypeError(f"per_group must be a bool, got {per_group!r}")
    if absent is None and (gamma != 0.0 or per_group):
        raise ValueError(
            f"gamma={gamma} / per_group={per_group} need the absent columns: pass "
            "absent_classes or seen_classes"
        )
    blocks = [_Block.make(_shifted(z, absent, gamma), y, 1.0 / y.size)]
    if not per_group:
        return _solve(blocks, "fit_temperature")
    in_u = np.isin(compute_gaps(z, absent).predict(gamma), absent)
    return _fit_groups(blocks, [in_u], "fit_temperature")


def fit_temperature_pseudo_splits(
    pseudo_splits: Sequence[Any],
    gamma: float,
    *,
    per_group: bool = False,
    class_names: Any = None,
) -> float | tuple[float, float]:
    """One T (or (T_S, T_U)) fitted on the held-out S data of PCV's pseudo splits.

    Each split's logits get γ on its own ``absent_classes`` (pseudo-absent classes and any
    other column absent from its fine-tuning), so its pseudo-absent samples stand in for U.
    The objective is the mean over splits of each split's mean NLL (every split weighs the
    same, as in PCV's criterion).

    Args:
        pseudo_splits: non-empty sequence of :class:`calib.selectors.PseudoSplit` (or objects
            with ``logits labels seen_classes absent_classes``).
        gamma: the bias, typically the γ that PCV chose; finite.
        per_group: fit (T_S, T_U), rows split by whether their prediction is in the split's
            absent columns.
        class_names: one name per column (index = label), so that the splits' classes may
            be names.

    Raises:
        ValueError / TypeError: no split, a split without those fields, or malformed data.
    """
    if isinstance(pseudo_splits, (str, bytes)) or not isinstance(pseudo_splits, Sequence):
        raise TypeError(f"pseudo_splits must be a sequence of PseudoSplit, got {pseudo_splits!r}")
    if len(pseudo_splits) == 0:
        raise ValueError("pseudo_splits is empty: at least one pseudo split is needed")
    gamma = check_gamma(gamma)
    if not isinstance(per_group, (bool, np.bool_)):
        raise TypeError(f"per_group must be a bool, got {per_group!r}")
    blocks, in_u = [], []
    for j, split in enumerate(pseudo_splits):
        name = f"pseudo_splits[{j}]"
        missing = [
            a
            for a in ("logits", "labels", "seen_classes", "absent_classes")
            if not hasattr(split, a)
        ]
        if missing:
            raise TypeError(f"{name} must be a PseudoSplit; it lacks {', '.join(missing)}")
        z = check_logits(split.logits, f"{name}.logits")
        y = check_labels(split.labels, z.shape[0], z.shape[1], f"{name}.labels", f"{name}.logits")
        names = check_class_names(class_names, z.shape[1])
        try:
            absent = check_classes(
                class_ids(split.seen_classes, names, "seen_classes"),
                class_ids(split.absent_classes, names, "absent_classes"),
                z.shape[1],
            )[1]
        except (TypeError, ValueError) as err:
            raise type(err)(f"{name}: {err}") from err
        blocks.append(
            _Block.make(_shifted(z, absent, gamma), y, 1.0 / (y.size * len(pseudo_splits)))
        )
        in_u.append(np.isin(compute_gaps(z, absent).predict(gamma), absent))
    if not per_group:
        return _solve(blocks, "fit_temperature_pseudo_splits")
    return _fit_groups(blocks, in_u, "fit_temperature_pseudo_splits")


# ---------------------------------------------- the estimator's temperature parameter

#: The ``temperature`` values that fit T: one T, or (T_S, T_U) by the row rule.
FIT_KEYS = ("fit", "fit_per_group")


def check_temperature_param(temperature: Any, method: str, kind: DataKind | str | None) -> Any:
    """``temperature`` in canonical form: 1.0, a float, a (T_S, T_U) tuple, or a fit key.

    ``kind`` is the selector's declared data kind (a record of
    :mod:`calib.selectors.data_kinds`, or its name).

    Raises:
        ValueError / TypeError: not None, a finite number > 0, a pair of them or ``"fit"``;
            a fit for a selector whose data carries no labels
            (``DataKind.fits_temperature`` false: ``target_unlabelled``, or no data).
    """
    if temperature is None:
        return 1.0
    if isinstance(temperature, str):
        if temperature not in FIT_KEYS:
            raise ValueError(
                f"temperature must be None, a number > 0, a pair (T_S, T_U), 'fit' or "
                f"'fit_per_group', got {temperature!r}"
            )
        record = data_kind(kind)
        if not record.fits_temperature:
            raise ValueError(
                f"temperature={temperature!r} is refused for method {method!r}: the selector is "
                f"{record.no_fit_reason} and the NLL that fits T needs labels it must not see; "
                "pass a temperature value (e.g. one fitted elsewhere) or None (T = 1)"
            )
        return temperature
    return temperature_value(temperature)


def fitted_temperature(
    temperature: Any,
    kind: DataKind | str | None,
    data: Mapping[str, Any],
    absent: np.ndarray,
    gamma: float,
) -> tuple[Any, dict[str, Any]]:
    """(temperature_, info entries): the canonical ``temperature`` resolved at γ.

    The one code path of a fitted T: :meth:`calib.LogitBiasCalibrator.fit` calls it, and so
    does the run for the (T_S, T_U) pair it reports. ``kind`` is the selector's data kind (a
    :class:`~calib.selectors.data_kinds.DataKind` or its name); ``data`` holds the inputs the
    selector was fed (``logits``/``labels`` or ``pseudo_splits``). The info entries:
    ``temperature`` (as fitted or given), ``temperature_data`` (the name of the data kind T
    was fitted on, or ``"given"``), ``temperature_samples`` (labelled rows seen; 0 if given)
    and, for a fitted T, ``temperature_note`` (the kind's ``temperature_data`` text).
    """
    per_group = temperature == "fit_per_group"
    if temperature not in FIT_KEYS:
        t = temperature
        info = {"temperature_data": "given", "temperature_samples": 0}
    else:
        record = data_kind(kind)
        if not record.fits_temperature:  # check_temperature_param refuses this first
            raise ValueError(
                f"temperature={temperature!r}: data kind {record.name!r} has no labels"
            )
        if "pseudo_splits" in record.inputs:
            splits = data["pseudo_splits"]
            t = fit_temperature_pseudo_splits(list(splits), gamma, per_group=per_group)
            n = int(sum(np.asarray(s.labels).shape[0] for s in splits))
        else:  # exactly the given logits and labels
            t = fit_temperature(data["logits"], data["labels"], absent, gamma, per_group=per_group)
            n = int(len(data["labels"]))
        info = {
            "temperature_data": record.name,
            "temperature_samples": n,
            "temperature_note": record.temperature_data,
        }
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
