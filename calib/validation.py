"""Input validation and numpy/torch conversion shared by every public function.

Every public entry point funnels its arrays through these helpers, so that bad
input stops with one message naming the problem instead of producing a number.
Arrays are handled as numpy internally; torch tensors (any device) come in and,
where a function returns an array, go back out with the input's type and device.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "InvalidInput",
    "is_tensor",
    "as_numpy",
    "check_logits",
    "check_stats",
    "check_labels",
    "check_classes",
    "check_real",
    "check_int",
    "check_fraction",
    "check_sample_weight",
    "AVERAGES",
    "check_average",
    "like_input",
    "check_num_classes",
    "has_bad_values",
    "GROUPS",
    "check_gamma",
    "check_positive",
    "temperature_pair",
    "temperature_value",
    "check_absent",
    "check_n_bins",
    "check_group",
]

# Integers above this lose precision as float64 logits.
_EXACT_INT = 2**53


class InvalidInput(TypeError, ValueError):
    """A value of the wrong type (a string for a number, ...): both a TypeError and a ValueError."""


def _torch():
    """The torch module if it is already imported, else None: a tensor implies torch is loaded."""
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def as_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor is detached and moved to the CPU; bfloat16 →
    float32, exactly)."""
    if is_tensor(x):
        torch = _torch()
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


def check_real(value: Any, name: str, *, finite: bool = False) -> float:
    """``value`` as a Python float: a real number, numpy scalar or one-element array/tensor.

    Raises:
        InvalidInput: a string, boolean, complex number or anything else that is not a real
            number; ValueError: NaN or an array with more than one element.
    """
    if is_tensor(value) or isinstance(value, np.ndarray):
        values = as_numpy(value, name)
        if values.size != 1:
            raise ValueError(f"{name} must be a scalar, got an array of shape {values.shape}")
        if (
            values.dtype == np.bool_
            or not np.issubdtype(values.dtype, np.number)
            or (np.issubdtype(values.dtype, np.complexfloating))
        ):
            raise InvalidInput(f"{name} must be a real number, got dtype {values.dtype}")
        value = values.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if finite and not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if math.isnan(out):
        raise ValueError(f"{name} is NaN")
    return out


def check_int(value: Any, name: str, low: int) -> int:
    """``value`` as an int ≥ ``low`` (booleans, floats and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def check_fraction(value: Any, name: str) -> float:
    """``value`` as a float strictly between 0 and 1 (booleans and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _first_bad(a: np.ndarray, bad: np.ndarray) -> str:
    i, j = np.argwhere(bad)[0]
    return f"first at sample {i}, class {j}: {a[i, j]}"


def check_logits(
    logits: Any, name: str = "logits", *, values: bool = True, on_device: bool = False
) -> np.ndarray:
    """Validate a (N, C) score matrix and return it as a float numpy array.

    float32 and float64 inputs keep their dtype (no copy); float16, bfloat16 tensors (as
    float32), integers up to 2**53 and booleans become float, exactly.

    ``-inf`` is accepted: a class that can never be predicted in that sample (the authors'
    code masks excluded classes so). NaN and ``+inf`` are refused, as are rows whose every
    entry is ``-inf`` (no class could be predicted) and complex numbers. When every row is
    non-negative and sums to 1 the input looks like probabilities, and a warning says that γ
    is in logit units.

    ``values=False`` checks shape and dtype only: the caller then passes the row statistics
    of its one pass over the logits to :func:`check_stats` (see :mod:`calib.rules.kernels`).
    ``on_device=True`` (with ``values=False``) returns a tensor on a GPU as a float tensor on
    that device instead of copying it to the host.

    Raises:
        ValueError: not 2-D, no rows or columns, NaN/+inf, an all ``-inf`` row, or integers
            beyond 2**53. TypeError: a non-numeric or complex dtype.
    """
    if on_device and not values and is_tensor(logits) and logits.device.type != "cpu":
        return _device_logits(logits, name)
    a = as_numpy(logits, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, classes), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = _as_float(a, name)
    if values:
        lo, hi = a.min(), a.max()  # NaN propagates into both
        if math.isnan(hi) or hi == math.inf:
            _refuse_non_finite(a, name)
        if lo == -math.inf:
            _refuse_dead_rows(np.isneginf(a).all(axis=1), name)
        elif lo >= 0 and hi < 1 and a.shape[1] > 1:  # one-hot rows are no reason to warn
            _warn_if_probabilities(a, name)
    return a


def _device_logits(t: Any, name: str) -> Any:
    """Shape and dtype checks of :func:`check_logits` for a tensor that stays on its device."""
    torch = _torch()
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, classes), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if t.is_complex():
        raise TypeError(f"{name} must be real, got complex dtype {t.dtype}")
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()  # exact
    if not t.is_floating_point():
        if t.dtype != torch.bool and int(t.abs().max()) > _EXACT_INT:
            raise ValueError(f"{name} holds integers beyond 2**53: pass float logits")
        return t.double()
    return t


