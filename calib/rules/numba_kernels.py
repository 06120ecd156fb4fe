"""The numba-compiled kernels behind :mod:`calib.rules.kernels` (imported only when numba is).

Rows run in parallel (``prange``); each row is read once. No fastmath: -inf must stay -inf
and NaN must be seen. Ties go to the lowest column (strict ``>`` from the group's first
column), as ``numpy.argmax`` does; differences are taken in float64, as in :mod:`calib.rules.gaps`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = {"cache": True, "nogil": True, "boundscheck": False}


@njit(inline="always", **_OPTS)
def _row_groups(row, group, first):
    """Best value and column of S (0), U (1), R (2) in one row, and its min, max, NaN flag."""
    m0 = -np.inf
    m1 = -np.inf
    m2 = -np.inf
    i0 = first[0]
    i1 = first[1]
    i2 = first[2]
    rmin = np.inf
    rmax = -np.inf
    has_nan = False
    for j in range(row.shape[0]):
        v = row[j]
        g = group[j]
        if g == 0:
            if v > m0:
                m0 = v
                i0 = j
        elif g == 1:
            if v > m1:
                m1 = v
                i1 = j
        elif v > m2:
            m2 = v
            i2 = j
        rmin = min(rmin, v)  # selects, not branches: 4x faster here
        rmax = max(rmax, v)
        has_nan |= v != v
    # the best non-absent column: S or R, ties to the lower index
    if first[2] >= 0 and (m2 > m0 or (m2 == m0 and i2 < i0)):
        mo, io = m2, i2
    else:
        mo, io = m0, i0
    return np.float64(mo) - np.float64(m1), io, i1, i0, rmin, rmax, has_nan


@njit(inline="always", **_OPTS)
def _row_ranks(row, group, y, gamma):
    """(columns beating the label under γ, columns of its own group S or U beating it)."""
    zy = np.float64(row[y])
    gy = group[y]
    y_abs = gy == 1
    # thresholds of a column against the label: same group 0; an absent column against
    # another label -γ (ties to the label); another column against an absent label +γ
    # (ties to the column) -- the rule of kernels.label_rank, as selects
    thr_abs = 0.0 if y_abs else -gamma
    thr_non = gamma if y_abs else 0.0
    r_all = 0
    r_grp = 0
    for j in range(row.shape[0]):
        g = group[j]
        d = np.float64(row[j]) - zy
        c_abs = g == 1
        lower = j < y
        thr = thr_abs if c_abs else thr_non
        tie = (y_abs and lower) if c_abs else (y_abs or lower)
        nan = d != d  # -inf − -inf: two never-predictable columns tie
        r_all += (d > thr) | (((d == thr) | nan) & tie)
        r_grp += (g == gy) & (g != 2) & ((d > 0.0) | (((d == 0.0) | nan) & lower))
    return r_all, r_grp


@njit(parallel=True, **_OPTS)
def scan(z, group, first):
    n = z.shape[0]
    gap = np.empty(n, np.float64)
    pred_other = np.empty(n, np.int64)
    pred_absent = np.empty(n, np.int64)
    pred_seen = np.empty(n, np.int64)
    lo = np.empty(n, z.dtype)
    hi = np.empty(n, z.dtype)
    nan = np.zeros(n, np.bool_)
    for i in prange(n):
        out = _row_groups(z[i], group, first)
        gap[i], pred_other[i], pred_absent[i], pred_seen[i] = out[0], out[1], out[2], out[3]
        lo[i], hi[i], nan[i] = out[4], out[5], out[6]
    return gap, pred_other, pred_absent, pred_seen, lo, hi, nan


@njit(parallel=True, **_OPTS)
def scan_ranks(z, group, first, labels, gamma):
    n, c = z.shape
    gap = np.empty(n, np.float64)
    pred_other = np.empty(n, np.int64)
    pred_absent = np.empty(n, np.int64)
    pred_seen = np.empty(n, np.int64)
    lo = np.empty(n, z.dtype)
    hi = np.empty(n, z.dtype)
    nan = np.zeros(n, np.bool_)
    rank = np.empty(n, np.int64)
    rank_seen = np.empty(n, np.int64)
    rank_absent = np.empty(n, np.int64)
    for i in prange(n):
        row = z[i]
        out = _row_groups(row, group, first)
        gap[i], pred_other[i], pred_absent[i], pred_seen[i] = out[0], out[1], out[2], out[3]
        lo[i], hi[i], nan[i] = out[4], out[5], out[6]
        y = labels[i]
        r_all, r_grp = _row_ranks(row, group, y, gamma)  # the row is in cache now
        rank[i] = r_all
        rank_seen[i] = r_grp if group[y] == 0 else c
        rank_absent[i] = r_grp if group[y] == 1 else c
    return gap, pred_other, pred_absent, pred_seen, lo, hi, nan, rank, rank_seen, rank_absent


@njit(inline="always", **_OPTS)
def _row_ranks2(row, is_absent, y, gamma):
    """:func:`_row_ranks` when every column is in S or U (no R): the usual case."""
    zy = np.float64(row[y])
    y_abs = is_absent[y]
    thr_abs = 0.0 if y_abs else -gamma
    thr_non = gamma if y_abs else 0.0
    r_all = 0
    r_grp = 0
    for j in range(row.shape[0]):
        d = np.float64(row[j]) - zy
        c_abs = is_absent[j]
        lower = j < y
        thr = thr_abs if c_abs else thr_non
        tie = (y_abs and lower) if c_abs else (y_abs or lower)
        nan = d != d
        r_all += (d > thr) | (((d == thr) | nan) & tie)
        r_grp += (c_abs == y_abs) & ((d > 0.0) | (((d == 0.0) | nan) & lower))
    return r_all, r_grp


# ----------------------------------------------------------------------------- integer keys
# A float's bits as an integer ``key`` that orders as the float does (-0.0 and +0.0 share key
# 0, NaNs fall outside [key(-inf), key(+inf)]). Integer max/min reductions vectorise without
# fastmath (float ones do not: LLVM may not reorder them), so the group maxima are taken over
# keys: float32 packs (key, -column) into one int64, whose max is the best value and, among
# equal values, the lowest column -- numpy's argmax, in one vectorised pass (measured 3.6x
# faster than a branch-free select loop over the floats, 0.6x the time of one ``a.max(axis=1)``).
# float64 packs the upper half of the key instead (:func:`scan_f64`). The select loop these
# replace (float compares, branch-free) ran 1.8-3.4x the time of one read.

_LOW32 = np.int64(0xFFFFFFFF)
_NONE = np.int64(np.iinfo(np.int64).min)
_TOP = np.int64(np.iinfo(np.int64).max)
_KEY32_PINF = np.int64(0x7F800000)
_KEY32_NINF = np.int64(-0x7F800001)


@njit(inline="always", **_OPTS)
def _key32(b):
    k = np.int64(b)
    k = k ^ ((k >> 31) & 0x7FFFFFFF)
    return np.int64(0) if k == -1 else k


@njit(inline="always", **_OPTS)
def packed_row32(row, is_absent):
    """Per group the max of (key, -column) over a float32 row's bits, and the min over all:
    (S's, U's, the row's), packed int64. Its own function so that
    ``benchmarks/bench_kernel_isa.py`` can compile it alone and read its instructions."""
    p0 = _NONE
    p1 = _NONE
    pmin = _TOP
    for j in range(row.shape[0]):
        p = (_key32(row[j]) << 32) | (_LOW32 - j)
        a = is_absent[j]
        p1 = max(p1, p if a else _NONE)
        p0 = max(p0, _NONE if a else p)
        pmin = min(pmin, p)
    return p0, p1, pmin


@njit(parallel=True, **_OPTS)
def scan_f32(z, bits, is_absent, labels, gamma, want_ranks, cross):
    """:func:`scan` / :func:`scan_ranks` when every column is in S or U (a bool mask), for
    float32 logits, from their bits (``bits = z.view(int32)``).

    With ranks, ``cross`` (N,) int64: per row, the key above which a column of the other
    group than the label's beats the label under γ (:func:`calib.rules.keys.cross_keys`), or
    :data:`NO_KEY` where the select loop must decide (a label logit of -inf)."""
    n, c = z.shape
    gap = np.empty(n, np.float64)
    pred_other = np.empty(n, np.int64)
    pred_absent = np.empty(n, np.int64)
    lo = np.empty(n, z.dtype)
    hi = np.empty(n, z.dtype)
    nan = np.zeros(n, np.bool_)
    m = n if want_ranks else 1
    rank = np.zeros(m, np.int64)
    rank_seen = np.zeros(m, np.int64)
    rank_absent = np.zeros(m, np.int64)
    for i in prange(n):
        row = bits[i]
        p0, p1, pmin = packed_row32(row, is_absent)
        i0 = _LOW32 - (p0 & _LOW32)
        i1 = _LOW32 - (p1 & _LOW32)
        top = max(p0, p1)
        gap[i] = np.float64(z[i, i0]) - np.float64(z[i, i1])
        pred_other[i] = i0
        pred_absent[i] = i1
        lo[i] = z[i, _LOW32 - (pmin & _LOW32)]
        hi[i] = z[i, _LOW32 - (top & _LOW32)]
        nan[i] = ((top >> 32) > _KEY32_PINF) | ((pmin >> 32) < _KEY32_NINF)
        if want_ranks:
            y = labels[i]
            if cross[i] == NO_KEY:
                r_all, r_grp = _row_ranks2(z[i], is_absent, y, gamma)
            else:
                r_all, r_grp = _row_ranks_keys(row, is_absent, y, cross[i])  # row in cache
            rank[i] = r_all
            rank_seen[i] = c if is_absent[y] else r_grp
            rank_absent[i] = r_grp if is_absent[y] else c
    return gap, pred_other, pred_absent, pred_other, lo, hi, nan, rank, rank_seen, rank_absent


NO_KEY = np.int64(np.iinfo(np.int64).min)


@njit(inline="always", **_OPTS)
def _key64(b):
    k = np.int64(b)
    k = k ^ ((k >> 63) & 0x7FFFFFFFFFFFFFFF)
    return np.int64(0) if k == -1 else k


_HIGH = np.int64(-0x100000000)  # the upper 32 bits of an int64


@njit(inline="always", **_OPTS)
def _first_with_key(row, is_absent, key, want_absent):
    """The lowest column of the group ``want_absent`` whose key is ``key``."""
    for j in range(row.shape[0]):
        if _key64(row[j]) == key and is_absent[j] == want_absent:
            return j
    return 0  # not reached: some column of the group holds the key


@njit(parallel=True, **_OPTS)
def scan_f64(z, bits, is_absent, labels, gamma, want_ranks, cross):
    """:func:`scan_f32` for float64 logits (``bits = z.view(int64)``), returning the rows' min
    and max as keys (``lo``, ``hi``; NaN is a key outside the float range).

    A 64-bit key leaves no room for the column, so one vectorised pass takes per group the
    max key and the max of (upper 32 bits of the key, -column): the lowest column j whose key
    shares the maximum's upper half. If j holds the maximum itself it is the answer (a lower
    column holding it would share the upper half); else (two values of the group agree in
    their first 20 mantissa bits but not after) a search finds it."""
    n, c = z.shape
    gap = np.empty(n, np.float64)
    pred_other = np.empty(n, np.int64)
    pred_absent = np.empty(n, np.int64)
    kmin = np.empty(n, np.int64)
    kmax = np.empty(n, np.int64)
    nan = np.zeros(n, np.bool_)
    m = n if want_ranks else 1
    rank = np.zeros(m, np.int64)
    rank_seen = np.zeros(m, np.int64)
    rank_absent = np.zeros(m, np.int64)
    for i in prange(n):
        row = bits[i]
        k0 = _NONE
        k1 = _NONE
        p0 = _NONE
        p1 = _NONE
        mn = _TOP
        for j in range(c):
            k = _key64(row[j])
            p = (k & _HIGH) | (_LOW32 - j)
            a = is_absent[j]
            k1 = max(k1, k if a else _NONE)
            k0 = max(k0, _NONE if a else k)
            p1 = max(p1, p if a else _NONE)
            p0 = max(p0, _NONE if a else p)
            mn = min(mn, k)
        i0 = _LOW32 - (p0 & _LOW32)
        i1 = _LOW32 - (p1 & _LOW32)
        if _key64(row[i0]) != k0:
            i0 = _first_with_key(row, is_absent, k0, False)
        if _key64(row[i1]) != k1:
            i1 = _first_with_key(row, is_absent, k1, True)
        gap[i] = z[i, i0] - z[i, i1]
        pred_other[i] = i0
        pred_absent[i] = i1
        kmin[i] = mn
        kmax[i] = max(k0, k1)
        if want_ranks:
            y = labels[i]
            if cross[i] == NO_KEY:
                r_all, r_grp = _row_ranks2(z[i], is_absent, y, gamma)
            else:
                r_all, r_grp = _row_ranks_keys64(row, is_absent, y, cross[i])  # row in cache
            rank[i] = r_all
            rank_seen[i] = c if is_absent[y] else r_grp
            rank_absent[i] = r_grp if is_absent[y] else c
    return gap, pred_other, pred_absent, pred_other, kmin, kmax, nan, rank, rank_seen, rank_absent


@njit(inline="always", **_OPTS)
def _row_ranks_keys64(row, is_absent, y, cross):
    """:func:`_row_ranks_keys` for a float64 row (its bits as int64)."""
    y_abs = is_absent[y]
    ky = _key64(row[y])
    r_all = 0
    r_grp = 0
    for j in range(row.shape[0]):
        k = _key64(row[j])
        same = is_absent[j] == y_abs
        beats = k > ((ky - (j < y)) if same else cross)
        r_all += beats
        r_grp += beats & same
    return r_all, r_grp


@njit(inline="always", **_OPTS)
def _row_ranks_keys(row, is_absent, y, cross):
    """:func:`_row_ranks2` over the keys of a float32 row whose label logit is not -inf.

    A column of the label's own group beats it when its key is larger, or equal and the
    column lower (argmax order); a column of the other group when its key exceeds ``cross``
    (the rule's γ comparison, resolved into a key per row beforehand: the difference
    z_c − z_y in float64 is monotone in z_c)."""
    y_abs = is_absent[y]
    ky = _key32(row[y])
    r_all = 0
    r_grp = 0
    for j in range(row.shape[0]):  # one loop (two, split at y, measured 7x slower: scalar)
        k = _key32(row[j])
        same = is_absent[j] == y_abs
        beats = k > ((ky - (j < y)) if same else cross)  # lower columns win ties: k >= ky
        r_all += beats
        r_grp += beats & same
    return r_all, r_grp


@njit(**_OPTS)
def empty64(n, c):
    """An (n, c) float64 array from numba's allocator (plain malloc: 4 KiB pages)."""
    return np.empty((n, c), np.float64)


