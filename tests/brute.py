"""Brute-force references for the metrics and the curve, written plainly and independently.

Nothing here imports calib's decision code: predictions come from comparing the shifted
logits z_c + γ·1(c ∈ U) of one sample, one column after the other, with the tie rule
spelled out (between an absent and a non-absent column the non-absent one wins; within a
group the lower index wins). Python loops, tiny inputs, finite γ only (z + inf ties every
absent column, so the tests use a γ above every gap instead).

Use integer-valued logits with integer or half-integer γ: then z_c + γ is exact and the
shifted comparison here and the gap comparison in calib must agree exactly.

The second half holds hypothesis strategies that draw such tiny problems.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

KEYS = ("acc_all", "acc_seen", "acc_absent", "acc_seen_seen", "acc_absent_absent", "hmean")


def _beats(a_value, a_col, a_absent, b_value, b_col, b_absent) -> bool:
    """Does column a (shifted value a_value) rank above column b?"""
    if a_value != b_value:
        return a_value > b_value
    if a_absent != b_absent:
        return not a_absent  # a tie between the groups goes to the non-absent column
    return a_col < b_col


def shifted_row(row, absent, gamma):
    return [float(v) + (gamma if c in absent else 0.0) for c, v in enumerate(row)]


def predict(logits, absent, gamma, columns=None):
    """Predicted column of every sample, by a plain scan over ``columns`` (default all)."""
    absent = set(int(c) for c in absent)
    out = []
    for row in np.asarray(logits):
        values = shifted_row(row, absent, gamma)
        cols = range(len(row)) if columns is None else sorted(int(c) for c in columns)
        best = None
        for c in cols:
            if best is None or _beats(
                values[c], c, c in absent, values[best], best, best in absent
            ):
                best = c
        out.append(best)
    return out


def rank(logits, labels, absent, gamma, columns=None):
    """How many of ``columns`` (default all) beat each sample's label under bias γ."""
    absent = set(int(c) for c in absent)
    out = []
    for row, y in zip(np.asarray(logits), labels, strict=True):
        y = int(y)
        values = shifted_row(row, absent, gamma)
        cols = range(len(row)) if columns is None else [int(c) for c in columns]
        out.append(
            sum(
                1
                for c in cols
                if c != y and _beats(values[c], c, c in absent, values[y], y, y in absent)
            )
        )
    return out


def _mean(flags):
    return sum(flags) / len(flags) if flags else float("nan")


def _hmean(a, b):
    if a != a or b != b:
        return float("nan")
    return 0.0 if a == 0 or b == 0 else 2 * a * b / (a + b)


def accuracies(logits, labels, seen, absent, gamma, k=1):
    """The report keys (top-k) by brute force; NaN for a group with no sample."""
    seen, absent = [int(c) for c in seen], [int(c) for c in absent]
    labels = [int(v) for v in labels]
    r_all = rank(logits, labels, absent, gamma)
    r_ss = rank(logits, labels, absent, gamma, columns=seen)
    r_uu = rank(logits, labels, absent, gamma, columns=absent)
    is_seen = [y in seen for y in labels]
    is_absent = [y in absent for y in labels]
    acc_seen = _mean([r < k for r, s in zip(r_all, is_seen, strict=True) if s])
    acc_absent = _mean([r < k for r, a in zip(r_all, is_absent, strict=True) if a])
    return {
        "acc_all": _mean([r < k for r in r_all]),
        "acc_seen": acc_seen,
        "acc_absent": acc_absent,
        "acc_seen_seen": _mean([r < k for r, s in zip(r_ss, is_seen, strict=True) if s]),
        "acc_absent_absent": _mean([r < k for r, a in zip(r_uu, is_absent, strict=True) if a]),
        "hmean": _hmean(acc_seen, acc_absent),
    }


def gaps(logits, absent):
    """Per sample: max over non-absent columns − max over absent columns."""
    absent = set(int(c) for c in absent)
    return [
        max(float(v) for c, v in enumerate(row) if c not in absent)
        - max(float(v) for c, v in enumerate(row) if c in absent)
        for row in np.asarray(logits)
    ]


def ausuc_rank_statistic(logits, labels, seen, absent):
    """AUSUC as P(gap of a right seen sample > gap of a right absent sample), ties one half.

    "Right" = predicted correctly by its own group's best column (so it is right on one side of
    its gap); the sum is normalised by all seen × all absent samples.
    """
    seen, absent = [int(c) for c in seen], [int(c) for c in absent]
    g = gaps(logits, absent)
    other = [c for c in range(np.asarray(logits).shape[1]) if c not in absent]
    best_other = predict(logits, absent, 0.0, columns=other)
    best_absent = predict(logits, absent, 0.0, columns=absent)
    n_seen = sum(int(y) in seen for y in labels)
    n_absent = sum(int(y) in absent for y in labels)
    right_seen = [g[i] for i, y in enumerate(labels) if int(y) in seen and best_other[i] == int(y)]
    right_absent = [
        g[i] for i, y in enumerate(labels) if int(y) in absent and best_absent[i] == int(y)
    ]
    total = 0.0
    for gs in right_seen:
        for ga in right_absent:
            total += 1.0 if gs > ga else 0.5 if gs == ga else 0.0
    return total / (n_seen * n_absent)


def sweep_gammas(logits, absent):
    """Every breakpoint, every midpoint, and one γ below and one above them all, ascending."""
    b = sorted(set(gaps(logits, absent)))
    mids = [(lo + hi) / 2 for lo, hi in zip(b[:-1], b[1:], strict=True)]
    return sorted(b + mids + [b[0] - 1.0, b[-1] + 1.0])