def check_stats(a: Any, name: str, lo: np.ndarray, hi: np.ndarray, nan: np.ndarray) -> None:
    """The value checks of :func:`check_logits` from per-row min, max and NaN flags (N,).

    ``a``: the logits, a numpy array or a tensor on any device; a tensor is read on its device
    only where a check needs more than the row statistics (reductions there: O(N) or O(1)
    comes back to the host, never the N × C values)."""
    top, bottom = hi.max(), lo.min()
    if nan.any() or top == math.inf:
        _refuse_non_finite(a, name)
    if bottom == -math.inf:
        _refuse_dead_rows(hi == -math.inf, name)
    elif bottom >= 0 and top < 1 and a.shape[1] > 1:
        _warn_if_probabilities(a, name)


def _refuse_non_finite(a: Any, name: str) -> None:
    if is_tensor(a):  # counted and located on its device: three numbers come back
        bad = a.isnan() | a.isposinf()
        count = int(bad.sum())
        i, j = divmod(int(bad.flatten().to(dtype=_torch().uint8).argmax()), a.shape[1])
        first = f"first at sample {i}, class {j}: {a[i, j].item()}"
    else:
        bad = np.isnan(a) | np.isposinf(a)
        count, first = int(bad.sum()), _first_bad(a, bad)
    raise ValueError(
        f"{name} has {count} non-finite value(s), NaN or +inf ({first}); "
        "only -inf is accepted (a class that can never be predicted)"
    )


def _refuse_dead_rows(dead: np.ndarray, name: str) -> None:
    if dead.any():
        raise ValueError(
            f"{name}: sample {int(np.flatnonzero(dead)[0])} has -inf in every column "
            f"({int(dead.sum())} such row(s)): no class can be predicted there"
        )


def _as_float(a: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got complex dtype {a.dtype}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.integer) and a.size:
        big = max(abs(int(a.min())), abs(int(a.max())))
        if big > _EXACT_INT:
            raise ValueError(
                f"{name} holds integers up to {big}, beyond 2**53: they cannot be compared "
                "exactly as floats; pass float logits"
            )
    return a.astype(np.float64)


def _warn_if_probabilities(a: Any, name: str) -> None:
    if is_tensor(a):  # row sums on the tensor's device, one flag back
        torch = _torch()
        sums = a.sum(dim=1, dtype=torch.float64)
        looks = bool(((sums - 1.0).abs() <= 1e-3).all())
    else:
        looks = bool(np.all(np.abs(a.sum(axis=1, dtype=np.float64) - 1.0) <= 1e-3))
    if looks:
        warnings.warn(
            f"{name} look like probabilities (every row is non-negative and sums to 1): calib "
            "works on logits, and γ is in logit units; pass the model's pre-softmax outputs "
            "(or their log)",
            UserWarning,
            stacklevel=3,
        )


def _integral(values: np.ndarray, name: str, what: str) -> np.ndarray:
    """Float ``values`` that hold whole numbers, as they are; an error naming ``name`` else."""
    if not np.issubdtype(values.dtype, np.floating) or not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be integer {what}, got dtype {values.dtype}")
    if not np.all(values == np.round(values)):
        bad = values[values != np.round(values)]
        raise ValueError(f"{name} must be integer {what}, got {bad[0]!r}")
    return values


def _out_of_range(values: np.ndarray, upper: int | None) -> np.ndarray:
    """Mask of entries outside [0, upper), compared in the values' own dtype (no wrap-around)."""
    bad = values < 0
    if upper is not None:
        bad |= values >= upper
    return bad


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
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        if y.dtype == np.bool_:
            raise ValueError(f"{name} must be integer class indices, got dtype bool")
        _integral(y, name, "class indices")
    if n:
        bad = _out_of_range(y, num_classes)
        if bad.any():
            raise ValueError(
                f"{name} out of range: {int(bad.sum())} label(s) outside [0, "
                f"{num_classes if num_classes is not None else 'inf'}), e.g. {y[bad][0].item()!r}"
            )
    return y.astype(np.int64, copy=False)