@njit(parallel=True, **_OPTS)
def shift(z, bits, add, rel, tiny, out):
    """Writes float64 ``s − (|s|·rel + tiny)``, ``s = z + add``, into ``out`` (N, C); returns the
    rows' smallest and largest keys of ``bits`` (the logits' bits: integer min/max vectorise,
    float ones do not -- measured 5.5x faster than tracking float min/max here)."""
    n, c = z.shape
    kmin = np.empty(n, np.int64)
    kmax = np.empty(n, np.int64)
    wide = bits.itemsize == 8
    for i in prange(n):
        row = z[i]
        brow = bits[i]
        orow = out[i]
        mn = _TOP
        mx = _NONE
        for j in range(c):
            s = np.float64(row[j]) + add[j]
            # |s| capped so that an un-shifted -inf gives -inf − 0, not -inf − inf·0 = NaN
            orow[j] = s - (min(np.abs(s), 1e308) * rel[j] + tiny[j])
            k = _key64(brow[j]) if wide else _key32(brow[j])
            mn = min(mn, k)
            mx = max(mx, k)
        kmin[i] = mn
        kmax[i] = mx
    return kmin, kmax


@njit(parallel=True, **_OPTS)
def alg_sums(z, group):
    n, c = z.shape
    sum_seen = np.zeros(n, np.float64)
    sum_absent = np.zeros(n, np.float64)
    lo = np.empty(n, z.dtype)
    hi = np.empty(n, z.dtype)
    nan = np.zeros(n, np.bool_)
    for i in prange(n):
        row = z[i]
        s0 = 0.0
        s1 = 0.0
        rmin = np.inf
        rmax = -np.inf
        has_nan = False
        for j in range(c):
            v = row[j]
            g = group[j]
            if g == 0:
                s0 += v
            elif g == 1:
                s1 += v
            rmin = min(rmin, v)  # selects, not branches: 4x faster here
            rmax = max(rmax, v)
            has_nan |= v != v
        sum_seen[i] = s0
        sum_absent[i] = s1
        lo[i] = rmin
        hi[i] = rmax
        nan[i] = has_nan
    return sum_seen, sum_absent, lo, hi, nan
