"""γ selectors: the ways to choose the bias added to the absent-class logits.

Every selector is a plain function registered in :data:`SELECTORS` that returns
``(gamma, info)``: γ in logit units (a finite float) and a dict of details (the
criterion reached, the data it used, ...). Selectors name their inputs with the
same keywords, so that :class:`calib.LogitBiasCalibrator` can feed any of them:

==========  ========================================================  =====================
key         data                                                      parameters
==========  ========================================================  =====================
``alg``     fine-tuning training logits and labels (S samples only)   —
``oracle``  labelled target logits with absent classes (upper bound)  ``criterion``
``pcv``     :class:`PseudoSplit` s: held-out S data, pseudo-absent    ``criterion``
``prior``   unlabelled target logits (no labels at all)               ``prior``
``fixed``   —                                                         ``gamma``
==========  ========================================================  =====================

Data keywords: ``logits`` (N, C), ``labels`` (N,), ``seen_classes`` (S),
``absent_classes`` (U, default every column not in S), ``pseudo_splits``,
``num_classes``. Every γ a selector returns obeys the decision rule of
:mod:`calib._gaps` (a sample moves to U exactly when γ > its gap), and the
curve-based selectors are exact: they optimise over all of ℝ, not over a grid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import check_classes, check_labels, check_logits
from ._gaps import compute_gaps
from .curve import SeenAbsentCurve, seen_absent_curve
from .registry import Registry

__all__ = [
    "SELECTORS",
    "CRITERIA",
    "PseudoSplit",
    "select_alg",
    "select_oracle",
    "select_pcv",
    "select_prior",
    "select_fixed",
    "selector_arguments",
]

Selector = Callable[..., tuple[float, dict[str, Any]]]

SELECTORS: Registry[Selector] = Registry("selector")

#: Criteria that the curve-based selectors maximise (fractions in [0, 1]).
CRITERIA = ("acc_all", "hmean")

#: Two criterion values closer than this count as a tie (float rounding of averages).
_TIE_ATOL = 1e-12


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class PseudoSplit:
    """One pseudo split of Pseudo Cross-Validation (PCV).

    S is split into pseudo-seen and pseudo-absent classes; a model fine-tuned on the
    pseudo-seen classes only scores held-out S data. Only S data appear here.

    Attributes:
        logits: (N, C) scores of the held-out S samples by the pseudo-split model.
        labels: (N,) their labels; every one in ``seen_classes ∪ absent_classes`` and in S.
        seen_classes: the pseudo-seen classes (a subset of S) this model was fine-tuned on.
        absent_classes: the columns that receive γ in this run: the pseudo-absent classes
            plus any other column absent from its fine-tuning (e.g. the real U).
    """

    logits: Any
    labels: Any
    seen_classes: Any
    absent_classes: Any


def selector_arguments(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """(required, optional) keyword names that the selector ``name`` accepts."""
    params = inspect.signature(SELECTORS.get(name)).parameters.values()
    required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
    optional = frozenset(p.name for p in params if p.default is not inspect.Parameter.empty)
    return required, optional


# ----------------------------------------------------------------------------- helpers


def _check_criterion(criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return criterion


def _check_groups(
    y: np.ndarray, seen: np.ndarray, absent: np.ndarray, criterion: str, where: str = ""
) -> None:
    """``hmean`` is undefined unless the labels cover both S and U: say so before any curve."""
    if criterion != "hmean":
        return
    for group, classes in (("seen", seen), ("absent", absent)):
        if not np.isin(y, classes).any():
            raise ValueError(
                f"{where}criterion 'hmean' needs samples of both groups, but none has a label "
                f"in the {group} classes"
            )


def _criterion_values(curve: SeenAbsentCurve, criterion: str) -> np.ndarray:
    """The criterion at every point of ``curve`` (a numpy curve), shape (M + 1,)."""
    if criterion == "acc_all":
        return np.asarray(curve.acc_all, dtype=np.float64)
    s = np.asarray(curve.acc_seen, dtype=np.float64)
    a = np.asarray(curve.acc_absent, dtype=np.float64)
    total = s + a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * s * a / total, 0.0)


def _interior(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """One γ inside each interval ``(low, high]``: its midpoint.

    Unbounded ends: ``(-inf, h]`` → ``h - 1``; ``(l, +inf)`` → ``l + 1``; ℝ → 0. Where the
    midpoint rounds onto ``low`` (adjacent floats), ``high`` is taken: it belongs to the interval.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mid = low / 2 + high / 2
        above = np.maximum(low + 1.0, np.nextafter(low, np.inf))
    mid = np.where(np.isneginf(low), high - 1.0, mid)
    mid = np.where(np.isposinf(high), above, mid)
    mid = np.where(np.isneginf(low) & np.isposinf(high), 0.0, mid)
    return np.where(mid > low, mid, high)