def check_sample_weight(sample_weight: Any, n: int, rows: str = "logits") -> np.ndarray | None:
    """``sample_weight`` for the ``n`` rows of ``rows``: None (equal weights) or a (n,) float64
    array of finite weights ≥ 0, not all zero.

    Raises:
        ValueError: not 1-D, the wrong length, NaN/inf, a negative weight or every weight 0.
        TypeError: a non-numeric, boolean or complex dtype (InvalidInput: both).
    """
    if sample_weight is None:
        return None
    w = as_numpy(sample_weight, "sample_weight")
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D (one weight per sample), got shape {w.shape}")
    if w.shape[0] != n:
        raise ValueError(f"sample_weight has {w.shape[0]} entries but {rows} have {n} rows")
    if w.dtype == np.bool_ or not np.issubdtype(w.dtype, np.number):
        raise InvalidInput(f"sample_weight must hold real numbers, got dtype {w.dtype}")
    if np.issubdtype(w.dtype, np.complexfloating):
        raise InvalidInput(f"sample_weight must be real, got complex dtype {w.dtype}")
    w = w.astype(np.float64, copy=False)
    bad = ~np.isfinite(w)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"sample_weight has {int(bad.sum())} non-finite value(s), first at sample {i}: {w[i]}"
        )
    if (w < 0).any():
        i = int(np.flatnonzero(w < 0)[0])
        raise ValueError(f"sample_weight must be ≥ 0, got {w[i]} at sample {i}")
    if n and not (w > 0).any():
        raise ValueError("sample_weight is 0 for every sample: the weighted mean is undefined")
    return w


#: How per-sample hits are averaged: per sample (``micro``) or per class (``macro``).
AVERAGES = ("micro", "macro")


def check_average(average: Any) -> str:
    """``average`` if it is one of :data:`AVERAGES`; ValueError naming it otherwise."""
    if not isinstance(average, str) or average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    return average


def _class_index(classes: Any, num_classes: int, name: str) -> np.ndarray:
    """``classes`` (any iterable of ints, an array or a tensor) as sorted unique int64."""
    if isinstance(classes, (str, bytes)):
        raise TypeError(f"{name} must be a collection of class indices, got a string")
    if not (is_tensor(classes) or isinstance(classes, np.ndarray)) and isinstance(
        classes, Iterable
    ):
        classes = list(classes)  # generators, dict keys, sets, ranges
    c = np.atleast_1d(as_numpy(classes, name))
    if c.ndim != 1:
        raise ValueError(f"{name} must be a 1-D collection of class indices, got shape {c.shape}")
    if c.size == 0:
        raise ValueError(f"{name} is empty: at least one class is needed")
    if c.dtype == np.bool_ or not np.issubdtype(c.dtype, np.integer):
        if c.dtype == np.bool_ or not np.issubdtype(c.dtype, np.number):
            raise ValueError(f"{name} must hold integer class indices, got dtype {c.dtype}")
        _integral(c, name, "class indices")
    bad = _out_of_range(c, num_classes)
    if bad.any():
        shown = [v.item() for v in c[bad][:10]]
        raise ValueError(f"{name} out of range: {shown} not in [0, {num_classes})")
    # counts per column: O(C), where np.unique sorts (the class sets are checked on every call)
    counts = np.bincount(c.astype(np.int64), minlength=num_classes)
    if (counts > 1).any():
        twice = np.flatnonzero(counts > 1)
        raise ValueError(f"{name} lists class(es) more than once: {twice.tolist()[:10]}")
    return np.flatnonzero(counts).astype(np.int64, copy=False)


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
    is_seen = np.zeros(num_classes, dtype=bool)
    is_seen[seen] = True
    if absent_classes is None:
        absent = np.flatnonzero(~is_seen).astype(np.int64, copy=False)
        if absent.size == 0:
            raise ValueError(
                "absent_classes is empty: seen_classes covers all "
                f"{num_classes} columns, so there is nothing to calibrate"
            )
    else:
        absent = _class_index(absent_classes, num_classes, "absent_classes")
    overlap = absent[is_seen[absent]]  # sorted, as absent is
    if overlap.size:
        raise ValueError(f"seen_classes and absent_classes overlap: {overlap.tolist()[:10]}")
    return seen, absent


def like_input(result: np.ndarray, reference: Any) -> Any:
    """``result`` converted back to the type of ``reference``: a tensor on its device, or numpy."""
    if is_tensor(reference):
        torch = _torch()
        return torch.from_numpy(np.ascontiguousarray(result)).to(reference.device)
    return result


# ---------------------------------------------------------- the calibrator's inputs


