"""Probabilities of :class:`calib.CalibratedClassifier`: softmax of its logits / T, in torch.

Kept apart from :mod:`calib.wrapper` (which re-exports it) so that module stays small;
TorchScript compiles it with the wrapper's ``forward_proba``.
"""

from __future__ import annotations

import torch

__all__ = ["softmax_rows_torch"]


def softmax_rows_torch(
    calibrated: torch.Tensor, absent_mask: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """softmax(calibrated / T) per row, float64, with argmax(result) == argmax(calibrated).

    Args:
        calibrated: (N, C) float64 output of :func:`shifted_logits_torch`.
        absent_mask: (C,) bool, True on U.
        temperature: 0-d float64 T, or (2,) float64 (T_S, T_U): a row whose argmax is in U is
            divided by T_U, any other by T_S (the row rule of :mod:`calib.probability`).

    The row maximum is subtracted before dividing by T, so finite logits never overflow.
    Where float64 rounding leaves the predicted column tied with another, its probability is
    raised to the next float above the row maximum (one unit in the last place).
    """
    pred = calibrated.argmax(dim=1)
    if temperature.dim() == 0:
        t = temperature.expand(calibrated.shape[0])
    else:
        t = torch.where(absent_mask[pred], temperature[1], temperature[0])
    # the row maximum first: finite logits / a small T would overflow (1e306 / 1e-3 = +inf)
    row_max = calibrated.max(dim=1, keepdim=True).values
    p = torch.softmax((calibrated - row_max) / t.unsqueeze(1), dim=1)
    top = p.max(dim=1).values
    rows = torch.arange(p.shape[0], device=p.device)
    above = torch.nextafter(top, torch.full_like(top, 2.0))
    value = torch.where(p.argmax(dim=1) != pred, above, p[rows, pred])
    return p.index_put((rows, pred), value)
