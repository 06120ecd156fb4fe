"""The selector declarations the harness reads (``calib.selectors.SELECTORS`` entries)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ..selectors import SELECTORS

__all__ = ["selector_spec"]

# Until every registry entry carries its declaration: the built-in selectors' data kinds.
_LEGACY = {
    "alg": ("finetune_train", {}),
    "oracle": ("target_labelled", {"criterion": "acc_all"}),
    "prior": ("target_unlabelled", {"prior": None}),
    "pcv": ("pseudo_splits", {"criterion": "hmean"}),
    "fixed": (None, {"gamma": None}),
}


def selector_spec(name: str) -> Any:
    """The declaration of selector ``name``: ``.data``, ``.params``, ``.check_params``."""
    entry = SELECTORS.get(name)
    if hasattr(entry, "data") and hasattr(entry, "check_params"):
        return entry
    data, params = _LEGACY[name]

    def check_params(given: dict) -> dict:
        unknown = sorted(set(given) - set(params))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; {name!r} takes {sorted(params)}")
        return {**params, **given}

    return SimpleNamespace(data=data, params=params, check_params=check_params, fn=entry)
