"""γ selectors: the ways to choose the bias added to the absent-class logits.

Every selector is a plain function that returns ``(gamma, info)``: γ in logit units (a finite
float) and a dict of details (the criterion reached, the data it used, ...). It is registered
with :func:`register_selector`, which stores ONE declaration, a :class:`SelectorSpec`, in
:data:`SELECTORS`: the kind of data the selector takes (one of :data:`DATA_KINDS`) and its
parameters with their defaults. :class:`calib.LogitBiasCalibrator`, :func:`calib.calibrate` and
the run harness read that declaration to decide what to extract, what to pass and what to
refuse; nothing inspects signatures or branches on names.

==========  ======================  ========================================  =============
key         data kind               what it is                                parameters
==========  ======================  ========================================  =============
``alg``     ``finetune_train``      fine-tuning training logits + labels (S)  —
``oracle``  ``target_labelled``     labelled target data with U (upper bound) ``criterion``
``pcv``     ``pseudo_splits``       :class:`PseudoSplit` s: held-out S data   ``criterion``
``prior``   ``target_unlabelled``   unlabelled target logits, no labels       ``prior``
``fixed``   None                    nothing                                   ``gamma``
==========  ======================  ========================================  =============

A selector is called as ``fn(**data, seen_classes=S, absent_classes=U, num_classes=C,
**params)``, where ``data`` holds the fit inputs of its kind (:data:`DATA_INPUTS`: ``logits``
(N, C), ``labels`` (N,), ``pseudo_splits``). Every γ a selector returns obeys the decision rule
of :mod:`calib._gaps` (a sample moves to U exactly when γ > its gap), and the curve-based
selectors are exact: they optimise over all of ℝ, not over a grid.

Registering your own::

    @calib.selectors.register_selector(
        "median_gap", data="target_unlabelled", params={"q": 0.5}, description="..."
    )
    def select_median_gap(logits, seen_classes, absent_classes, num_classes, q):
        ...
        return gamma, {"method": "median_gap"}

    calib.LogitBiasCalibrator("median_gap", options={"q": 0.4}).fit(logits, seen_classes=S)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import check_classes, check_labels, check_logits, check_stats
from ._gaps import group_codes
from ._kernels import alg_sums
from ._selector_checks import check_groups as _check_groups
from ._selector_checks import check_width as _check_width
from ._selector_checks import criterion_values as _criterion_values
from ._stepmax import _interior  # noqa: F401 - the tests reach it here
from ._stepmax import maximise as _maximise
from ._target_selectors import select_oracle, select_prior
from .curve import seen_absent_curve
from .selector_spec import (
    CRITERIA,
    DATA_INPUTS,
    DATA_KINDS,
    FIT_INPUTS,
    REQUIRED,
    SELECTORS,
    PseudoSplit,
    SelectorSpec,
    check_criterion,
    check_gamma,
    check_prior,
    check_pseudo_splits,
    register_selector,
    selector_arguments,
    selector_spec,
)

__all__ = [
    "SELECTORS",
    "CRITERIA",
    "DATA_KINDS",
    "DATA_INPUTS",
    "FIT_INPUTS",
    "REQUIRED",
    "PseudoSplit",
    "SelectorSpec",
    "register_selector",
    "selector_spec",
    "check_pseudo_splits",
    "select_alg",
    "select_oracle",
    "select_pcv",
    "select_prior",
    "select_fixed",
    "selector_arguments",
    "selector_spec",
    "check_criterion",
    "check_prior",
    "check_gamma",
]


# ----------------------------------------------------------------------------- selectors


def _alg_terms(
    z: np.ndarray,
    y: np.ndarray,
    sum_seen: np.ndarray,
    sum_absent: np.ndarray,
    n_seen: int,
    n_absent: int,
    scale: float,
) -> np.ndarray:
    """(N,) ALG terms, times ``scale``, from the row sums of ``z * scale`` over S and U."""
    true_logit = z[np.arange(z.shape[0]), y].astype(np.float64) * scale
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is handled by the caller
        return (sum_seen - true_logit) / (n_seen - 1) - sum_absent / n_absent


@register_selector(
    "alg",
    data="finetune_train",
    description="Average Logit Gap from the fine-tuning training data (S labels only)",
)
def select_alg(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    num_classes: int | None = None,
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
    z = check_logits(logits, values=False)  # values: checked in the one pass below
    _check_width(num_classes, z.shape[1])
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
    codes = group_codes(z.shape[1], seen, absent)
    sum_seen, sum_absent, lo, hi, nan = alg_sums(z, codes)
    check_stats(z, "logits", lo, hi, nan)
    if not (np.isfinite(sum_seen).all() and np.isfinite(sum_absent).all()):
        used = np.concatenate([seen, absent])
        dead = used[np.isneginf(z[:, used]).any(axis=0)]
        if dead.size:
            raise ValueError(
                f"ALG averages logits, but column {int(dead[0])} holds -inf (a class that can "
                "never be predicted): leave it out of seen_classes/absent_classes"
            )
    scale = 1.0
    terms = _alg_terms(z, y, sum_seen, sum_absent, seen.size, absent.size, scale)
    with np.errstate(over="ignore", invalid="ignore"):
        gamma = float(terms.mean())
    if not math.isfinite(gamma):
        # finite logits near the float64 maximum whose sums overflow: the same sums at a
        # power-of-two scale (exact), small enough that no sum of |S| or |U| logits overflows
        scale = 2.0 ** -(math.ceil(math.log2(max(seen.size, absent.size))) + 2)
        sum_seen, sum_absent = alg_sums(z * scale, codes)[:2]
        terms = _alg_terms(z, y, sum_seen, sum_absent, seen.size, absent.size, scale)
        with np.errstate(over="ignore"):
            gamma = float(terms.mean() / scale)
        if not math.isfinite(gamma):
            top = float(np.abs(z[np.isfinite(z)]).max())
            raise ValueError(
                f"logits too large for ALG: they reach {top:.4g}, and the mean gap between "
                f"the S and U logits overflows float64 (max {np.finfo(np.float64).max:.4g}); "
                "rescale the logits"
            )
    big = float(np.abs(terms).max())  # the squares of the std overflow from 1.3e154 on
    gap_std = float((terms / big).std() * big / scale) if big > 1e150 else float(terms.std())
    return gamma, {"method": "alg", "n_samples": int(z.shape[0]), "gap_std": gap_std}


@register_selector(
    "fixed",
    data=None,
    params={"gamma": REQUIRED},
    checks={"gamma": check_gamma},
    description="a given γ (logit units)",
)
def select_fixed(
    gamma: float,
    seen_classes: Any = None,
    absent_classes: Any = None,
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """A given γ (logit units), checked to be a finite real number (strings are refused)."""
    return check_gamma(gamma), {"method": "fixed"}


@register_selector(
    "pcv",
    data="pseudo_splits",
    params={"criterion": "hmean"},
    checks={"criterion": check_criterion},
    description="Pseudo Cross-Validation: best mean criterion on held-out S data of pseudo splits",
)
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
    check_criterion(criterion)
    splits = check_pseudo_splits(pseudo_splits)
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
        left_out = np.setdiff1d(absent, p_absent)
        if left_out.size:
            raise ValueError(
                f"{where}absent_classes {p_absent.tolist()[:10]} leave out the real absent "
                f"classes {left_out.tolist()[:10]}: the deployed γ shifts U too, so a pseudo "
                "split must be scored with γ on its pseudo-absent classes and on U"
            )
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
