"""The numba-compiled kernels behind :mod:`calib._kernels` (imported only when numba is).

Rows run in parallel (``prange``); each row is read once. No fastmath: -inf must stay -inf
and NaN must be seen. Ties go to the lowest column (strict ``>`` from the group's first
column), as ``numpy.argmax`` does; differences are taken in float64, as in :mod:`calib._gaps`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = {"cache": True, "nogil": True, "boundscheck": False}


@njit(parallel=True, **_OPTS)
def scan(z, group, first, labels, gamma, want_ranks):  # noqa: C901 - one fused pass
    n, c = z.shape
    gap = np.empty(n, np.float64)
    pred_other = np.empty(n, np.int64)
    pred_absent = np.empty(n, np.int64)
    pred_seen = np.empty(n, np.int64)
    lo = np.empty(n, z.dtype)
    hi = np.empty(n, z.dtype)
    nan = np.zeros(n, np.bool_)
    rank = np.zeros(n if want_ranks else 1, np.int64)
    rank_seen = np.zeros(n if want_ranks else 1, np.int64)
    rank_absent = np.zeros(n if want_ranks else 1, np.int64)
    for i in prange(n):
        row = z[i]
        m0 = -np.inf
        m1 = -np.inf
        m2 = -np.inf
        i0 = first[0]
        i1 = first[1]
        i2 = first[2]
        rmin = np.inf
        rmax = -np.inf
        has_nan = False
        y = labels[i] if want_ranks else 0
        zy = np.float64(row[y])
        gy = group[y]
        r_all = 0
        r_grp = 0
        for j in range(c):
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
            if v < rmin:
                rmin = v
            if v > rmax:
                rmax = v
            if v != v:
                has_nan = True
            if want_ranks:
                d = np.float64(v) - zy
                c_abs = g == 1
                y_abs = gy == 1
                if c_abs == y_abs:
                    thr = 0.0
                    tie = j < y
                elif c_abs:
                    thr = -gamma
                    tie = False
                else:
                    thr = gamma
                    tie = True
                if d != d:  # -inf − -inf: two never-predictable columns tie
                    d = thr
                if d > thr or (d == thr and tie):
                    r_all += 1
                if g == gy and g != 2:  # within S or within U: plain argmax order
                    if d > 0.0 or (d == 0.0 and j < y):  # NaN became thr = 0 above
                        r_grp += 1
        # the best non-absent column: S or R, ties to the lower index
        if first[2] >= 0 and (m2 > m0 or (m2 == m0 and i2 < i0)):
            mo = m2
            io = i2
        else:
            mo = m0
            io = i0
        gap[i] = np.float64(mo) - np.float64(m1)
        pred_other[i] = io
        pred_absent[i] = i1
        pred_seen[i] = i0
        lo[i] = rmin
        hi[i] = rmax
        nan[i] = has_nan
        if want_ranks:
            rank[i] = r_all
            rank_seen[i] = r_grp if gy == 0 else c
            rank_absent[i] = r_grp if gy == 1 else c
    return gap, pred_other, pred_absent, pred_seen, lo, hi, nan, rank, rank_seen, rank_absent


@njit(parallel=True, **_OPTS)
def shift(z, add, rel, tiny):
    n, c = z.shape
    out = np.empty((n, c), np.float64)
    lo = np.empty(n, z.dtype)
    hi = np.empty(n, z.dtype)
    nan = np.zeros(n, np.bool_)
    for i in prange(n):
        row = z[i]
        orow = out[i]
        rmin = np.inf
        rmax = -np.inf
        has_nan = False
        for j in range(c):
            v = row[j]
            s = np.float64(v) + add[j]
            # |s| capped so that an un-shifted -inf gives -inf − 0, not -inf − inf·0 = NaN
            orow[j] = s - (min(np.abs(s), 1e308) * rel[j] + tiny[j])
            if v < rmin:
                rmin = v
            if v > rmax:
                rmax = v
            if v != v:
                has_nan = True
        lo[i] = rmin
        hi[i] = rmax
        nan[i] = has_nan
    return out, lo, hi, nan


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
            if v < rmin:
                rmin = v
            if v > rmax:
                rmax = v
            if v != v:
                has_nan = True
        sum_seen[i] = s0
        sum_absent[i] = s1
        lo[i] = rmin
        hi[i] = rmax
        nan[i] = has_nan
    return sum_seen, sum_absent, lo, hi, nan
