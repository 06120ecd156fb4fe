"""What fine-tuning does to the head and the logits: pure statistics of one epoch.

:func:`head_statistics` looks at the linear head's weights W (one row per class) against the
pre-trained ones W_pre: the paper finds that the rows of S grow much more than those of U,
and that the updates W − W_pre of the absent classes stay similar to one another (fine-tuning
moves them together, keeping their relationships). :func:`logit_statistics` looks at the test
logits: the seen logits rise above the absent ones, while on absent-class samples the
ground-truth absent logit stays above the other absent logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calib.validation import as_numpy, check_classes, check_labels, check_logits

__all__ = ["head_statistics", "logit_statistics", "mean_cosine"]

_EPS = 1e-12  # an update row shorter than this has no direction (e.g. a frozen head)


def _check_weight(weight: Any, name: str) -> np.ndarray:
    w = as_numpy(weight, name)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"{name} must be a non-empty 2-D (classes, features) array, got {w.shape}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"{name} has {int((~np.isfinite(w)).sum())} non-finite value(s)")
    return w


def mean_cosine(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Mean cosine similarity between the rows of ``a`` and ``b`` (all pairs), in [-1, 1].

    ``b=None``: among the rows of ``a``, the mean over off-diagonal pairs (i ≠ j). Rows of norm
    ≈ 0 have no direction and are left out; NaN when no pair is left.
    """

    def unit(x: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(x, axis=1)
        keep = norms > _EPS
        return x[keep] / norms[keep, None]

    ua = unit(a)
    if b is None:
        n = ua.shape[0]
        if n < 2:
            return float("nan")
        gram = ua @ ua.T
        return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))
    ub = unit(b)
    if ua.shape[0] == 0 or ub.shape[0] == 0:
        return float("nan")
    return float((ua @ ub.T).mean())


def head_statistics(
    head_weight: Any, pretrained_head_weight: Any, seen: Any, absent: Any = None
) -> dict[str, Any]:
    """Weight norms and update similarities of a linear head.

    Args:
        head_weight: (C, D) head weights W now (numpy or torch), one row per class.
        pretrained_head_weight: (C, D) the pre-trained head W_pre; None skips the update keys.
        seen: the classes S; absent: the classes U (default: every row not in S).

    Returns:
        ``weight_norm``: (C,) float64 array, the L2 norm of each row of W (weight units);
        ``weight_norm_seen_mean`` / ``weight_norm_absent_mean``: its mean over S / over U;
        ``update_norm_seen_mean`` / ``update_norm_absent_mean``: mean L2 norm of the rows of
        W − W_pre over S / U; ``update_cos_absent_absent``: mean cosine similarity between
        the updates of two different U classes; ``update_cos_seen_absent``: mean cosine
        between the update of an S class and that of a U class (both in [-1, 1], NaN when
        the updates are zero, e.g. before the first step).
    """
    w = _check_weight(head_weight, "head_weight")
    s, u = check_classes(seen, absent, w.shape[0])
    norms = np.linalg.norm(w, axis=1)
    out: dict[str, Any] = {
        "weight_norm": norms,
        "weight_norm_seen_mean": float(norms[s].mean()),
        "weight_norm_absent_mean": float(norms[u].mean()),
    }
    if pretrained_head_weight is None:
        return out
    w_pre = _check_weight(pretrained_head_weight, "pretrained_head_weight")
    if w_pre.shape != w.shape:
        raise ValueError(
            f"pretrained_head_weight has shape {w_pre.shape} but head_weight has {w.shape}"
        )
    delta = w - w_pre
    update_norms = np.linalg.norm(delta, axis=1)
    out |= {
        "update_norm_seen_mean": float(update_norms[s].mean()),
        "update_norm_absent_mean": float(update_norms[u].mean()),
        "update_cos_absent_absent": mean_cosine(delta[u]),
        "update_cos_seen_absent": mean_cosine(delta[s], delta[u]),
    }
    return out


def logit_statistics(logits: Any, labels: Any, seen: Any, absent: Any = None) -> dict[str, float]:
    """Mean logits of S and U columns, and the competition on absent-class samples.

    Args:
        logits: (N, C) test logits; labels: (N,) their labels.
        seen: the classes S; absent: the classes U (default: every column not in S).

    Returns:
        Every value in logit units (NaN where no sample qualifies):
        ``logit_seen_mean`` / ``logit_absent_mean``: over all samples, the mean over S / U
        columns of a sample's logits, averaged over samples; ``logit_seen_mean_on_absent`` /
        ``logit_absent_mean_on_absent``: the same over the samples labelled in U.
        On the samples labelled in U: ``logit_gt_absent`` the ground-truth (absent) logit,
        ``logit_other_absent_max`` the largest absent logit of another class (NaN when |U| = 1),
        ``logit_seen_max_on_absent`` the largest seen logit, each averaged over those samples.
    """
    z = check_logits(logits).astype(np.float64, copy=False)
    y = check_labels(labels, z.shape[0], z.shape[1])
    s, u = check_classes(seen, absent, z.shape[1])
    seen_mean, absent_mean = z[:, s].mean(axis=1), z[:, u].mean(axis=1)
    on_u = np.isin(y, u)

    def avg(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else float("nan")

    out = {
        "logit_seen_mean": avg(seen_mean),
        "logit_absent_mean": avg(absent_mean),
        "logit_seen_mean_on_absent": avg(seen_mean[on_u]),
        "logit_absent_mean_on_absent": avg(absent_mean[on_u]),
    }
    zu, yu = z[on_u], y[on_u]
    if yu.size == 0:
        nan = float("nan")
        return out | {
            "logit_gt_absent": nan,
            "logit_other_absent_max": nan,
            "logit_seen_max_on_absent": nan,
        }
    others = zu[:, u].copy()
    others[yu[:, None] == u[None, :]] = -np.inf  # the ground-truth column is not an "other"
    return out | {
        "logit_gt_absent": avg(zu[np.arange(yu.size), yu]),
        "logit_other_absent_max": avg(others.max(axis=1)) if u.size > 1 else float("nan"),
        "logit_seen_max_on_absent": avg(zu[:, s].max(axis=1)),
    }
