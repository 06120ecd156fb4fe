"""Input validation and numpy/torch conversion shared by every public function.

Every public entry point funnels its arrays through these helpers, so that bad
input stops with one message naming the problem instead of producing a number.
Arrays are handled as numpy internally; torch tensors (any device) come in and,
where a function returns an array, go back out with the input's type and device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

try:  # torch is a dependency, but the metrics do not need it to be importable
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

__all__ = [
    "is_tensor",
    "as_numpy",
    "check_logits",
    "check_labels",
    "check_classes",
    "like_input",
]


def is_tensor(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def as_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor is detached and moved to the CPU)."""
    if is_tensor(x):
        t = x.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise TypeError(
            f"{name} must be an array or tensor, got {type(x).__name__}: {err}"
        ) from err


def check_logits(logits: Any, name: str = "logits") -> np.ndarray:
    """Validate a (N, C) score matrix and return it as a float numpy array.

    float32 and float64 inputs keep their dtype (no copy); other dtypes become float64.

    Raises:
        ValueError: not 2-D, no rows or columns, or any NaN/inf entry.
    """
    a = as_numpy(logits, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, classes), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        n_bad = int((~finite).sum())
        raise ValueError(
            f"{name} has {n_bad} non-finite value(s) (NaN or inf); first at "
            f"sample {bad[0]}, class {bad[1]}: {a[bad[0], bad[1]]}"
        )
    return a


def check_labels(
    labels: Any, n: int, num_classes: int | None, name: str = "labels", rows: str = "logits"
) -> np.ndarray:
    """Validate integer labels for the ``n`` rows of ``rows`` over ``num_classes`` columns.

    ``num_classes=None`` checks only that labels are non-negative.

    Raises:
        ValueError: wrong length, not 1-D, non-integer values, or a label outside [0, num_classes).
    """
    y = as_numpy(labels, name)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but {rows} have {n} rows")
    if not np.issubdtype(y.dtype, np.integer):
        if (
            np.issubdtype(y.dtype, np.floating)
            and np.all(np.isfinite(y))
            and np.all(y == np.round(y))
        ):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    upper = np.iinfo(np.int64).max if num_classes is None else num_classes
    if n and (y.min() < 0 or y.max() >= upper):
        bad = y[(y < 0) | (y >= upper)]
        raise ValueError(
            f"{name} out of range: {bad.size} label(s) outside [0, {num_classes}), e.g. {int(bad[0])}"
        )
    return y


def _class_index(classes: Any, num_classes: int, name: str) -> np.ndarray:
    if isinstance(classes, (str, bytes)):
        raise TypeError(f"{name} must be a collection of class indices, got a string")
    c = as_numpy(list(classes) if isinstance(classes, (set, frozenset)) else classes, name)
    c = np.atleast_1d(c)
    if c.ndim != 1:
        raise ValueError(f"{name} must be a 1-D collection of class indices, got shape {c.shape}")
    if c.size and not np.issubdtype(c.dtype, np.integer):
        if np.issubdtype(c.dtype, np.floating) and np.all(c == np.round(c)):
            c = c.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class indices, got dtype {c.dtype}")
    c = c.astype(np.int64, copy=False)
    if c.size == 0:
        raise ValueError(f"{name} is empty: at least one class is needed")
    if c.min() < 0 or c.max() >= num_classes:
        bad = c[(c < 0) | (c >= num_classes)]
        raise ValueError(f"{name} out of range: {bad.tolist()[:10]} not in [0, {num_classes})")
    uniq, counts = np.unique(c, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} lists class(es) more than once: {uniq[counts > 1].tolist()[:10]}")
    return uniq


def check_classes(
    seen_classes: Iterable[int] | Any,
    absent_classes: Iterable[int] | Any | None,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the seen (S) and absent (U) class sets of a ``num_classes``-column head.

    ``absent_classes=None`` means every column not in S. Returns both sets as
    sorted int64 arrays. Columns in neither set ("R", e.g. ImageNet classes
    that ImageNet-R lacks) stay un-shifted.

    Raises:
        ValueError: a set is empty, has duplicates or out-of-range entries, or S and U overlap.
    """
    seen = _class_index(seen_classes, num_classes, "seen_classes")
    if absent_classes is None:
        absent = np.setdiff1d(np.arange(num_classes), seen)
        if absent.size == 0:
            raise ValueError(
                "absent_classes is empty: seen_classes covers all "
                f"{num_classes} columns, so there is nothing to calibrate"
            )
    else:
        absent = _class_index(absent_classes, num_classes, "absent_classes")
    overlap = np.intersect1d(seen, absent)
    if overlap.size:
        raise ValueError(f"seen_classes and absent_classes overlap: {overlap.tolist()[:10]}")
    return seen, absent


def like_input(result: np.ndarray, reference: Any) -> Any:
    """``result`` converted back to the type of ``reference``: a tensor on its device, or numpy."""
    if is_tensor(reference):
        return torch.from_numpy(np.ascontiguousarray(result)).to(reference.device)
    return result
