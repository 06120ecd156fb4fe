"""Floats as integer keys: the same order, so that the kernels compare integers (vectorised).

A float's bits b (int32 for float32, int64 for float64) give the key ``b ^ ((b >> w-1) &
(2^(w-1) - 1))``: non-negative floats keep their bits, negative ones flip all but the sign, so
keys order as the floats do; -0.0 (key -1) is mapped to +0.0's key 0, as the floats compare
equal. NaNs fall outside [key(-inf), key(+inf)] (:data:`KEY_BOUNDS`). The numba kernels
compute the same keys (:func:`calib.rules.numba_kernels._key32`, ``_key64``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["KEY_BOUNDS", "keys_of", "floats_of_keys", "cross_keys"]

_INT = {np.float32: np.int32, np.float64: np.int64}
_SHIFT = {np.float32: 31, np.float64: 63}

#: (key(-inf), key(+inf)) per float dtype
KEY_BOUNDS = {
    np.float32: (-0x7F800001, 0x7F800000),
    np.float64: (-0x7FF0000000000001, 0x7FF0000000000000),
}

_WALK = 8  # steps from float(z_y + threshold) to the exact boundary key (1-2 in practice)


def keys_of(x: np.ndarray, dtype: type) -> np.ndarray:
    """int64 keys of ``x`` as ``dtype`` (float32 or float64) values."""
    b = np.ascontiguousarray(x, dtype=dtype).view(_INT[dtype]).astype(np.int64)
    k = b ^ ((b >> _SHIFT[dtype]) & ((1 << _SHIFT[dtype]) - 1))
    return np.where(k == -1, 0, k)


def floats_of_keys(k: np.ndarray, dtype: type) -> np.ndarray:
    """The ``dtype`` values of int64 keys (inverse of :func:`keys_of`; key -1 is -0.0)."""
    dtype = np.dtype(dtype).type
    b = (k ^ ((k >> _SHIFT[dtype]) & ((1 << _SHIFT[dtype]) - 1))).astype(_INT[dtype])
    return b.view(dtype)


def cross_keys(z: np.ndarray, is_absent: np.ndarray, labels: np.ndarray, gamma: float):
    """(N,) int64: per row of float32/float64 ``z``, the largest key T of a value x (in the
    logits' dtype) for which a column x of the other group than the label's does not beat the
    label under γ.

    The rule (:func:`calib.rules.kernels.label_rank`): with d = float64(x) − float64(z_y), an absent
    column beats a non-absent label iff d > −γ, a non-absent column beats an absent label iff
    d ≥ γ. d is monotone in x, so "beats" is "key(x) > T". T is found by walking from the
    float nearest z_y ∓ γ one float at a time, the same float64 test at every step, and by
    bisection where that did not settle in :data:`_WALK` steps (float64 logits much smaller
    than z_y: many x round to one d); ``NO_KEY`` where the label's logit is not finite (-inf:
    the select loop decides there) or every x beats (γ = -inf).
    """
    from calib.rules.numba_kernels import NO_KEY

    dtype = z.dtype.type
    bottom, top = KEY_BOUNDS[dtype]
    n = z.shape[0]
    zy = z[np.arange(n), labels].astype(np.float64)
    y_abs = is_absent[labels]
    thr = np.where(y_abs, gamma, -gamma)

    def beats_at(k: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        d = floats_of_keys(k, dtype).astype(np.float64) - zy[rows]
        return np.where(y_abs[rows], d >= thr[rows], d > thr[rows])

    def beats(k: np.ndarray) -> np.ndarray:
        return beats_at(k, slice(None))

    with np.errstate(invalid="ignore", over="ignore"):
        k = keys_of((zy + thr).astype(dtype), dtype)  # overflow: ±inf, still a key
        k = np.clip(k, bottom, top)
        for _ in range(_WALK):  # down while x beats, up while the next does not
            down = beats(k) & (k > bottom)
            up = ~down & ~beats(k + 1) & (k < top)
            if not (down.any() or up.any()):
                break
            k = k - down + up
        settled = ~beats(k) & (beats(k + 1) | (k == top))
        rest = np.flatnonzero(~settled & np.isfinite(zy))
        if rest.size:  # float64 logits far smaller than z_y: many x give one d
            k[rest], ok = _bisect(k[rest], lambda kk: beats_at(kk, rest), bottom, top)
            settled[rest] = ok
    return np.where(settled & np.isfinite(zy), k, NO_KEY)


def _bisect(k: np.ndarray, beats, bottom: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, found): the largest key T with not beats(T), from the start keys ``k`` by doubling
    steps to a bracket, then bisection; found is False where even ``bottom`` beats."""
    below = np.full(k.shape, bottom, dtype=np.int64)
    ok = ~beats(below)
    lo, hi = k.copy(), k.copy()
    step = np.ones(k.shape, dtype=np.int64)
    for _ in range(64):  # lo down until it does not beat, hi up until it does
        lo_beats, hi_beats = beats(lo), beats(hi)
        if not ((lo_beats & ok).any() or (~hi_beats & (hi < top)).any()):
            break
        lo = np.where(lo_beats, np.maximum(lo - step, bottom), lo)
        hi = np.where(~hi_beats, np.minimum(hi + step, top), hi)
        step *= 2
    lo = np.where(beats(lo), bottom, lo)
    hi = np.where(beats(hi), hi, top)
    for _ in range(64):
        wide = hi - lo > 1
        if not wide.any():
            break
        mid = lo + (hi - lo) // 2
        b = beats(mid)
        lo = np.where(wide & ~b, mid, lo)
        hi = np.where(wide & b, mid, hi)
    return lo, ok & ~beats(lo) & beats(lo + 1)
