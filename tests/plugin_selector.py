"""A γ selector registered from outside calib (loaded by `imports=[tests/plugin_selector.py]`).

``median_gap``: γ = a quantile of the fine-tuning samples' gaps (max S logit − max U logit).
``needs_splits``: a selector that takes pseudo splits (to test a run that cannot provide them).
"""

from __future__ import annotations

import numpy as np

from calib.selectors import SELECTORS, register_selector


def _quantile(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"quantile must be a number in [0, 1], got {value!r}")
    return float(value)


if "median_gap" not in SELECTORS:

    @register_selector(
        "median_gap",
        data="finetune_train",
        params={"quantile": 0.5},
        checks={"quantile": _quantile},
        description="a quantile of the S training samples' gaps",
    )
    def median_gap(logits, labels, seen_classes, absent_classes, num_classes, quantile):
        z = np.asarray(logits, dtype=np.float64)
        gaps = z[:, seen_classes].max(axis=1) - z[:, absent_classes].max(axis=1)
        return float(np.quantile(gaps, quantile)), {"method": "median_gap", "n": int(z.shape[0])}

    @register_selector("needs_splits", data="pseudo_splits")
    def needs_splits(pseudo_splits, seen_classes, absent_classes, num_classes):
        return 0.0, {}