def has_bad_values(t: Any) -> bool:
    """On the tensor's device: a NaN, a +inf, a complex dtype or an all -inf row."""
    if t.is_complex():
        return True
    if not t.is_floating_point():
        return False
    return bool(t.isnan().any() or t.isposinf().any() or t.isneginf().all(dim=1).any())


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` as an int ≥ 2 (booleans refused)."""
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 2
    ):
        raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
    return int(num_classes)


# ------------------------------------ γ, temperatures, groups and bins (probabilities)

#: The sample groups of the per-group metrics and diagrams.
GROUPS = ("all", "seen", "absent")


def check_gamma(gamma: Any) -> float:
    """``gamma`` (logit units) as a finite Python float: the one check of γ everywhere it is
    taken (selectors, the estimator, the wrapper, the probabilities). Strings, booleans, NaN and
    ±inf are refused; a one-element array or tensor is accepted."""
    return check_real(gamma, "gamma", finite=True)


def check_positive(value: Any, name: str) -> float:
    """``value`` as a finite Python float > 0 (a temperature, a bin count's scale, ...)."""
    try:
        t = check_real(value, name)
    except ValueError as err:
        if not str(err).endswith("is NaN"):
            raise
        t = math.nan
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"{name} must be finite and > 0, got {t}")
    return t


def _temperature_pair(temperature: Any) -> list[Any] | None:
    """The two entries of a pair ``temperature`` (list, tuple, or 1-D array/tensor of any
    length), or None for a scalar (a number, or a 0-d / one-element array or tensor)."""
    if isinstance(temperature, (tuple, list)):
        return list(temperature)
    if is_tensor(temperature) or isinstance(temperature, np.ndarray):
        values = as_numpy(temperature, "temperature")
        if values.ndim == 0 or (values.ndim == 1 and values.size == 1):
            return None  # one T as a one-element array, as before
        if values.ndim != 1:
            raise ValueError(
                f"temperature must be one number or a pair (T_S, T_U), got an array of shape "
                f"{values.shape}"
            )
        return list(values)
    return None


def temperature_pair(temperature: Any) -> tuple[float, float]:
    """(T_S, T_U) of a temperature ``T`` (both T) or of a pair ``(T_S, T_U)``; each finite > 0.

    A pair is a list, a tuple or a 1-D numpy array / torch tensor of two entries; one T is a
    number or a one-element array / tensor.
    """
    pair = _temperature_pair(temperature)
    if pair is not None:
        if len(pair) != 2:
            shown = temperature if isinstance(temperature, (tuple, list)) else pair
            raise ValueError(
                f"temperature must be one number or a pair (T_S, T_U), got {len(pair)} "
                f"values: {shown!r}"
            )
        return (
            check_positive(pair[0], "temperature T_S"),
            check_positive(pair[1], "temperature T_U"),
        )
    t = check_positive(temperature, "temperature")
    return t, t


def temperature_value(temperature: Any) -> float | tuple[float, float]:
    """``temperature`` checked (:func:`temperature_pair`), in canonical form: one float, or a
    (T_S, T_U) tuple of floats when a pair was given (a list, tuple, array or tensor)."""
    temps = temperature_pair(temperature)
    return temps if _temperature_pair(temperature) is not None else temps[0]


def check_absent(absent_classes: Any, num_classes: int) -> np.ndarray:
    """The absent columns U on their own (S = every other column): sorted int64 indices.

    Raises:
        ValueError / TypeError: not a 1-D collection of distinct integers in
            [0, num_classes), empty, or every column.
    """
    if absent_classes is None:
        raise ValueError("absent_classes is required here (the columns that receive γ)")
    if isinstance(absent_classes, (str, bytes)):
        raise TypeError("absent_classes must be a collection of class indices, got a string")
    if isinstance(absent_classes, (set, frozenset)):
        absent_classes = sorted(absent_classes)
    u = np.atleast_1d(as_numpy(absent_classes, "absent_classes"))
    if u.ndim != 1:
        raise ValueError(f"absent_classes must be 1-D, got shape {u.shape}")
    if u.size == 0:
        raise ValueError("absent_classes is empty: at least one class is needed")
    if not np.issubdtype(u.dtype, np.integer):
        if not (np.issubdtype(u.dtype, np.floating) and np.all(u == np.round(u))):
            raise ValueError(
                f"absent_classes must hold integer class indices, got {u.tolist()[:10]}"
            )
    u = u.astype(np.int64)
    if u.min() < 0 or u.max() >= num_classes:
        bad = u[(u < 0) | (u >= num_classes)]
        raise ValueError(
            f"absent_classes out of range: {bad.tolist()[:10]} not in [0, {num_classes})"
        )
    uniq = np.unique(u)
    if uniq.size != u.size:
        raise ValueError(f"absent_classes lists a class more than once: {u.tolist()[:10]}")
    if uniq.size == num_classes:
        raise ValueError(f"absent_classes covers all {num_classes} columns: nothing stays seen")
    return uniq


def check_n_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    return int(n_bins)


def check_group(group: Any) -> str:
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    return group
