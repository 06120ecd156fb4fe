"""One-pass kernels over the logits: every metric reads each logit once, on both cores.

Each kernel streams the (N, C) logits row by row (rows in parallel) and computes in that one
read what the numpy versions in :mod:`calib.rules.gaps` compute in several passes: the best column
and its value in each group (S, U, the other columns R), the per-sample gap, the rank of the
label under the rule of :mod:`calib.rules.gaps`, and the value statistics that input validation
needs (min, max, NaN). They are compiled with numba when it is installed (``cache=True``: once
per machine) and fall back to the numpy implementations otherwise, with identical results:
the same comparisons in the same order, ties to the lowest column, float64 differences.

Column groups are coded per column: 0 = seen (S), 1 = absent (U), 2 = other (R). Logits over
S and U only (the usual case) go through :func:`_numba_kernels.scan_f32` / ``scan_f64``,
which compare the floats' bits as integer keys (:mod:`calib.rules.keys`; vectorised); for float32
the γ comparison of the top-k ranks becomes one key per row (:func:`calib.rules.keys.cross_keys`).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from calib.rules.keys import KEY_BOUNDS, cross_keys, floats_of_keys

__all__ = [
    "available",
    "scan",
    "scan_torch",
    "shift",
    "alg_sums",
    "absent_mask",
    "group_argmax",
    "label_rank",
    "SEEN",
    "ABSENT",
    "REST",
]

SEEN, ABSENT, REST = 0, 1, 2

_lock = threading.Lock()  # numba's default thread pool takes one parallel launch at a time
_compiled: dict[str, Any] | None = None
_failed = False


def _build() -> dict[str, Any] | None:
    """The compiled kernels, or None when numba is not installed."""
    global _compiled, _failed
    if _compiled is not None or _failed:
        return _compiled
    try:
        import numba

        if "NUMBA_THREADING_LAYER" not in os.environ:
            # OpenMP's spinning threads made every launch 2.5x slower on this shared 2-core
            # machine (measured: 77 ms against 30 ms per 10,000 x 1,000 scan under load)
            numba.config.THREADING_LAYER = "workqueue"
        import calib.rules.numba_kernels as _numba_kernels
    except ImportError:
        _failed = True
        return None
    _compiled = {
        "scan": _numba_kernels.scan,
        "scan_ranks": _numba_kernels.scan_ranks,
        "scan_f32": _numba_kernels.scan_f32,
        "scan_f64": _numba_kernels.scan_f64,
        "shift": _numba_kernels.shift,
        "alg_sums": _numba_kernels.alg_sums,
        "empty64": _numba_kernels.empty64,
    }
    return _compiled


def available() -> bool:
    """Whether the compiled kernels are in use (numba installed)."""
    return _build() is not None


def _first_of(group: np.ndarray) -> np.ndarray:
    """(3,) first column of each group (-1 when the group is empty)."""
    first = np.full(3, -1, dtype=np.int64)
    for g in (SEEN, ABSENT, REST):
        cols = np.flatnonzero(group == g)
        if cols.size:
            first[g] = cols[0]
    return first


def scan(
    z: np.ndarray,
    group: np.ndarray,
    labels: np.ndarray | None = None,
    gamma: float = 0.0,
) -> dict[str, np.ndarray]:
    """Per row: best column of S, U, R and their values, the gap, value statistics, and (with
    ``labels``) the rank of the label under γ overall, among S and among U.

    Args:
        z: (N, C) float32/float64 logits, not yet checked for NaN/inf.
        group: (C,) int8 codes (0 S, 1 U, 2 R).
        labels: (N,) int64 labels in [0, C), or None (no ranks).
        gamma: the bias for the overall rank.

    Returns:
        ``gap`` (N,) float64 = max over non-U − max over U; ``pred_other``, ``pred_absent``,
        ``pred_seen`` (N,) int64; ``lo``, ``hi`` (N,) row min/max; ``nan`` (N,) bool; with
        labels, ``rank``, ``rank_seen``, ``rank_absent`` (N,) int64 (C where the label is not
        in that group).
    """
    kernels = _build()
    z = np.ascontiguousarray(z)
    group = np.ascontiguousarray(group, dtype=np.int8)
    want_ranks = labels is not None
    y = np.ascontiguousarray(labels, dtype=np.int64) if want_ranks else None
    if kernels is None:
        return _scan_numpy(z, group, y, gamma)
    first = _first_of(group)
    with _lock:
        labels_or_dummy = y if want_ranks else np.zeros(1, dtype=np.int64)
        if first[REST] < 0 and z.dtype == np.float32:  # S and U only: over the float's bits
            is_absent = group == ABSENT
            cross = cross_keys(z, is_absent, y, float(gamma)) if want_ranks else labels_or_dummy
            out = kernels["scan_f32"](
                z, z.view(np.int32), is_absent, labels_or_dummy, float(gamma), want_ranks, cross
            )
        elif first[REST] < 0:  # S and U only, float64 (check_logits gives float32/64)
            is_absent = group == ABSENT
            cross = cross_keys(z, is_absent, y, float(gamma)) if want_ranks else labels_or_dummy
            out = kernels["scan_f64"](
                z, z.view(np.int64), is_absent, labels_or_dummy, float(gamma), want_ranks, cross
            )
            bottom, top = KEY_BOUNDS[np.float64]
            kmin, kmax = out[4], out[5]
            lo, hi = floats_of_keys(kmin, np.float64), floats_of_keys(kmax, np.float64)
            out = (*out[:4], lo, hi, (kmax > top) | (kmin < bottom), *out[7:])
        elif want_ranks:
            out = kernels["scan_ranks"](z, group, first, y, float(gamma))
        else:
            out = kernels["scan"](z, group, first)
    keys = ("gap", "pred_other", "pred_absent", "pred_seen", "lo", "hi", "nan")
    result = dict(zip(keys, out[:7], strict=True))
    if want_ranks:
        result.update(rank=out[7], rank_seen=out[8], rank_absent=out[9])
    return result


# A new output up to this size comes from numpy, which asks the kernel for huge pages
# (madvise): the first touch of 80 MB took 6-50 ms against 40-75 ms in 4 KiB pages. Beyond
# it, from numba's plain malloc: on this VM freed huge pages go back to the host, and 800 MB
# of them took 1.3-4.1 s to touch again against 0.45-0.65 s in 4 KiB pages (measured).
_HUGE_PAGES_UP_TO = 256 << 20


def shift(
    z: np.ndarray,
    add: np.ndarray,
    rel: np.ndarray,
    tiny: np.ndarray,
    out: np.ndarray | None = None,
):
    """(out, lo, hi, nan): float64 ``s − (|s|·rel + tiny)`` with ``s = z + add``, per column;
    and the row statistics of ``z``. ``out``: a C-contiguous float64 (N, C) array to write
    into, else a new one (see :data:`_HUGE_PAGES_UP_TO`)."""
    kernels = _build()
    z = np.ascontiguousarray(z)
    if kernels is None:
        s = z.astype(np.float64) + add
        res = s - (np.minimum(np.abs(s), 1e308) * rel + tiny)
        if out is not None:
            out[...] = res
            res = out
        return res, z.min(axis=1), z.max(axis=1), np.isnan(z).any(axis=1)
    if out is None:
        small = z.size * 8 <= _HUGE_PAGES_UP_TO
        out = np.empty(z.shape, dtype=np.float64) if small else kernels["empty64"](*z.shape)
    f32 = z.dtype == np.float32
    bits = z.view(np.int32 if f32 else np.int64)
    with _lock:
        kmin, kmax = kernels["shift"](z, bits, add, rel, tiny, out)
    bottom, top = KEY_BOUNDS[z.dtype.type]
    nan = (kmax > top) | (kmin < bottom)
    return out, floats_of_keys(kmin, z.dtype), floats_of_keys(kmax, z.dtype), nan


def alg_sums(z: np.ndarray, group: np.ndarray):
    """(sum over S, sum over U, lo, hi, nan) per row, sums in float64."""
    kernels = _build()
    z = np.ascontiguousarray(z)
    group = np.ascontiguousarray(group, dtype=np.int8)
    if kernels is None:
        z64 = z.astype(np.float64)
        return (
            z64[:, group == SEEN].sum(axis=1),
            z64[:, group == ABSENT].sum(axis=1),
            z.min(axis=1),
            z.max(axis=1),
            np.isnan(z).any(axis=1),
        )
    with _lock:
        return kernels["alg_sums"](z, group)


# ----------------------------------------------------------------------------- numpy fallback

_BLOCK_ELEMENTS = 1 << 17  # rows are processed in blocks of about this many entries (cache-sized)


def absent_mask(absent: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean (C,) mask of the absent columns."""
    mask = np.zeros(num_classes, dtype=bool)
    mask[absent] = True
    return mask


