"""sample_weight= and average="macro" in accuracy_report, the curve, AUSUC, NCM and the probability
report: against brute force (tests/brute.py), and the invariances — weights of ones change
nothing, integer weights are repeated rows, macro is the mean of per-class accuracies worked by
hand, a permutation of the class ids changes nothing — and bad input named."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.brute as brute
from calib.metrics import accuracy_report, ausuc, ncm_report, probability_report, seen_absent_curve
from calib.metrics.curve import curve_point
from tests.metrics.test_probability import brute_probabilities

SETTINGS = settings(deadline=None, max_examples=60)
TOL = 1e-12
KEYS = brute.KEYS


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def same(a: float, b: float, tol: float = TOL) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def assert_same(got: dict, want: dict, keys=KEYS, tol: float = TOL) -> None:
    for key in keys:
        assert same(got[key], want[key], tol), f"{key}: {got[key]} != {want[key]}"


@st.composite
def weighted_problems(draw, with_rest=True):
    """A tiny problem and integer weights 0-4 (not all 0), so repeated rows can stand in."""
    problem = draw(brute.problems(with_rest=with_rest))
    n = problem.labels.size
    weights = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n).filter(any))
    return problem, np.array(weights, dtype=np.float64)


def repeated(problem, weights):
    """The problem with row i repeated weights[i] times."""
    k = weights.astype(np.int64)
    return np.repeat(problem.logits, k, axis=0), np.repeat(problem.labels, k)


# ---------------------------------------------------------------------------------------------
# brute force


@SETTINGS
@given(data=weighted_problems(), average=st.sampled_from(["micro", "macro"]))
def test_accuracy_report_matches_brute_force(data, average):
    problem, w = data
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    for gamma in brute.sweep_gammas(z, u):
        got = quiet(accuracy_report, z, y, s, u, gamma, (1, 2), sample_weight=w, average=average)
        want = brute.weighted_accuracies(z, y, s, u, gamma, 1, w, average)
        assert_same(got, want)
        want2 = brute.weighted_accuracies(z, y, s, u, gamma, 2, w, average)
        assert_same({k: got[k + "_top2"] for k in KEYS}, want2)


@SETTINGS
@given(data=weighted_problems(), average=st.sampled_from(["micro", "macro"]))
def test_curve_points_and_midpoints_match_brute_force(data, average):
    problem, w = data
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    curve = quiet(seen_absent_curve, z, y, s, u, sample_weight=w, average=average)
    plain = quiet(seen_absent_curve, z, y, s, u)
    np.testing.assert_array_equal(curve.gamma, plain.gamma)  # the same breakpoints
    g = np.asarray(curve.gamma)
    finite = g[np.isfinite(g)]
    probes = [*g[:-1], (finite.max() + 1.0) if finite.size else 0.0]
    probes += [(a + b) / 2 for a, b in zip(finite[:-1], finite[1:], strict=True)]
    for gamma in probes:
        k = min(int(np.searchsorted(g, gamma, side="left")), g.size - 1)
        want = brute.weighted_accuracies(z, y, s, u, gamma, 1, w, average)
        for key in ("acc_seen", "acc_absent", "acc_all"):
            assert same(float(getattr(curve, key)[k]), want[key]), (key, gamma)


@SETTINGS
@given(data=weighted_problems(with_rest=False), average=st.sampled_from(["micro", "macro"]))
def test_ausuc_is_the_weighted_rank_statistic(data, average):
    problem, w = data
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    area = quiet(ausuc, z, y, s, u, sample_weight=w, average=average)
    pair_weights = w if average == "micro" else brute.class_balanced_weights(y, w)
    w_seen = sum(v for v, c in zip(pair_weights, y, strict=True) if c in s)
    w_absent = sum(v for v, c in zip(pair_weights, y, strict=True) if c in u)
    if w_seen == 0 or w_absent == 0:
        assert math.isnan(area)
    else:
        assert same(area, brute.weighted_ausuc_rank_statistic(z, y, s, u, pair_weights))


# ---------------------------------------------------------------------------------------------
# invariances


@SETTINGS
@given(
    problem=brute.problems(), gamma=st.integers(-4, 4), average=st.sampled_from(["micro", "macro"])
)
def test_weights_of_ones_are_the_unweighted_numbers(problem, gamma, average):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    ones = np.ones(y.size)
    assert_same(
        quiet(accuracy_report, z, y, s, u, gamma, sample_weight=ones, average=average),
        quiet(accuracy_report, z, y, s, u, gamma, average=average),
    )
    a = quiet(seen_absent_curve, z, y, s, u, sample_weight=ones)
    b = quiet(seen_absent_curve, z, y, s, u)
    for key in ("gamma", "acc_seen", "acc_absent", "acc_all"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=0, atol=TOL)
    assert same(a.ausuc, b.ausuc)


@SETTINGS
@given(data=weighted_problems(), gamma=st.integers(-4, 4))
def test_integer_weights_are_repeated_rows(data, gamma):
    problem, w = data
    s, u = problem.seen, problem.absent
    z, y = problem.logits, problem.labels
    zr, yr = repeated(problem, w)
    assert_same(
        quiet(accuracy_report, z, y, s, u, gamma, (1, 2), sample_weight=w),
        quiet(accuracy_report, zr, yr, s, u, gamma, (1, 2)),
        keys=KEYS + tuple(k + "_top2" for k in KEYS),
    )
    for average in ("micro", "macro"):  # macro: the classes of weight 0 are gone in both
        weighted = quiet(seen_absent_curve, z, y, s, u, sample_weight=w, average=average)
        rows = quiet(seen_absent_curve, zr, yr, s, u, average=average)
        for gamma_k in np.asarray(rows.gamma):
            for a, b in zip(
                curve_point(weighted, gamma_k), curve_point(rows, gamma_k), strict=True
            ):
                assert same(a, b)
        assert same(weighted.ausuc, rows.ausuc)


def test_macro_is_the_mean_of_per_class_accuracies_by_hand():
    # S = {0, 1}, U = {2, 3}; γ = 0. Per class (label: hits / samples):
    #   0: 3/4 right   1: 1/1 right   2: 0/2 right   3: 1/3 right
    z = np.array(
        [
            [5, 0, 0, 0],  # y=0 right
            [5, 0, 0, 0],  # y=0 right
            [5, 0, 0, 0],  # y=0 right
            [0, 5, 0, 0],  # y=0 wrong (1)
            [0, 5, 0, 0],  # y=1 right
            [5, 0, 1, 0],  # y=2 wrong (0)
            [0, 0, 0, 5],  # y=2 wrong (3)
            [0, 0, 0, 5],  # y=3 right
            [5, 0, 0, 1],  # y=3 wrong (0)
            [0, 5, 1, 1],  # y=3 wrong (1)
        ],
        dtype=float,
    )
    y = np.array([0, 0, 0, 0, 1, 2, 2, 3, 3, 3])
    r = accuracy_report(z, y, [0, 1], [2, 3], topk=(1,), average="macro")
    assert r["acc_seen"] == pytest.approx((3 / 4 + 1) / 2, abs=TOL)
    assert r["acc_absent"] == pytest.approx((0 + 1 / 3) / 2, abs=TOL)
    assert r["acc_all"] == pytest.approx((3 / 4 + 1 + 0 + 1 / 3) / 4, abs=TOL)
    micro = accuracy_report(z, y, [0, 1], [2, 3], topk=(1,))
    assert micro["acc_all"] == pytest.approx(5 / 10, abs=TOL)  # not the same number
    # with weights: class 0's wrong sample weighs 3, so class 0 is 3/6 right
    w = np.array([1, 1, 1, 3, 1, 1, 1, 1, 1, 1], dtype=float)
    rw = accuracy_report(z, y, [0, 1], [2, 3], topk=(1,), sample_weight=w, average="macro")
    assert rw["acc_seen"] == pytest.approx((3 / 6 + 1) / 2, abs=TOL)
    curve = seen_absent_curve(z, y, [0, 1], [2, 3], average="macro")
    assert curve_point(curve, 0.0) == pytest.approx((r["acc_seen"], r["acc_absent"]), abs=TOL)


@SETTINGS
@given(data=st.data(), gamma=st.integers(-4, 4), average=st.sampled_from(["micro", "macro"]))
def test_a_permutation_of_class_ids_changes_nothing(data, gamma, average):
    problem, w = data.draw(weighted_problems())
    n, c = problem.logits.shape
    # rows of distinct values: the only index-dependent rule (ties within a group) never applies
    z = np.array([data.draw(st.permutations(range(c))) for _ in range(n)], dtype=float)
    perm = np.array(data.draw(st.permutations(range(c))))
    new = np.argsort(perm)
    args = (problem.labels, problem.seen, problem.absent)
    new_args = (new[problem.labels], new[problem.seen], new[problem.absent])
    kw = {"sample_weight": w, "average": average}
    assert_same(
        quiet(accuracy_report, z[:, perm], *new_args, gamma, **kw),
        quiet(accuracy_report, z, *args, gamma, **kw),
    )
    a = quiet(seen_absent_curve, z[:, perm], *new_args, **kw)
    b = quiet(seen_absent_curve, z, *args, **kw)
    np.testing.assert_array_equal(a.gamma, b.gamma)
    np.testing.assert_allclose(a.acc_all, b.acc_all, rtol=0, atol=TOL)
    assert same(a.ausuc, b.ausuc)


@SETTINGS
@given(data=weighted_problems(), average=st.sampled_from(["micro", "macro"]))
def test_report_at_each_curve_gamma_is_the_curve_point(data, average):
    problem, w = data
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    curve = quiet(seen_absent_curve, z, y, s, u, sample_weight=w, average=average)
    for k, gamma in enumerate(np.asarray(curve.gamma)):
        r = quiet(accuracy_report, z, y, s, u, gamma, (1,), sample_weight=w, average=average)
        for key in ("acc_seen", "acc_absent", "acc_all"):
            assert same(r[key], float(getattr(curve, key)[k]))


def test_torch_weights_and_logits_give_the_numpy_numbers():
    rng = np.random.default_rng(0)
    z, y, w = rng.normal(size=(60, 7)), rng.integers(0, 7, 60), rng.random(60)
    want = accuracy_report(z, y, [0, 1, 2], sample_weight=w, average="macro")
    got = accuracy_report(
        torch.from_numpy(z), torch.from_numpy(y), [0, 1, 2], sample_weight=torch.from_numpy(w),
        average="macro",
    )  # fmt: skip
    assert_same(got, want)
    a = seen_absent_curve(torch.from_numpy(z), y, [0, 1, 2], sample_weight=w)
    b = seen_absent_curve(z, y, [0, 1, 2], sample_weight=w)
    assert isinstance(a.acc_all, torch.Tensor)
    np.testing.assert_allclose(a.acc_all.numpy(), b.acc_all, rtol=0, atol=TOL)


def test_a_group_of_weight_zero_is_nan_with_a_warning():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(30, 6)), np.arange(30) % 6
    w = np.where(np.isin(y, [3, 4, 5]), 0.0, 1.0)
    with pytest.warns(
        RuntimeWarning, match="sample_weight is 0 for every test sample of the absent"
    ):
        r = accuracy_report(z, y, [0, 1, 2], sample_weight=w)
    assert math.isnan(r["acc_absent"]) and math.isnan(r["hmean"])
    assert not math.isnan(r["acc_seen"])
    with pytest.warns(
        RuntimeWarning, match="sample_weight is 0 for every test sample of the absent"
    ):
        curve = seen_absent_curve(z, y, [0, 1, 2], sample_weight=w)
    assert math.isnan(curve.ausuc)
    with pytest.warns(
        RuntimeWarning, match="sample_weight is 0 for every test sample of the absent"
    ):
        p = probability_report(z, y, [0, 1, 2], sample_weight=w)
    assert math.isnan(p["ece_absent"]) and not math.isnan(p["ece_seen"])


# ---------------------------------------------------------------------------------------------
# bad input, named


Z = np.random.default_rng(2).normal(size=(5, 4))
Y = np.array([0, 1, 2, 3, 0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sample_weight": np.ones(4)}, "sample_weight has 4 entries but logits have 5 rows"),
        ({"sample_weight": np.ones((5, 1))}, "sample_weight must be 1-D"),
        ({"sample_weight": [1, 1, np.nan, 1, 1]}, "sample_weight has 1 non-finite value.*sample 2"),
        ({"sample_weight": [1, 1, 1, np.inf, 1]}, "sample_weight has 1 non-finite value.*sample 3"),
        ({"sample_weight": [1, -1, 1, 1, 1]}, "sample_weight must be ≥ 0, got -1.0 at sample 1"),
        ({"sample_weight": np.zeros(5)}, "sample_weight is 0 for every sample"),
        ({"sample_weight": np.ones(5, dtype=bool)}, "sample_weight must hold real numbers"),
        ({"sample_weight": ["a"] * 5}, "sample_weight must hold real numbers"),
        ({"average": "mean"}, "average must be one of \\('micro', 'macro'\\), got 'mean'"),
        ({"average": None}, "average must be one of .*got None"),
    ],
)
def test_bad_weights_and_averages_are_named(kwargs, match):
    for fn in (seen_absent_curve, ausuc, probability_report):
        with pytest.raises(ValueError, match=match):
            fn(Z, Y, [0, 1], **kwargs)
    with pytest.raises(ValueError, match=match):
        accuracy_report(Z, Y, [0, 1], topk=(1,), **kwargs)


def test_ncm_names_the_test_features():
    f = np.random.default_rng(3).normal(size=(8, 3))
    y = np.arange(8) % 4
    with pytest.raises(ValueError, match="sample_weight has 3 entries but test_features have 8"):
        ncm_report(f, y, f, y, [0, 1], sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="average must be one of"):
        ncm_report(f, y, f, y, [0, 1], average="balanced")


# ---------------------------------------------------------------------------------------------
# NCM and the probability report


def test_ncm_weighted_is_the_report_of_its_scores_and_repeated_rows():
    rng = np.random.default_rng(4)
    train_f, train_y = rng.normal(size=(40, 5)), np.arange(40) % 6
    test_f, test_y = rng.normal(size=(25, 5)), rng.integers(0, 6, 25)
    w = rng.integers(0, 4, 25).astype(float)
    w[0] = 1.0
    k = w.astype(int)
    for average in ("micro", "macro"):
        got = quiet(
            ncm_report, train_f, train_y, test_f, test_y, [0, 1, 2], sample_weight=w,
            average=average,
        )  # fmt: skip
        rows = quiet(
            ncm_report, train_f, train_y, np.repeat(test_f, k, 0), np.repeat(test_y, k),
            [0, 1, 2], average=average,
        )  # fmt: skip
        assert_same(got, rows)


def brute_weighted_bins(conf, weights, n_bins, adaptive):
    """Edges by exact rational cumulative weights (a weight of k = k copies), then members."""
    if adaptive and conf:
        order = sorted(range(len(conf)), key=lambda i: conf[i])
        total = sum(Fraction(w) for w in weights)
        uppers = []
        for m in range(1, n_bins):
            running = Fraction(0)
            for i in order:
                running += Fraction(weights[i])
                if running >= total * m / n_bins:
                    uppers.append(conf[i])
                    break
        edges = [0.0, *uppers, 1.0]
    else:
        edges = [m / n_bins for m in range(n_bins + 1)]
    members = [[] for _ in range(n_bins)]
    for i, c in enumerate(conf):
        for m in range(n_bins):
            lo = -math.inf if m == 0 else edges[m]
            if lo < c <= edges[m + 1] or (m == n_bins - 1 and c > edges[m]):
                members[m].append(i)
                break
    return members


def brute_weighted_report(logits, labels, seen, absent, gamma, n_bins, weights):
    log_p, preds = brute_probabilities(logits, absent, gamma, 1.0)
    out = {}
    for suffix, member in (("", lambda v: True), ("_seen", seen.__contains__)):
        rows = [i for i, v in enumerate(labels) if member(v)]
        conf = [math.exp(log_p[i][preds[i]]) for i in rows]
        correct = [preds[i] == labels[i] for i in rows]
        w = [weights[i] for i in rows]
        total = sum(w)
        for key, adaptive in (("ece", False), ("ece_adaptive", True)):
            ece = 0.0
            for idx in brute_weighted_bins(conf, w, n_bins, adaptive):
                hits = sum(w[j] * correct[j] for j in idx)
                confidence = sum(w[j] * conf[j] for j in idx)
                ece += abs(hits - confidence) / total
            out[key + suffix] = ece
        out["nll" + suffix] = sum(-w[j] * log_p[i][labels[i]] for j, i in enumerate(rows)) / total
        out["confidence" + suffix] = sum(w[j] * conf[j] for j in range(len(rows))) / total
    return out


@pytest.mark.parametrize("seed,gamma,n_bins", [(0, 0.0, 15), (1, 1.5, 7), (2, -0.5, 4)])
def test_probability_report_weighted_matches_brute_force(seed, gamma, n_bins):
    rng = np.random.default_rng(seed)
    z, y = rng.normal(size=(90, 6)) * 3, rng.integers(0, 6, 90)
    w = rng.integers(0, 5, 90).astype(float)
    seen, absent = [0, 1, 2], [3, 4, 5]
    got = probability_report(z, y, seen, absent, gamma, 1.0, n_bins, sample_weight=w)
    want = brute_weighted_report(z, y.tolist(), seen, absent, gamma, n_bins, w.tolist())
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # macro: the class-balanced weights 1 / n_class
    macro = probability_report(z, y, seen, absent, gamma, 1.0, n_bins, average="macro")
    balanced = brute.class_balanced_weights(y.tolist())
    want = brute_weighted_report(z, y.tolist(), seen, absent, gamma, n_bins, balanced)
    for key in ("ece", "nll", "confidence", "ece_seen", "nll_seen"):
        assert macro[key] == pytest.approx(want[key], abs=1e-12), key
    # macro NLL is the mean over the classes of the per-class mean NLL
    log_p, _ = brute_probabilities(z, absent, gamma, 1.0)
    per_class = [
        np.mean([-log_p[i][c] for i in range(90) if y[i] == c]) for c in sorted(set(y.tolist()))
    ]
    assert macro["nll"] == pytest.approx(np.mean(per_class), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probability_report_integer_weights_are_repeated_rows(seed):
    rng = np.random.default_rng(seed)
    z, y = rng.normal(size=(70, 6)) * 2, rng.integers(0, 6, 70)
    w = rng.integers(0, 4, 70)
    w[0] = 1
    got = probability_report(z, y, [0, 1, 2], gamma=0.5, sample_weight=w.astype(float))
    rows = probability_report(np.repeat(z, w, 0), np.repeat(y, w), [0, 1, 2], gamma=0.5)
    for key in ("ece", "ece_adaptive", "nll", "brier", "confidence", "ece_seen", "nll_absent"):
        assert got[key] == pytest.approx(rows[key], abs=1e-12), key
    ones = probability_report(z, y, [0, 1, 2], gamma=0.5, sample_weight=np.ones(70))
    plain = probability_report(z, y, [0, 1, 2], gamma=0.5)
    for key in ("ece", "ece_adaptive", "nll", "brier", "confidence", "ece_absent"):
        assert ones[key] == pytest.approx(plain[key], abs=1e-12), key


def test_infinite_gaps_weigh_as_in_the_unweighted_curve():
    # rows whose U (or non-U) columns are all -inf: gaps of +inf (never moves) and -inf (moved
    # from the start); integer weights as repeated rows
    rng = np.random.default_rng(5)
    z = rng.integers(-3, 3, size=(40, 6)).astype(float)
    z[:5, 3:] = -np.inf
    z[5:10, :3] = -np.inf
    y = rng.integers(0, 6, size=40)
    w = rng.integers(0, 3, size=40)
    w[:10] = 2
    for average in ("micro", "macro"):
        weighted = quiet(seen_absent_curve, z, y, [0, 1, 2], sample_weight=w, average=average)
        rows = quiet(
            seen_absent_curve, np.repeat(z, w, 0), np.repeat(y, w), [0, 1, 2], average=average
        )
        for gamma in np.asarray(rows.gamma):
            np.testing.assert_allclose(
                curve_point(weighted, gamma), curve_point(rows, gamma), rtol=0, atol=TOL
            )
        assert same(weighted.ausuc, rows.ausuc)
        g = np.asarray(weighted.gamma)
        assert np.isfinite(g[:-1]).all() and g[-1] == np.inf
    # no finite gap at all: the curve is its one point at +inf
    z_inf, w_inf = z[:10], w[:10]
    for average in ("micro", "macro"):
        weighted = quiet(
            seen_absent_curve, z_inf, y[:10], [0, 1, 2], sample_weight=w_inf, average=average
        )
        rows = quiet(
            seen_absent_curve,
            np.repeat(z_inf, w_inf, 0),
            np.repeat(y[:10], w_inf),
            [0, 1, 2],
            average=average,
        )
        assert len(weighted) == len(rows) == 1
        np.testing.assert_allclose(
            curve_point(weighted, np.inf), curve_point(rows, np.inf), rtol=0, atol=TOL
        )


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("group", ["all", "seen", "absent"])
def test_weighted_diagram_is_the_report_and_repeated_rows(adaptive, group):
    from calib.metrics.probability import reliability_diagram

    rng = np.random.default_rng(7)
    z, y = rng.normal(size=(80, 6)) * 2, rng.integers(0, 6, 80)
    w = rng.integers(0, 4, 80)
    w[:2] = 1
    args = (z, y, [0, 1, 2], None, 0.5, 1.0, 10, adaptive, group)
    weighted = reliability_diagram(*args, sample_weight=w.astype(float))
    rows = reliability_diagram(np.repeat(z, w, 0), np.repeat(y, w), *args[2:])
    np.testing.assert_allclose(weighted.edges, rows.edges, rtol=0, atol=1e-15)
    np.testing.assert_allclose(weighted.weight, rows.count, rtol=0, atol=1e-12)
    np.testing.assert_allclose(weighted.accuracy, rows.accuracy, rtol=0, atol=1e-12)
    np.testing.assert_allclose(weighted.confidence, rows.confidence, rtol=0, atol=1e-12)
    report = probability_report(*args[:7], sample_weight=w.astype(float), average="micro")
    key = ("ece_adaptive" if adaptive else "ece") + ("" if group == "all" else f"_{group}")
    assert weighted.ece == pytest.approx(report[key], abs=1e-12)
    macro = reliability_diagram(*args, average="macro")
    report = probability_report(*args[:7], average="macro")
    assert macro.ece == pytest.approx(report[key], abs=1e-12)


def test_probability_report_macro_ignores_a_permutation_of_class_ids():
    rng = np.random.default_rng(8)
    z, y = rng.normal(size=(60, 6)) * 2, rng.integers(0, 6, 60)
    w = rng.random(60)
    perm = rng.permutation(6)  # new column j holds old column perm[j]
    new = np.argsort(perm)
    seen = [0, 1, 2]
    a = probability_report(z, y, seen, gamma=0.5, sample_weight=w, average="macro")
    b = probability_report(
        z[:, perm], new[y], new[seen], gamma=0.5, sample_weight=w, average="macro"
    )
    for key in ("ece", "nll", "brier", "confidence", "nll_seen", "nll_absent", "ece_absent"):
        assert a[key] == pytest.approx(b[key], abs=1e-12), key
