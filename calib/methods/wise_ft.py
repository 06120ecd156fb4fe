"""``wise_ft``: fine-tune, then mix the weights with the pre-trained ones (Wortsman et al., 2022).

θ(α) = (1 − α)·θ_pre + α·θ_ft. The α trade-off curve (Acc S/Y against Acc U/Y over a grid
of α, :func:`alpha_tradeoff`) set beside the γ curve of the fine-tuned model is the figure
that compares "fix the weights" with "fix the logits"
(:func:`calib.figures.alpha_tradeoff.plot_alpha_tradeoff` draws both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from calib.methods.params import real, real_grid
from calib.methods.parts import state_copy
from calib.methods.spec import METHODS, FinetuneContext, register_method
from calib.metrics.accuracy import accuracy_report
from calib.metrics.curve import SeenAbsentCurve, curve_xy
from calib.metrics.streaming import SeenAbsentState

__all__ = [
    "AlphaCurve",
    "alpha_tradeoff",
    "area_over_seen_range",
    "endpoints",
    "gamma_area_on_alpha_range",
    "interpolate_state",
    "run_wise_ft",
]

#: The default α grid of the trade-off curve: 0, 0.1, ..., 1.
DEFAULT_ALPHA_GRID = tuple(round(0.1 * k, 1) for k in range(11))


def interpolate_state(
    pre: Mapping[str, torch.Tensor], ft: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 − α)·pre + α·ft`` for every floating-point entry; ``ft``'s value for the others.

    Parameters and floating-point buffers (BatchNorm running means and variances) are mixed
    alike, with :func:`torch.lerp` (exact at the ends: α = 0 gives ``pre``, α = 1 gives
    ``ft``), computed in float32 at least and cast back to the entry's dtype. Integer and bool
    buffers (BatchNorm's ``num_batches_tracked``) cannot be mixed and are ``ft``'s. Tensors
    come back on ``ft``'s devices.

    Raises:
        ValueError: α outside [0, 1], or the two states differ in keys, shapes or dtypes.
    """
    try:
        alpha = real(0.0, 1.0)(alpha)
    except ValueError as err:
        raise ValueError(f"alpha {err}") from None
    if set(pre) != set(ft):
        only_pre, only_ft = sorted(set(pre) - set(ft)), sorted(set(ft) - set(pre))
        raise ValueError(
            f"the states hold different entries: only in pre {only_pre[:5]}, only in ft "
            f"{only_ft[:5]}"
        )
    out = {}
    for key, b in ft.items():
        a = pre[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(
                f"entry {key!r}: pre is {a.dtype}{tuple(a.shape)}, ft is {b.dtype}{tuple(b.shape)}"
            )
        if not b.is_floating_point():
            out[key] = b.detach().clone()
            continue
        wide = torch.promote_types(b.dtype, torch.float32)
        mixed = torch.lerp(a.detach().to(b.device, wide), b.detach().to(wide), alpha)
        out[key] = mixed.to(b.dtype)
    return out


def endpoints(ctx: FinetuneContext) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The pre-trained and the fine-tuned weights of a ``wise_ft`` run, as CPU state dicts.

    Fine-tunes a fresh copy of the pre-trained model (``full``, checkpoint folder ``finetune``,
    with the per-epoch hook); on a finished run this only loads the final weights. It never
    touches ``ctx.model``, so the harness may call it after :meth:`MethodSpec.run` to build
    the models of an α grid: ``model.load_state_dict(interpolate_state(pre, ft, α))``.
    ``ctx`` is prepared as ``run`` prepares it (params, data, head option).
    """
    ctx = METHODS.get("wise_ft").prepare_context(ctx)
    pre = {k: v.detach().to("cpu", copy=True) for k, v in ctx.pretrained_state.items()}
    model = ctx.pretrained_model().train()
    frozen = {name for name, p in ctx.model.named_parameters() if not p.requires_grad}
    for name, p in model.named_parameters():  # train what full would train on ctx.model
        p.requires_grad_(name not in frozen)
    ctx.train(model, ctx.dataset, ctx.config, tag="finetune", on_epoch_end=ctx.on_epoch_end)
    return pre, state_copy(model)


@register_method(
    "wise_ft",
    trains="all, then weights mixed with the pre-trained ones (alpha)",
    params={"alpha": 0.5, "alpha_grid": DEFAULT_ALPHA_GRID},
    checks={"alpha": real(0.0, 1.0), "alpha_grid": real_grid(0.0, 1.0)},
    post_training=("alpha", "alpha_grid"),
    reference="Wortsman et al., Robust Fine-Tuning of Zero-Shot Models, CVPR 2022 (WiSE-FT)",
)
def run_wise_ft(ctx: FinetuneContext) -> nn.Module:
    """Fine-tune everything (as ``full``), then θ = (1 − α)·θ_pre + α·θ_ft with ``alpha``.

    WiSE-FT, Wortsman et al. (CVPR 2022), its end-to-end variant (all weights fine-tuned and
    mixed; not the linear-classifier variant) with one fixed mixing coefficient ``alpha``
    (their Eq. 1). Here the pre-trained model is the one fine-tuning starts from (a trained
    classifier, not CLIP zero-shot). Every floating-point entry of the state dict is mixed,
    BatchNorm running means and variances included (mixing weights but keeping one model's
    statistics would pair statistics with weights they were not computed for); integer
    buffers (``num_batches_tracked``) are the fine-tuned model's. ``alpha_grid`` is the grid
    on which the harness draws the α trade-off curve (:func:`alpha_tradeoff`).
    """
    pre, ft = endpoints(ctx)
    ctx.model.load_state_dict(interpolate_state(pre, ft, ctx.params["alpha"]))
    return ctx.model.to(ctx.device)


@dataclass(frozen=True, eq=False)
class AlphaCurve:
    """Accuracies of the WiSE-FT models over a grid of α; arrays of shape (K,), α ascending.

    Attributes:
        alpha: (K,) mixing coefficients, ascending (0 = pre-trained, 1 = fine-tuned).
        acc_seen: (K,) Acc S/Y of each mixed model (γ = 0).
        acc_absent: (K,) Acc U/Y.
        acc_all: (K,) Acc Y/Y.
        area: area under (x = acc_seen, y = acc_absent) by trapezoids in α order,
            Σₖ (x_{k+1} − x_k)(y_k + y_{k+1}) / 2: positive where Acc S/Y grows with α. It covers
            only the x-range the path spans (unlike AUSUC, which spans [0, 1]), so compare it
            with the area of a γ curve over the same x-range, not with the AUSUC. NaN when a
            group has no test sample or K = 1 (no segment).
    """

    alpha: np.ndarray
    acc_seen: np.ndarray
    acc_absent: np.ndarray
    acc_all: np.ndarray
    area: float

    def __len__(self) -> int:
        return len(self.alpha)


def alpha_tradeoff(
    logits_by_alpha: Mapping[float, Any],
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
) -> AlphaCurve:
    """The α trade-off curve from each mixed model's test logits.

    Args:
        logits_by_alpha: α → (N, C) logits (numpy or torch, any device) of the model
            ``interpolate_state(pre, ft, α)`` on the test set; any order of keys. Or α → the
            labelled :class:`calib.SeenAbsentState` fed those logits (built with S and U):
            the same accuracies (its top-1 report at γ = 0).
        labels: (N,) test labels in [0, C), the same samples for every α (None for states:
            they hold them).
        seen_classes, absent_classes: S and U as in :func:`calib.accuracy_report`.

    Returns:
        An :class:`AlphaCurve`; the accuracies are :func:`calib.accuracy_report`'s at γ = 0.

    Raises:
        ValueError: no α, an α outside [0, 1] or given twice, or logits
            :func:`calib.accuracy_report` refuses.
    """
    if not logits_by_alpha:
        raise ValueError("logits_by_alpha is empty: give the logits of at least one α")
    check = real(0.0, 1.0)
    alphas = []
    for a in logits_by_alpha:
        try:
            alphas.append((check(a), a))
        except ValueError as err:
            raise ValueError(f"logits_by_alpha: α {err}") from None
    alphas.sort(key=lambda pair: pair[0])
    if len({a for a, _ in alphas}) != len(alphas):
        raise ValueError(f"logits_by_alpha holds one α twice: {[a for a, _ in alphas]}")
    rows = []
    for _, key in alphas:
        scores = logits_by_alpha[key]
        if isinstance(scores, SeenAbsentState):
            rep = scores.report(0.0, topk=())
        else:
            rep = accuracy_report(
                scores, labels, seen_classes, absent_classes, gamma=0.0, topk=(1,)
            )
        rows.append((rep["acc_seen"], rep["acc_absent"], rep["acc_all"]))
    acc = np.asarray(rows, dtype=np.float64).reshape(len(rows), 3)
    x, y = acc[:, 0], acc[:, 1]
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2) if len(x) > 1 else float("nan")
    return AlphaCurve(
        alpha=np.asarray([a for a, _ in alphas], dtype=np.float64),
        acc_seen=x,
        acc_absent=y,
        acc_all=acc[:, 2],
        area=area,
    )


def area_over_seen_range(x: Any, y: Any, lo: float, hi: float) -> float:
    """The area under a polyline (x = Acc S/Y, y = Acc U/Y) over ``lo <= x <= hi``.

    Each segment adds the integral of its straight line over the part of its x-extent inside
    [lo, hi] (vertical segments add nothing), whatever the direction it is traversed in. For a
    γ curve (x never rises along γ) over [0, 1] this is its AUSUC.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    total = 0.0
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:], strict=True):
        if x0 == x1:
            continue
        if x0 > x1:
            x0, y0, x1, y1 = x1, y1, x0, y0
        a, b = max(x0, lo), min(x1, hi)
        if b <= a:
            continue
        ya = y0 + (y1 - y0) * (a - x0) / (x1 - x0)
        yb = y0 + (y1 - y0) * (b - x0) / (x1 - x0)
        total += (b - a) * (ya + yb) / 2
    return float(total)


def gamma_area_on_alpha_range(alpha_curve: AlphaCurve, gamma_curve: SeenAbsentCurve) -> float:
    """The area under ``gamma_curve`` over the Acc S/Y range the α path spans.

    The number to set beside ``alpha_curve.area`` when the α path is monotone in Acc S/Y (the
    usual case): both integrate Acc U/Y over the same x-range, so the larger one holds more
    absent-class accuracy at equal seen-class accuracy. NaN when the path has NaN accuracies.
    """
    xs = np.asarray(alpha_curve.acc_seen, dtype=np.float64)
    if np.isnan(xs).any():
        return float("nan")
    x, y = curve_xy(gamma_curve)
    return area_over_seen_range(x, y, float(xs.min()), float(xs.max()))
