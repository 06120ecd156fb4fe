"""``bic``: Bias Correction (Wu et al., CVPR 2019): two parameters on the absent-class logits,

    z'_c = α · z_c + β    for c ∈ U;  z'_c = z_c otherwise,

fitted by cross-entropy with everything else frozen, on held-out data. Here that data is PCV's
pseudo splits: held-out S rows scored by models fine-tuned without some pseudo-absent classes,
each split's absent columns (pseudo-absent ∪ U) standing in for U. That is exactly what PCV may
see, and the same checks apply: no U label, every label in S, each split's absent columns
covering the real U. With α = 1 the rule is one additive γ = β (the single-γ selectors); α ≠ 1
also rescales U's logits, so the operating point is one point (S/Y, U/Y), off the γ curve.

**The fit.** With s the scores after the correction, the objective is the mean over splits of
each split's mean NLL, f(α, β) = mean_j mean_i [logsumexp(s_i) − s_{i,y_i}]. The scores are
affine in (α, β), so f is convex; it is minimised by Newton steps on the 2×2 system
(gradient: E_p[g] − g_y with g_c = (z_c, 1) on the absent columns and 0 elsewhere; Hessian:
Cov_p[g]) with backtracking, to a gradient norm ≤ 1e-10. f is bounded below only when the
splits hold rows of both pseudo-seen and pseudo-absent classes, which ``fit`` checks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from calib.class_names import check_class_names, class_ids, resolve_classes
from calib.estimator.correction import LogitCorrection, checked_input
from calib.estimator.temperature import fit_temperature_pseudo_splits
from calib.selectors import PseudoSplit, check_pseudo_splits
from calib.validation import check_classes, check_labels

__all__ = ["BiasCorrection", "bic_objective"]

_GTOL = 1e-10
_MAXITER = 100


def _checked_splits(
    splits: Sequence[PseudoSplit],
    seen: Any,
    absent: Any,
    num_classes: int | None,
    class_names: Any = None,
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray, np.ndarray, int]:
    """Each split as (logits float64, labels, absent-column mask), with PCV's data discipline;
    S, U and the splits' classes may be names given ``class_names``."""
    splits = check_pseudo_splits(splits)
    logits = [
        checked_input("bic", "pseudo_splits", s.logits, f"pseudo_splits[{j}].logits")
        for j, s in enumerate(splits)
    ]
    widths = {z.shape[1] for z in logits} | ({int(num_classes)} if num_classes else set())
    if len(widths) != 1:
        raise ValueError(f"bic (pseudo_splits): the splits disagree on the width: {sorted(widths)}")
    (c,) = widths
    if seen is None:
        raise ValueError("bic.fit needs seen_classes: the fine-tuning classes S")
    names = check_class_names(class_names, c)
    seen, absent = resolve_classes(seen, absent, c, names)
    out = []
    for j, (split, z) in enumerate(zip(splits, logits, strict=True)):
        where = f"bic (pseudo_splits[{j}])"
        y = check_labels(split.labels, z.shape[0], c, f"pseudo_splits[{j}].labels")
        in_u = np.isin(y, absent)
        if in_u.any():
            raise ValueError(
                f"{where}: {int(in_u.sum())} label(s) lie in the absent classes U, e.g. "
                f"{int(y[in_u][0])}: bic may not touch U data (held-out S rows only, like PCV)"
            )
        if not np.isin(y, seen).all():
            raise ValueError(f"{where}: label {int(y[~np.isin(y, seen)][0])} is not in S")
        p_seen, p_absent = check_classes(
            class_ids(split.seen_classes, names, f"pseudo_splits[{j}].seen_classes"),
            class_ids(split.absent_classes, names, f"pseudo_splits[{j}].absent_classes"),
            c,
        )
        left_out = np.setdiff1d(absent, p_absent)
        if left_out.size:
            raise ValueError(
                f"{where}: absent_classes leave out the real absent classes "
                f"{left_out.tolist()[:10]}: the correction is applied to U too"
            )
        if not np.isin(p_seen, seen).all():
            raise ValueError(f"{where}: pseudo-seen classes outside S")
        if np.isneginf(z).any():
            i, k = np.argwhere(np.isneginf(z))[0]
            raise ValueError(
                f"{where}: logits[{i}, {k}] is -inf; bic rescales the absent logits, so masked "
                "(-inf) classes are not supported"
            )
        mask = np.zeros(c, dtype=bool)
        mask[p_absent] = True
        out.append((z.astype(np.float64, copy=False), y, mask))
    n_absent_rows = sum(int(m[y].sum()) for _, y, m in out)
    n_seen_rows = sum(int((~m[y]).sum()) for _, y, m in out)
    if n_absent_rows == 0 or n_seen_rows == 0:
        group = "pseudo-absent" if n_absent_rows == 0 else "pseudo-seen"
        raise ValueError(
            f"bic (pseudo_splits): no held-out row of a {group} class, so the cross-entropy has "
            "no finite minimum in (α, β)"
        )
    return out, seen, absent, c


