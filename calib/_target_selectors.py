"""The selectors that read target-domain logits: ``oracle`` (labelled, an upper bound) and
``prior`` (unlabelled, label-free). Registered in :data:`calib.selectors.SELECTORS` on import;
use them through :mod:`calib.selectors` (see there for the selector contract)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_classes, check_labels, check_logits
from ._gaps import scan_checked
from ._selector_checks import check_groups, check_width, criterion_values
from ._stepmax import maximise
from .curve import checked_curve
from .selector_spec import check_criterion, check_prior, register_selector

__all__ = ["select_oracle", "select_prior"]


@register_selector(
    "oracle",
    data="target_labelled",
    params={"criterion": "acc_all"},
    checks={"criterion": check_criterion},
    uses_absent_labels=True,
    description="best γ on labelled target data with U (an upper bound for analysis)",
)
def select_oracle(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    criterion: str = "acc_all",
    num_classes: int | None = None,
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
    check_criterion(criterion)
    z = check_logits(logits, values=False)  # values: checked by the curve's one pass
    check_width(num_classes, z.shape[1])
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    check_groups(y, seen, absent, criterion)
    curve = checked_curve(z, y, seen, absent)  # checked above: not again
    choice = maximise([(curve.gamma, criterion_values(curve, criterion))])
    return choice.gamma, {
        "method": "oracle",
        "criterion": criterion,
        "value": choice.value,
        "interval": choice.interval,
        "uses_absent_labels": True,
        "note": "upper bound: chosen with labelled absent-class data",
    }


@register_selector(
    "prior",
    data="target_unlabelled",
    params={"prior": None},
    checks={"prior": check_prior},
    description="label-free: the predicted share of U on unlabelled logits meets a prior",
)
def select_prior(
    logits: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    prior: float | None = None,
    num_classes: int | None = None,
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
    z = check_logits(logits, values=False, on_device=True)  # values: checked in the one pass below
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    check_width(num_classes, z.shape[1])
    prior = check_prior(prior)
    if prior is None:
        prior = absent.size / (seen.size + absent.size)
    gaps = np.sort(scan_checked(z, seen, absent)["gap"])
    finite = gaps[np.isfinite(gaps)]  # -inf columns: a group that can never win has no step
    gamma_steps = np.append(np.unique(finite), np.inf)
    share = np.searchsorted(gaps, gamma_steps, side="left") / gaps.size  # predicted in U: gap < γ
    choice = maximise([(gamma_steps, -np.abs(share - prior))])
    reached = float(np.count_nonzero(gaps < choice.gamma) / gaps.size)
    return choice.gamma, {
        "method": "prior",
        "prior": prior,
        "share": reached,
        "n_samples": int(gaps.size),
        "interval": choice.interval,
    }
