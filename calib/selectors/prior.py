"""``prior``: label-free γ from unlabelled target logits: the predicted share of U matches a
prior (default |U| / (|S| + |U|))."""

from __future__ import annotations

from typing import Any

import numpy as np

from calib.metrics.streaming import SeenAbsentState
from calib.rules.gaps import scan_checked
from calib.rules.stepmax import maximise
from calib.selectors.checks import check_state, check_width
from calib.selectors.spec import check_prior, register_selector
from calib.validation import check_classes, check_logits

__all__ = ["select_prior"]


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
        logits: (N, C) unlabelled target logits; or a
            :class:`~calib.metrics.streaming.SeenAbsentState` of them (built with these S and
            U): the same γ, exactly, from its gaps (a state fed no weights).
        seen_classes, absent_classes: S and U (default U = every column not in S).
        prior: target share of U predictions in [0, 1]; default |U| / (|S| + |U|).

    Returns:
        ``(gamma, info)``; ``info["share"]`` is the share reached, ``info["prior"]`` the target.
    """
    if isinstance(logits, SeenAbsentState):
        check_state(logits, None, seen_classes, absent_classes, num_classes)
        if not logits.keep_gaps:
            raise ValueError("prior needs the gaps, but the state was built with keep_gaps=False")
        if logits.weighted:
            raise ValueError(
                "prior counts every target sample alike, but the state was fed sample_weight"
            )
        if not logits.n_samples:
            raise ValueError("prior: the state holds no sample yet (call update first)")
        seen, absent, gaps = logits.seen_classes, logits.absent_classes, logits.gaps
    else:
        z = check_logits(logits, values=False, on_device=True)  # values: in the one pass below
        seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
        check_width(num_classes, z.shape[1])
        gaps = scan_checked(z, seen, absent)["gap"]
    prior = check_prior(prior)
    if prior is None:
        prior = absent.size / (seen.size + absent.size)
    gaps = np.sort(gaps)
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