def _corrected(z: np.ndarray, mask: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    s = z.copy()
    s[:, mask] = alpha * z[:, mask] + beta
    return s


def bic_objective(
    blocks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], alpha: float, beta: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """(f, ∇f (2,), ∇²f (2, 2)) at (α, β): f the mean over blocks of the mean NLL."""
    f, grad, hess = 0.0, np.zeros(2), np.zeros((2, 2))
    for z, y, mask in blocks:
        s = _corrected(z, mask, alpha, beta)
        top = s.max(axis=1, keepdims=True)
        e = np.exp(s - top)
        total = e.sum(axis=1, keepdims=True)
        p = e / total
        rows = np.arange(y.size)
        nll = (np.log(total[:, 0]) + top[:, 0]) - s[rows, y]
        # g_c = (z_c, 1) on the absent columns
        za = np.where(mask, z, 0.0)
        one = mask.astype(np.float64)
        e_z = (p * za).sum(axis=1)
        e_1 = (p * one).sum(axis=1)
        e_zz = (p * za * za).sum(axis=1)
        g_z = e_z - za[rows, y]
        g_1 = e_1 - one[y]
        n = y.size
        f += float(nll.mean())
        grad += np.array([g_z.sum(), g_1.sum()]) / n
        hess += (
            np.array(
                [
                    [(e_zz - e_z**2).sum(), (e_z - e_z * e_1).sum()],
                    [(e_z - e_z * e_1).sum(), (e_1 - e_1**2).sum()],
                ]
            )
            / n
        )
    k = len(blocks)
    return f / k, grad / k, hess / k


def _minimise(blocks) -> tuple[float, float, dict[str, Any]]:
    x = np.array([1.0, 0.0])
    f, g, h = bic_objective(blocks, *x)
    converged = False
    it = 0
    for it in range(_MAXITER):  # noqa: B007 (reported in info)
        if float(np.abs(g).max()) <= _GTOL:
            converged = True
            break
        try:
            step = -np.linalg.solve(h + 1e-12 * np.eye(2), g)
        except np.linalg.LinAlgError:
            step = -g
        t = 1.0
        while True:
            cand = x + t * step
            f_new, g_new, h_new = bic_objective(blocks, *cand)
            if f_new <= f + 1e-4 * t * float(g @ step) or t < 1e-12:
                break
            t /= 2
        if t < 1e-12 and f_new >= f:
            converged = float(np.abs(g).max()) <= 1e-6
            break
        x, f, g, h = cand, f_new, g_new, h_new
    if not converged:
        warnings.warn(
            f"bic: Newton stopped at |∇f| = {float(np.abs(g).max()):.2e} (α = {x[0]:.6g}, "
            f"β = {x[1]:.6g})",
            RuntimeWarning,
            stacklevel=3,
        )
    return float(x[0]), float(x[1]), {"nll": f, "iterations": it, "converged": converged}


class BiasCorrection(LogitCorrection):
    """z_U ← α·z_U + β, (α, β) minimising the cross-entropy on PCV's pseudo splits.

    Args:
        temperature: T of :meth:`predict_proba`: None (1), a number > 0, or ``"fit"``: the T
            minimising the NLL of the corrected pseudo-split logits (the same data as α, β).

    Fitted attributes: ``alpha_``, ``beta_`` (floats; β in logit units), ``temperature_``,
    and those of :class:`calib.estimator.correction.LogitCorrection`. ``info_["nll"]`` is the
    objective at the optimum.
    """

    name = "bic"
    data = "pseudo_splits (held-out S rows of the PCV pseudo splits)"
    _STATE = {"alpha_": "float", "beta_": "float"}

    def __init__(self, temperature: float | str | None = None) -> None:
        self.temperature = temperature

    def fit(
        self,
        logits: Any = None,
        labels: Any = None,
        seen_classes: Any = None,
        absent_classes: Any = None,
        *,
        pseudo_splits: Sequence[PseudoSplit] | None = None,
        num_classes: int | None = None,
        class_names: Any = None,
    ) -> BiasCorrection:
        """Fit (α, β) on ``pseudo_splits``; ``logits``/``labels`` are refused (PCV's discipline:
        target rows never reach it). Returns self. ``seen_classes``, ``absent_classes`` and the
        splits' classes: column indices, or names given ``class_names`` (one per column,
        index = label; kept as ``class_names_``).

        Raises:
            ValueError: logits or labels given, no splits, a label in U or outside S, a split
                whose absent columns leave out U, no pseudo-absent (or pseudo-seen) row,
                NaN/inf logits (naming ``bic``, the split and the value).
        """
        self._refuse(
            {"logits": logits, "labels": labels},
            "it scores only the held-out S data inside pseudo_splits, never target rows",
        )
        if pseudo_splits is None:
            raise ValueError(f"bic needs pseudo_splits: it is fitted from {self.data}")
        t = self._given_temperature()
        blocks, seen, absent, c = _checked_splits(
            pseudo_splits, seen_classes, absent_classes, num_classes, class_names
        )
        self._set_classes(seen, absent, c, class_names)
        alpha, beta, info = _minimise(blocks)
        if t is None:
            corrected = [
                PseudoSplit(_corrected(z, m, alpha, beta), y, s.seen_classes, s.absent_classes)
                for (z, y, m), s in zip(blocks, pseudo_splits, strict=True)
            ]
            t = float(fit_temperature_pseudo_splits(corrected, 0.0, class_names=class_names))
        self.alpha_, self.beta_ = alpha, beta
        self.temperature_ = t
        self.info_ = {
            "correction": "bic",
            "data": "pseudo_splits",
            "alpha": alpha,
            "beta": beta,
            **info,
            "n_splits": len(blocks),
            "n_samples": int(sum(y.size for _, y, _ in blocks)),
            "temperature": t,
            "inference_cost": "none (an affine map of U's logits)",
        }
        return self

    def _check_state(self) -> None:
        if not (math.isfinite(self.alpha_) and math.isfinite(self.beta_)):
            raise ValueError("alpha_ and beta_ must be finite")

    def _correct(self, z: np.ndarray, **extra: Any) -> np.ndarray:
        if extra:
            raise TypeError(f"bic takes no input besides the logits, got {sorted(extra)}")
        out = z.astype(np.float64, copy=True)
        u = self.absent_classes_
        out[:, u] = self.alpha_ * out[:, u] + self.beta_
        return out
