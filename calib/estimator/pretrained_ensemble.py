"""``gla``: the output-space ensemble of the fine-tuned model with the pre-trained one, debiased.

Output-space ensembling (as in WiSE-FT) adds the two models' logits; Generalized Logit
Adjustment (Zhu et al., NeurIPS 2023) first removes the pre-trained model's own label prior π
from its logits, so that what it adds is balanced:

    z'_c = z^ft_c + z^pt_c − log π̂_c      (``debias=True``; ``False``: z^ft + z^pt).

**The prior estimate.** π̂ is the pre-trained model's mean predicted distribution over
unlabelled target samples, π̂_c = mean_i softmax(z^pt_i)_c (computed as a log-mean-exp of the
log-softmax, in float64): what the pre-trained model predicts on the target on average. For a
balanced target, a model without label bias would give a uniform π̂, so subtracting log π̂
removes its bias towards some classes. The data are unlabelled target logits of the
pre-trained model: the budget of the label-free ``prior`` selector (labels are refused). A
constant added to every log π̂_c changes no prediction.

**Cost.** Every prediction needs both models' logits of the same samples: a second forward
pass (the pre-trained model kept beside the fine-tuned one) at inference. The operating point is
one point (S/Y, U/Y) of the ensembled logits, off the fine-tuned model's γ curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax, logsumexp

from calib.estimator.correction import LogitCorrection, checked_input

__all__ = ["PretrainedEnsemble", "pretrained_log_prior"]


def pretrained_log_prior(pretrained_logits: np.ndarray) -> np.ndarray:
    """log π̂ (C,): log of the mean softmax of the pre-trained model's logits (N, C), float64."""
    z = pretrained_logits.astype(np.float64, copy=False)
    return logsumexp(log_softmax(z, axis=1), axis=0) - np.log(z.shape[0])


class PretrainedEnsemble(LogitCorrection):
    """Fine-tuned logits + pre-trained logits − log π̂ of the pre-trained model.

    Args:
        debias: subtract the pre-trained model's estimated log prior (GLA); False gives the
            plain output-space ensemble.
        temperature: T of :meth:`predict_proba`: None (1) or a number > 0 (no ``"fit"``: the
            fit data carry no label).

    ``transform``, ``predict``, ``predict_proba``, ``score`` and ``report`` take the
    pre-trained model's logits of the same samples as ``pretrained_logits=``.

    Fitted attributes: ``log_prior_`` ((C,) float64; zeros when ``debias=False``) and those of
    :class:`calib.estimator.correction.LogitCorrection`.
    """

    name = "gla"
    data = "the pre-trained model's logits on unlabelled target samples"
    extra_inputs = ("pretrained_logits",)
    _STATE = {"log_prior_": "floats"}

    def __init__(self, debias: bool = True, temperature: float | None = None) -> None:
        self.debias = debias
        self.temperature = temperature

    def fit(
        self,
        logits: Any = None,
        labels: Any = None,
        seen_classes: Any = None,
        absent_classes: Any = None,
        *,
        pseudo_splits: Any = None,
        class_names: Any = None,
    ) -> PretrainedEnsemble:
        """Estimate log π̂ from ``logits``: the PRE-TRAINED model's logits (N, C) of unlabelled
        target samples; returns self. ``labels`` and ``pseudo_splits`` are refused.
        ``seen_classes``/``absent_classes``: column indices, or names given ``class_names``
        (one per column, index = label; kept as ``class_names_``).

        Raises:
            ValueError: no logits, labels given, NaN/+inf logits (naming ``gla``, the data
                kind and the value), a class the pre-trained model never gives any mass
                (log π̂ = −inf), bad class sets.
        """
        self._refuse(
            {"labels": labels, "pseudo_splits": pseudo_splits},
            "it is label-free: pass the pre-trained model's unlabelled target logits",
        )
        if not isinstance(self.debias, (bool, np.bool_)):
            raise ValueError(f"gla: debias must be True or False, got {self.debias!r}")
        if logits is None:
            raise ValueError(
                "gla needs logits: the pre-trained model's logits of unlabelled target samples"
            )
        t = self._given_temperature()
        if t is None:
            raise ValueError("gla: temperature='fit' needs labels, and gla is label-free")
        z = checked_input("gla", "pre-trained logits", logits, "logits")
        self._set_classes(seen_classes, absent_classes, z.shape[1], class_names)
        log_prior = pretrained_log_prior(z) if self.debias else np.zeros(z.shape[1])
        if not np.isfinite(log_prior).all():
            k = int(np.flatnonzero(~np.isfinite(log_prior))[0])
            raise ValueError(
                f"gla (pre-trained logits): class {k} gets no probability in any sample "
                f"(log prior {log_prior[k]}), so its prior cannot be removed"
            )
        self.log_prior_ = log_prior
        self.temperature_ = t
        self.info_ = {
            "correction": "gla",
            "data": "target_unlabelled (pre-trained logits)",
            "debias": bool(self.debias),
            "n_samples": int(z.shape[0]),
            "inference_cost": "a second forward pass (the pre-trained model)",
        }
        return self

    def _check_state(self) -> None:
        if self.log_prior_.shape != (self.num_classes_,):
            raise ValueError(f"log_prior_ must have {self.num_classes_} entries")

    def _correct(self, z: np.ndarray, pretrained_logits: Any = None, **extra: Any) -> np.ndarray:
        if extra:
            raise TypeError(f"gla takes pretrained_logits besides the logits, got {sorted(extra)}")
        if pretrained_logits is None:
            raise ValueError(
                "gla needs pretrained_logits: the pre-trained model's logits of the same samples "
                "(a second forward pass)"
            )
        zp = checked_input("gla", "pre-trained logits", pretrained_logits, "pretrained_logits")
        if zp.shape != z.shape:
            raise ValueError(
                f"gla: pretrained_logits has shape {zp.shape} but the logits {z.shape}: "
                "both models' logits of the same samples are needed"
            )
        return z.astype(np.float64) + zp.astype(np.float64) - self.log_prior_