def ausuc_dense_sweep(logits, labels, seen, absent):
    """AUSUC by trapezoids over a dense brute sweep of γ (see :func:`sweep_gammas`)."""
    points = [accuracies(logits, labels, seen, absent, t) for t in sweep_gammas(logits, absent)]
    area = 0.0
    for p, q in zip(points[:-1], points[1:], strict=True):
        area += (p["acc_seen"] - q["acc_seen"]) * (p["acc_absent"] + q["acc_absent"]) / 2
    return area


# ---------------------------------------------------------------------------------------------
# weighted and class-balanced (macro) accuracies, by hand: no effective-weight trick here


def _weighted_mean(pairs):
    """Σ w·x / Σ w over (x, w) pairs; NaN when the weights sum to 0 or there is none."""
    total = sum(w for _, w in pairs)
    return sum(x * w for x, w in pairs) / total if total else float("nan")


def group_accuracy(hits, labels, members, weights=None, average="micro"):
    """Accuracy over the samples i with ``members(labels[i])``: the weighted share of hits
    (micro), or the mean over the classes present of each class's weighted share (macro;
    a class whose weights are all 0 is not present)."""
    n = len(labels)
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    rows = [i for i in range(n) if members(int(labels[i]))]
    if average == "micro":
        return _weighted_mean([(float(hits[i]), weights[i]) for i in rows])
    per_class = []
    for c in sorted({int(labels[i]) for i in rows}):
        acc = _weighted_mean([(float(hits[i]), weights[i]) for i in rows if int(labels[i]) == c])
        if acc == acc:  # a class of weight 0 has no accuracy
            per_class.append(acc)
    return sum(per_class) / len(per_class) if per_class else float("nan")


def weighted_accuracies(logits, labels, seen, absent, gamma, k=1, weights=None, average="micro"):
    """:func:`accuracies` with sample weights and/or the class-balanced (macro) average."""
    seen, absent = {int(c) for c in seen}, {int(c) for c in absent}
    labels = [int(v) for v in labels]
    r_all = rank(logits, labels, absent, gamma)
    r_ss = rank(logits, labels, absent, gamma, columns=sorted(seen))
    r_uu = rank(logits, labels, absent, gamma, columns=sorted(absent))

    def acc(ranks, members):
        return group_accuracy([r < k for r in ranks], labels, members, weights, average)

    acc_seen = acc(r_all, lambda y: y in seen)
    acc_absent = acc(r_all, lambda y: y in absent)
    return {
        "acc_all": acc(r_all, lambda y: True),
        "acc_seen": acc_seen,
        "acc_absent": acc_absent,
        "acc_seen_seen": acc(r_ss, lambda y: y in seen),
        "acc_absent_absent": acc(r_uu, lambda y: y in absent),
        "hmean": _hmean(acc_seen, acc_absent),
    }


def class_balanced_weights(labels, weights=None):
    """Per-sample weight w_i / (Σ of the weights of its class): each class weighs 1 in total."""
    weights = [1.0] * len(labels) if weights is None else [float(w) for w in weights]
    totals = {}
    for y, w in zip(labels, weights, strict=True):
        totals[int(y)] = totals.get(int(y), 0.0) + w
    return [
        w / totals[int(y)] if totals[int(y)] else 0.0 for y, w in zip(labels, weights, strict=True)
    ]


def weighted_ausuc_rank_statistic(logits, labels, seen, absent, weights):
    """:func:`ausuc_rank_statistic` where a pair of samples counts the product of their
    weights, normalised by the product of the two groups' total weights."""
    seen, absent = [int(c) for c in seen], [int(c) for c in absent]
    g = gaps(logits, absent)
    other = [c for c in range(np.asarray(logits).shape[1]) if c not in absent]
    best_other = predict(logits, absent, 0.0, columns=other)
    best_absent = predict(logits, absent, 0.0, columns=absent)
    w = [float(v) for v in weights]
    w_seen = sum(w[i] for i, y in enumerate(labels) if int(y) in seen)
    w_absent = sum(w[i] for i, y in enumerate(labels) if int(y) in absent)
    right_seen = [i for i, y in enumerate(labels) if int(y) in seen and best_other[i] == int(y)]
    right_absent = [
        i for i, y in enumerate(labels) if int(y) in absent and best_absent[i] == int(y)
    ]
    total = 0.0
    for i in right_seen:
        for j in right_absent:
            total += w[i] * w[j] * (1.0 if g[i] > g[j] else 0.5 if g[i] == g[j] else 0.0)
    return total / (w_seen * w_absent)


# ---------------------------------------------------------------------------------------------
# hypothesis strategies: tiny problems with integer logits, so that ties happen often


@dataclass
class Problem:
    logits: np.ndarray  # (N, C) float64 holding small integers
    labels: np.ndarray  # (N,) int64
    seen: list[int]
    absent: list[int]  # explicit U (the complement of S unless the problem has R columns)


@st.composite
def problems(draw, max_n=10, max_c=7, with_rest=True, low=-3, high=3):
    c = draw(st.integers(2, max_c))
    n = draw(st.integers(1, max_n))
    cols = draw(st.permutations(range(c)))
    n_seen = draw(st.integers(1, c - 1))
    n_absent = draw(st.integers(1, c - n_seen)) if with_rest else c - n_seen
    seen = sorted(cols[:n_seen])
    absent = sorted(cols[n_seen : n_seen + n_absent])
    values = draw(st.lists(st.integers(low, high), min_size=n * c, max_size=n * c))
    labels = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return Problem(
        logits=np.array(values, dtype=np.float64).reshape(n, c),
        labels=np.array(labels, dtype=np.int64),
        seen=seen,
        absent=absent,
    )