@dataclass(frozen=True)
class _Choice:
    gamma: float
    value: float
    values: np.ndarray  # the criterion of every step function at ``gamma``
    interval: tuple[float, float]


def _maximise(steps: Sequence[tuple[np.ndarray, np.ndarray]]) -> _Choice:
    """Maximise the average of step functions of γ, exactly.

    Each step function is ``(gamma, value)`` as in :class:`SeenAbsentCurve`: ``value[k]`` holds
    on ``(gamma[k-1], gamma[k]]`` and ``gamma[-1] = +inf``. Their average is constant on the
    intervals between consecutive breakpoints of the union, so it is evaluated once inside
    each of them (``searchsorted``, no loop over breakpoints). Ties — values within 1e-12 —
    go to the interval closest to γ = 0 (then to the lower one): the smallest bias that
    reaches the best value.
    """
    breaks = np.unique(np.concatenate([np.asarray(g[:-1], dtype=np.float64) for g, _ in steps]))
    low = np.concatenate([[-np.inf], breaks])
    high = np.concatenate([breaks, [np.inf]])
    candidates = _interior(low, high)
    per_step = np.stack(
        [np.asarray(v)[np.searchsorted(np.asarray(g), candidates, side="left")] for g, v in steps]
    )
    mean = per_step.mean(axis=0)
    best = np.flatnonzero(mean >= mean.max() - _TIE_ATOL)
    distance = np.where(low >= 0, low, np.where(high < 0, -high, 0.0))  # from 0 to (low, high]
    j = int(best[np.argmin(distance[best])])
    return _Choice(
        gamma=float(candidates[j]),
        value=float(mean[j]),
        values=per_step[:, j],
        interval=(float(low[j]), float(high[j])),
    )


# ----------------------------------------------------------------------------- selectors


@SELECTORS.register("alg")
def select_alg(
    logits: Any, labels: Any, seen_classes: Any, absent_classes: Any = None
) -> tuple[float, dict[str, Any]]:
    """Average Logit Gap (ALG) from the fine-tuning training data.

    γ = mean over samples of [mean logit of the S classes other than the true one − mean
    logit of the U classes]. Columns in neither S nor U are ignored. Adding a constant to all
    logits of a sample leaves its term unchanged.

    Args:
        logits: (N, C) logits of the fine-tuning training samples (numpy or torch).
        labels: (N,) their labels, all in S: ALG may only see fine-tuning data.
        seen_classes: S, at least two classes.
        absent_classes: U; default every column not in S.

    Returns:
        ``(gamma, info)``; ``info`` holds ``n_samples`` and ``gap_std`` (the spread of the
        per-sample terms).

    Raises:
        ValueError: a label outside S, |S| < 2, or invalid input.
    """
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    if seen.size < 2:
        raise ValueError(
            f"ALG needs at least 2 seen classes (it averages the non-true ones), got {seen.size}"
        )
    outside = ~np.isin(y, seen)
    if outside.any():
        where = "absent classes U" if np.isin(y[outside], absent).any() else "non-seen columns"
        raise ValueError(
            f"ALG may only see fine-tuning (S) data, but {int(outside.sum())} label(s) lie in the "
            f"{where}, e.g. {int(y[outside][0])}; pass the fine-tuning training samples only"
        )
    z_seen = z[:, seen].astype(np.float64, copy=False)
    true_logit = z[np.arange(z.shape[0]), y].astype(np.float64)
    mean_other_seen = (z_seen.sum(axis=1) - true_logit) / (seen.size - 1)
    mean_absent = z[:, absent].astype(np.float64, copy=False).mean(axis=1)
    terms = mean_other_seen - mean_absent
    gamma = float(terms.mean())
    return gamma, {"method": "alg", "n_samples": int(z.shape[0]), "gap_std": float(terms.std())}


