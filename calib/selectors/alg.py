"""``alg``: the Average Logit Gap, from the fine-tuning training data of S only (Mai et al. 2024)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from calib.metrics.streaming import (
    SeenAbsentState,
    alg_from_state,
    alg_gap_std,
    alg_scale,
    alg_term,
    alg_too_large,
    check_alg_labels,
)
from calib.rules.gaps import group_codes
from calib.rules.kernels import alg_sums
from calib.selectors.checks import check_state
from calib.selectors.checks import check_width as _check_width
from calib.selectors.spec import (
    register_selector,
)
from calib.validation import check_classes, check_labels, check_logits, check_stats

__all__ = ["select_alg"]


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
    return alg_term(sum_seen, sum_absent, true_logit, n_seen, n_absent)  # overflow: the caller's


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
        logits: (N, C) logits of the fine-tuning training samples (numpy or torch); or a
            :class:`~calib.metrics.streaming.SeenAbsentState` of them built with ``alg=True``
            (and these S and U): the γ of :func:`~calib.metrics.streaming.alg_from_state`,
            the same to float rounding, from logits that never were in memory at once.
        labels: (N,) their labels, all in S: ALG may only see fine-tuning data (None with a
            state: it holds them).
        seen_classes: S, at least two classes.
        absent_classes: U; default every column not in S.

    Returns:
        ``(gamma, info)``; ``info`` holds ``n_samples`` and ``gap_std`` (the spread of the
        per-sample terms).

    Raises:
        ValueError: a label outside S, |S| < 2, or invalid input.
    """
    if isinstance(logits, SeenAbsentState):
        check_state(logits, labels, seen_classes, absent_classes, num_classes)
        return alg_from_state(logits)
    z = check_logits(logits, values=False)  # values: checked in the one pass below
    _check_width(num_classes, z.shape[1])
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    check_alg_labels(y, seen, absent)
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
        scale = alg_scale(seen.size, absent.size)
        sum_seen, sum_absent = alg_sums(z * scale, codes)[:2]
        terms = _alg_terms(z, y, sum_seen, sum_absent, seen.size, absent.size, scale)
        with np.errstate(over="ignore"):
            gamma = float(terms.mean() / scale)
        if not math.isfinite(gamma):
            raise alg_too_large(f"they reach {float(np.abs(z[np.isfinite(z)]).max()):.4g}, and ")
    return gamma, {
        "method": "alg",
        "n_samples": int(z.shape[0]),
        "gap_std": alg_gap_std(terms, scale),
    }