def group_argmax(logits: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax column, max value) of each row over the columns ``cols`` (sorted, non-empty).

    Ties go to the lowest column, as ``argmax`` does. Both arrays have shape (N,).
    """
    n, num_classes = logits.shape
    if cols.size == num_classes or cols[-1] - cols[0] + 1 == cols.size:
        # contiguous columns: argmax over a view, no copy
        sub = logits[:, cols[0] : cols[-1] + 1]
        idx = sub.argmax(axis=1)
        return cols[idx], sub[np.arange(n), idx]
    # Scattered columns must be gathered. Gathering a few hundred rows at a time keeps the
    # copy in cache for the argmax that reads it: 5-8x faster than one N x |cols| copy.
    pred = np.empty(n, dtype=np.int64)
    best = np.empty(n, dtype=logits.dtype)
    block = max(1, _BLOCK_ELEMENTS // cols.size)
    for start in range(0, n, block):
        sub = logits[start : start + block, cols]
        idx = sub.argmax(axis=1)
        pred[start : start + block] = cols[idx]
        best[start : start + block] = sub[np.arange(sub.shape[0]), idx]
    return pred, best


def label_rank(
    logits: np.ndarray,
    labels: np.ndarray,
    absent: np.ndarray,
    gamma: float,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """How many columns beat each sample's own label under bias ``gamma``: (N,) int64, 0 = predicted.

    The top-k extension of :meth:`Gaps.predict` (a sample is top-k right iff its rank < k, and
    rank 0 is exactly ``Gaps.predict(gamma) == labels``). Column c beats label y when
      - both or neither are absent: z_c > z_y, or z_c = z_y and c < y (argmax order);
      - c absent, y not: γ > z_y − z_c (the gap form of the rule);
      - y absent, c not: not (γ > z_c − z_y).
    Differences are taken in float64, as in :func:`compute_gaps`, so γ is compared with the
    same numbers there and here. O(N·C), in row blocks that bound the temporary memory.

    Args:
        logits: validated (N, C) scores.
        labels: validated (N,) labels.
        absent: sorted absent column indices.
        gamma: the bias added to the absent columns (may be ±inf).
        columns: optional sorted column subset; only these columns compete, and every label
            must be one of them.
    """
    n, num_classes = logits.shape
    is_absent = absent_mask(absent, num_classes)
    if columns is not None:
        # the subset keeps the columns' order, so ties still go to the lower original index
        is_absent = is_absent[columns]
        labels = np.searchsorted(columns, labels)
    width = is_absent.size
    col_index = np.arange(width)
    # With diff = z_c − z_y, the three cases read "diff > threshold, or diff = threshold and the
    # tie goes to c": threshold 0 within a group; −γ for an absent column against another label
    # (−diff is exactly z_y − z_c: IEEE subtraction is antisymmetric), ties to the label; γ for
    # another column against an absent label, ties to the column.
    threshold_other_label = np.where(is_absent, -gamma, 0.0)
    threshold_absent_label = np.where(is_absent, 0.0, gamma)
    rank = np.empty(n, dtype=np.int64)
    has_neginf = bool(logits.min() == -np.inf)
    block = max(1, _BLOCK_ELEMENTS // width)
    for start in range(0, n, block):
        rows = slice(start, start + block)
        z = logits[rows] if columns is None else logits[rows, columns]
        z = z.astype(np.float64, copy=False)
        y = labels[rows]
        with np.errstate(invalid="ignore"):  # -inf − -inf, replaced below
            diff = z - z[np.arange(z.shape[0]), y][:, None]
        lower = col_index < y[:, None]
        y_absent = is_absent[y][:, None]
        threshold = np.where(y_absent, threshold_absent_label, threshold_other_label)
        if has_neginf:  # -inf − -inf: two never-predictable columns tie
            diff = np.where(np.isnan(diff), threshold, diff)
        tie_to_column = np.where(y_absent, ~is_absent | lower, ~is_absent & lower)
        beats = (diff > threshold) | ((diff == threshold) & tie_to_column)
        rank[rows] = np.count_nonzero(beats, axis=1)
    return rank


def _scan_numpy(
    z: np.ndarray, group: np.ndarray, labels: np.ndarray | None, gamma: float
) -> dict[str, np.ndarray]:
    n, c = z.shape
    out: dict[str, np.ndarray] = {
        "lo": z.min(axis=1),
        "hi": z.max(axis=1),
        "nan": np.isnan(z).any(axis=1),
    }
    seen, absent = np.flatnonzero(group == SEEN), np.flatnonzero(group == ABSENT)
    other = np.flatnonzero(group != ABSENT)
    pred_other, max_other = group_argmax(z, other)
    pred_absent, max_absent = group_argmax(z, absent)
    out.update(
        gap=max_other.astype(np.float64) - max_absent.astype(np.float64),
        pred_other=pred_other,
        pred_absent=pred_absent,
        pred_seen=group_argmax(z, seen)[0] if seen.size else pred_other,
    )
    if labels is not None:
        out["rank"] = label_rank(z, labels, absent, gamma)
        for key, cols, g in (("rank_seen", seen, SEEN), ("rank_absent", absent, ABSENT)):
            rank = np.full(n, c, dtype=np.int64)
            rows = group[labels] == g
            if rows.any():
                rank[rows] = label_rank(z[rows], labels[rows], absent, 0.0, columns=cols)
            out[key] = rank
    return out


# ----------------------------------------------------------------------------- torch (GPU)


def scan_torch(t: Any, group: np.ndarray, labels: np.ndarray | None, gamma: float):
    """:func:`scan` for a torch tensor, computed on its device (CUDA: no copy of the N × C
    logits to the host; only (N,) results come back). Same results as :func:`scan`.

    Ties: ``torch.max(dim=1)`` returns the first maximal index; a group whose values are all
    -inf in a row gets the group's first column, as ``numpy.argmax`` over the group does.
    """
    import torch

    dev = t.device
    codes = torch.as_tensor(group, device=dev)
    first = _first_of(group)
    neg = torch.tensor(-np.inf, dtype=t.dtype, device=dev)

    def best(mask: Any, g_first: int) -> tuple[Any, Any]:
        values, index = torch.where(mask, t, neg).max(dim=1)
        return values, torch.where(values == -np.inf, g_first, index)

    m_seen, i_seen = best(codes == SEEN, int(first[SEEN]))
    m_abs, i_abs = best(codes == ABSENT, int(first[ABSENT]))
    m_other, i_other = best(codes != ABSENT, int(np.flatnonzero(group != ABSENT)[0]))
    out = {
        "gap": (m_other.double() - m_abs.double()).cpu().numpy(),
        "pred_other": i_other.cpu().numpy(),
        "pred_absent": i_abs.cpu().numpy(),
        "pred_seen": i_seen.cpu().numpy(),
        "lo": t.amin(dim=1).cpu().numpy(),
        "hi": t.amax(dim=1).cpu().numpy(),
        "nan": t.isnan().any(dim=1).cpu().numpy(),
    }
    if labels is not None:
        y = torch.as_tensor(labels, device=dev)
        out["rank"] = _rank_torch(t, codes, y, gamma, None).cpu().numpy()
        c = t.shape[1]
        for key, g in (("rank_seen", SEEN), ("rank_absent", ABSENT)):
            rank = _rank_torch(t, codes, y, 0.0, g)
            out[key] = torch.where(codes[y] == g, rank, c).cpu().numpy()
    return out


def _rank_torch(t: Any, codes: Any, y: Any, gamma: float, only: int | None, block: int = 4096):
    """Columns beating each label under γ (the rule of :func:`label_rank`); with
    ``only``, among the columns of that group alone (γ plays no part within a group)."""
    import torch

    n, c = t.shape
    col = torch.arange(c, device=t.device)
    is_abs = codes == ABSENT
    # float64 tensors, not Python floats: torch.where on two Python floats makes a float32
    # tensor, and γ rounded to float32 (0.1 → 0.10000000149) ranks a difference lying between
    # the two otherwise than the numpy and numba paths do
    g = torch.tensor(gamma, dtype=torch.float64, device=t.device)
    zero = torch.zeros((), dtype=torch.float64, device=t.device)
    ranks = []
    for start in range(0, n, block):
        z = t[start : start + block].double()
        yb = y[start : start + block]
        zy = z.gather(1, yb[:, None])
        d = z - zy
        y_abs = is_abs[yb][:, None]
        c_abs = is_abs[None, :]
        lower = col[None, :] < yb[:, None]
        same = c_abs == y_abs
        thr = torch.where(same, zero, torch.where(c_abs, -g, g))
        tie = torch.where(same, lower, ~c_abs)
        d = torch.where(d.isnan(), thr, d)
        beats = (d > thr) | ((d == thr) & tie)
        if only is not None:
            beats &= (codes == only)[None, :]
        ranks.append(beats.sum(dim=1))
    return torch.cat(ranks)