@SELECTORS.register("oracle")
def select_oracle(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    criterion: str = "acc_all",
) -> tuple[float, dict[str, Any]]:
    """The best γ on labelled target data that include absent-class samples.

    This uses labelled absent-class (U) data, which a real deployment does not have: it is an
    upper bound for analysis, not a selector to report as a method.

    Exact: the criterion is a step function of γ (:func:`calib.seen_absent_curve`); its best
    point k holds on ``(gamma[k-1], gamma[k]]`` and γ is that interval's midpoint
    (``gamma[0] - 1`` for the first, ``gamma[-2] + 1`` for the last, unbounded one). Ties go
    to the interval closest to γ = 0.

    Args:
        logits: (N, C) target logits; labels: (N,) their labels (any class).
        seen_classes, absent_classes: S and U (default U = every column not in S).
        criterion: ``"acc_all"`` (default) or ``"hmean"`` (of acc_seen and acc_absent).

    Returns:
        ``(gamma, info)``; ``info["value"]`` is the criterion reached, ``info["interval"]``
        the γ interval that reaches it.
    """
    _check_criterion(criterion)
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    _check_groups(y, seen, absent, criterion)
    curve = seen_absent_curve(z, y, seen, absent)
    choice = _maximise([(curve.gamma, _criterion_values(curve, criterion))])
    return choice.gamma, {
        "method": "oracle",
        "criterion": criterion,
        "value": choice.value,
        "interval": choice.interval,
        "uses_absent_labels": True,
        "note": "upper bound: chosen with labelled absent-class data",
    }


@SELECTORS.register("fixed")
def select_fixed(gamma: float) -> tuple[float, dict[str, Any]]:
    """A given γ (logit units), checked to be a finite number."""
    try:
        value = float(gamma)
    except (TypeError, ValueError) as err:
        raise TypeError(f"gamma must be a number, got {gamma!r}") from err
    if not np.isfinite(value):
        raise ValueError(f"gamma must be finite, got {value}")
    return value, {"method": "fixed"}


