"""``wa``: Weight Aligning (Zhao et al., CVPR 2020) for the absent classes, from the head alone.

Fine-tuning on S grows the seen classes' head rows and leaves the absent ones behind, so U's
logits lose to S's. Weight Aligning rescales the absent classes' weight rows by

    ρ = mean_{c ∈ S} ‖w_c‖₂ / mean_{c ∈ U} ‖w_c‖₂        (a ratio of mean L2 norms),

so that their mean norm matches the seen classes'. On logits z_c = w_c·f + b_c this is the
multiplicative correction of U's weight part:

    z'_c = ρ · (z_c − b_c) + b_c    for c ∈ U;  z'_c = z_c otherwise.

**The bias term** is left as it is: WA aligns the magnitudes of the weight vectors (what makes
w_c·f large); b_c is a per-class offset that does not scale with the feature, so rescaling it
too would add a second, feature-independent correction that the norm ratio says nothing about.
A head without bias is the case b = 0. Data it needs: the head's (C, D) weight (and (C,)
bias) only; no sample at all. The operating point is one point (S/Y, U/Y) of the corrected
logits: it is not an additive γ, so it may lie off the fine-tuned model's γ curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calib.estimator.correction import LogitCorrection
from calib.validation import as_numpy, check_logits

__all__ = ["WeightAligning", "weight_norm_ratio"]


def weight_norm_ratio(weight: np.ndarray, seen: np.ndarray, absent: np.ndarray) -> float:
    """ρ = mean L2 norm of the rows ``seen`` / mean L2 norm of the rows ``absent`` of ``weight``
    (C, D), float64. ValueError when the absent rows are all zero (ρ undefined)."""
    norms = np.linalg.norm(weight.astype(np.float64, copy=False), axis=1)
    denominator = float(norms[absent].mean())
    if not denominator > 0:
        raise ValueError(
            "wa (head): the absent classes' head rows are all zero, so the norm ratio is undefined"
        )
    return float(norms[seen].mean()) / denominator


class WeightAligning(LogitCorrection):
    """Rescale the weight part of the absent classes' logits by the norm ratio ρ of the head.

    Args:
        temperature: T of :meth:`predict_proba` (softmax(z' / T)): None (1) or a number > 0.
            No ``"fit"``: WA sees no labelled sample.

    Fitted attributes: ``ratio_`` (ρ, float), ``absent_bias_`` (b_U, (|U|,) float64, zeros
    for a head without bias), and those of :class:`calib.estimator.correction.LogitCorrection`.
    """

    name = "wa"
    data = "the model's linear head (weight and bias)"
    _STATE = {"ratio_": "float", "absent_bias_": "floats"}

    def __init__(self, temperature: float | None = None) -> None:
        self.temperature = temperature

    def fit(
        self,
        head_weight: Any,
        head_bias: Any = None,
        seen_classes: Any = None,
        absent_classes: Any = None,
        *,
        logits: Any = None,
        labels: Any = None,
        pseudo_splits: Any = None,
        class_names: Any = None,
    ) -> WeightAligning:
        """ρ from the head: ``head_weight`` (C, D), ``head_bias`` (C,) or None; returns self.

        ``seen_classes``/``absent_classes``: column indices, or names given ``class_names``
        (one per head row, index = label; kept as ``class_names_``).

        ``logits``, ``labels``, ``pseudo_splits`` are refused (WA reads the head only).
        Raises ValueError for a non-finite weight or bias (naming ``wa``, the head and the
        value), a bias of the wrong length, bad class sets or all-zero absent rows.
        """
        self._refuse(
            {"logits": logits, "labels": labels, "pseudo_splits": pseudo_splits},
            "pass head_weight (and head_bias)",
        )
        t = self._given_temperature()
        if t is None:
            raise ValueError("wa: temperature='fit' needs labelled data, and WA reads none")
        try:
            w = check_logits(head_weight, "head_weight")  # (C, D): the same checks as scores
        except (TypeError, ValueError) as err:
            raise type(err)(f"wa (head): {err}") from None
        if np.isinf(w).any():
            i, j = np.argwhere(np.isinf(w))[0]
            raise ValueError(
                f"wa (head): head_weight has an infinite entry at [{i}, {j}]: {w[i, j]}"
            )
        width = w.shape[0]
        self._set_classes(seen_classes, absent_classes, width, class_names)
        bias = np.zeros(width)
        if head_bias is not None:
            bias = np.asarray(as_numpy(head_bias, "head_bias"), dtype=np.float64)
            if bias.shape != (width,):
                raise ValueError(
                    f"wa (head): head_bias must have shape ({width},), got {bias.shape}"
                )
            if not np.isfinite(bias).all():
                k = int(np.flatnonzero(~np.isfinite(bias))[0])
                raise ValueError(f"wa (head): head_bias[{k}] is {bias[k]}, not finite")
        self.ratio_ = weight_norm_ratio(w, self.seen_classes_, self.absent_classes_)
        self.absent_bias_ = bias[self.absent_classes_].copy()
        self.temperature_ = t
        self.info_ = {
            "correction": "wa",
            "data": "head",
            "ratio": self.ratio_,
            "has_bias": head_bias is not None,
            "inference_cost": "none (the head's U rows rescaled once)",
        }
        return self

    def _check_state(self) -> None:
        if self.absent_bias_.shape != self.absent_classes_.shape:
            raise ValueError("absent_bias_ must have one entry per absent class")
        if not self.ratio_ > 0:
            raise ValueError(f"ratio_ must be > 0, got {self.ratio_}")

    def _correct(self, z: np.ndarray, **extra: Any) -> np.ndarray:
        if extra:
            raise TypeError(f"wa takes no input besides the logits, got {sorted(extra)}")
        out = z.astype(np.float64, copy=True)
        u, b = self.absent_classes_, self.absent_bias_
        out[:, u] = self.ratio_ * (out[:, u] - b) + b
        return out

    def aligned_head(self, head: Any) -> Any:
        """A copy of the ``torch.nn.Linear`` head with the absent rows' weights multiplied by ρ
        (bias unchanged): a model with it gives :meth:`transform`'s logits in one pass."""
        import copy

        import torch

        self._check_fitted()
        if not isinstance(head, torch.nn.Linear) or head.out_features != self.num_classes_:
            raise ValueError(
                f"wa: aligned_head needs an nn.Linear with {self.num_classes_} outputs, got {head!r}"
            )
        new = copy.deepcopy(head)
        with torch.no_grad():
            rows = torch.as_tensor(self.absent_classes_, device=new.weight.device)
            new.weight[rows] *= self.ratio_
        return new
