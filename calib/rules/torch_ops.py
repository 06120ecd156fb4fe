"""The decision rule on torch tensors, on the logits' device: the shifted logits of
:class:`calib.CalibratedClassifier` and the calibrator, and their softmax rows / T.

TorchScript compiles both with the wrapper's ``forward`` and ``forward_proba``.
"""

from __future__ import annotations

import torch

__all__ = ["shifted_logits_torch", "softmax_rows_torch"]


def shifted_logits_torch(
    logits: torch.Tensor, absent_mask: torch.Tensor, gamma: torch.Tensor
) -> torch.Tensor:
    """:func:`calib.rules.gaps.shifted_logits` in torch: float64, z + γ on U lowered a hair.

    Args:
        logits: (N, C) tensor, any real dtype. absent_mask: (C,) bool, True on U.
        gamma: 0-d float64 tensor on the logits' device.
    """
    z = logits.to(torch.float64)
    s = z + gamma
    # literals, as TorchScript takes no float globals: 2**-51 and 2**-1000 (_gaps._NUDGE_*)
    return torch.where(
        absent_mask, s - (s.abs() * 4.440892098500626e-16 + 9.332636185032189e-302), z
    )


def softmax_rows_torch(
    calibrated: torch.Tensor, absent_mask: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """softmax(calibrated / T) per row, float64, with argmax(result) == argmax(calibrated).

    Args:
        calibrated: (N, C) float64 output of :func:`shifted_logits_torch`.
        absent_mask: (C,) bool, True on U.
        temperature: 0-d float64 T, or (2,) float64 (T_S, T_U): a row whose argmax is in U is
            divided by T_U, any other by T_S (the row rule of :mod:`calib.metrics.probability`).

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