@SELECTORS.register("pcv")
def select_pcv(
    pseudo_splits: Sequence[PseudoSplit],
    seen_classes: Any,
    absent_classes: Any = None,
    criterion: str = "hmean",
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """The γ-selection half of Pseudo Cross-Validation: best average criterion over splits.

    Each split's criterion (pseudo-seen vs pseudo-absent accuracy on its held-out S data)
    is a step function of γ; their average is a step function over the union of all
    breakpoints, maximised exactly (ties → the interval closest to γ = 0). No absent-class
    (U) data may appear: every split label must be a fine-tuning class.

    Args:
        pseudo_splits: one or more :class:`PseudoSplit`, all with C columns.
        seen_classes: the real S; absent_classes: the real U (default every column not in S).
        criterion: ``"hmean"`` (default) or ``"acc_all"``.
        num_classes: C, checked against the splits' logits when given.

    Returns:
        ``(gamma, info)``; ``info["value"]`` is the average criterion at γ,
        ``info["split_values"]`` each split's.

    Raises:
        ValueError: no split, a split label in U (or outside S), a label outside its split's
            classes, pseudo-seen classes outside S, mismatched column counts.
    """
    _check_criterion(criterion)
    splits = list(pseudo_splits)
    if not splits:
        raise ValueError("pcv needs at least one pseudo split")
    for j, split in enumerate(splits):
        if not isinstance(split, PseudoSplit):
            raise TypeError(f"pseudo_splits[{j}] must be a PseudoSplit, got {type(split).__name__}")
    logits = [check_logits(s.logits, f"pseudo_splits[{j}].logits") for j, s in enumerate(splits)]
    widths = {z.shape[1] for z in logits}
    if num_classes is not None:
        widths.add(int(num_classes))
    if len(widths) != 1:
        raise ValueError(
            f"pseudo splits and num_classes disagree on the number of columns: {sorted(widths)}"
        )
    (c,) = widths
    seen, absent = check_classes(seen_classes, absent_classes, c)

    steps = []
    for j, (split, z) in enumerate(zip(splits, logits, strict=True)):
        where = f"pseudo_splits[{j}]: "
        y = check_labels(split.labels, z.shape[0], c, f"pseudo_splits[{j}].labels")
        in_absent = np.isin(y, absent)
        if in_absent.any():
            raise ValueError(
                f"{where}{int(in_absent.sum())} label(s) lie in the absent classes U, e.g. "
                f"{int(y[in_absent][0])}: PCV may not touch U data (score held-out S data only)"
            )
        not_seen = ~np.isin(y, seen)
        if not_seen.any():
            raise ValueError(f"{where}label {int(y[not_seen][0])} is not a fine-tuning (S) class")
        try:
            p_seen, p_absent = check_classes(split.seen_classes, split.absent_classes, c)
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None
        if not np.isin(p_seen, seen).all():
            extra = np.setdiff1d(p_seen, seen)
            raise ValueError(f"{where}pseudo-seen classes {extra.tolist()[:10]} are not in S")
        stray = ~np.isin(y, np.union1d(p_seen, p_absent))
        if stray.any():
            raise ValueError(
                f"{where}label {int(y[stray][0])} is in neither the split's seen nor absent classes"
            )
        _check_groups(y, p_seen, p_absent, criterion, where)
        curve = seen_absent_curve(z, y, p_seen, p_absent)
        steps.append((curve.gamma, _criterion_values(curve, criterion)))

    choice = _maximise(steps)
    return choice.gamma, {
        "method": "pcv",
        "criterion": criterion,
        "value": choice.value,
        "split_values": [float(v) for v in choice.values],
        "n_splits": len(splits),
        "interval": choice.interval,
    }


@SELECTORS.register("prior")
def select_prior(
    logits: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    prior: float | None = None,
) -> tuple[float, dict[str, Any]]:
    """Label-free: the γ under which the predicted share of U on unlabelled logits meets a prior.

    Beyond the paper. The share of samples predicted in U is the fraction whose gap is below
    γ, a step function; γ is chosen inside the step whose share is closest to ``prior``
    (exact — a quantile of the gaps; ties → the step closest to γ = 0). No labels are taken.

    Args:
        logits: (N, C) unlabelled target logits.
        seen_classes, absent_classes: S and U (default U = every column not in S).
        prior: target share of U predictions in [0, 1]; default |U| / (|S| + |U|).

    Returns:
        ``(gamma, info)``; ``info["share"]`` is the share reached, ``info["prior"]`` the target.
    """
    z = check_logits(logits)
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    if prior is None:
        prior = absent.size / (seen.size + absent.size)
    prior = float(prior)
    if not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must be a share in [0, 1], got {prior}")
    gaps = np.sort(compute_gaps(z, absent).gap)
    gamma_steps = np.append(np.unique(gaps), np.inf)
    share = np.searchsorted(gaps, gamma_steps, side="left") / gaps.size  # predicted in U: gap < γ
    choice = _maximise([(gamma_steps, -np.abs(share - prior))])
    reached = float(np.count_nonzero(gaps < choice.gamma) / gaps.size)
    return choice.gamma, {
        "method": "prior",
        "prior": prior,
        "share": reached,
        "n_samples": int(gaps.size),
        "interval": choice.interval,
    }
