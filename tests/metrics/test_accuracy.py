"""accuracy_report: hand-worked examples for every key, the brute-force reference, the tie rule,
invariances, torch and dtypes, and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import calib
import tests.brute as brute
from calib.metrics import accuracy_report, harmonic_mean
from calib.rules.gaps import compute_gaps
from calib.rules.kernels import label_rank

SETTINGS = settings(deadline=None, max_examples=100)


def assert_report(got: dict, want: dict, tol: float = 1e-12) -> None:
    """Every key of ``want`` matches ``got`` (NaN matches NaN)."""
    for key, w in want.items():
        g = got[key]
        if isinstance(w, float) and math.isnan(w):
            assert math.isnan(g), f"{key}: {g} != NaN"
        else:
            assert g == pytest.approx(w, abs=tol), f"{key}: {g} != {w}"


def quiet_report(*args, **kwargs) -> dict:
    """accuracy_report with the no-sample RuntimeWarning silenced (random problems may lack a group)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return accuracy_report(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Hand-worked: 12 classes, S = columns 0-5, U = columns 6-11, three samples of each group.
# Ranks (how many columns beat the label) worked out per sample, at γ = 0:
#   s1 y=0 : 9 is the row max                                  rank 0, rank among S 0
#   s2 y=1 : S columns 8,9,7,6,5 > 3 and U column 6 (4 > 3)    rank 6, rank among S 5
#   s3 y=2 : S columns 7,8 > 6 and U columns 6,7,8 (9 > 6)     rank 5, rank among S 2
#   s4 y=6 : S column 0 (5 > 3) and U column 7 (4 > 3)         rank 2, rank among U 1
#   s5 y=11: 2 is the row max                                  rank 0, rank among U 0
#   s6 y=8 : S column 0 (7 > 5); 5 is the max of U             rank 1, rank among U 0
S12, U12 = list(range(6)), list(range(6, 12))
Z12 = np.array(
    [
        [9, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0],
        [8, 3, 9, 7, 6, 5, 4, 0, 0, 0, 0, 0],
        [1, 2, 6, 7, 8, 0, 9, 9, 9, 0, 0, 0],
        [5, 0, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 2],
        [7, 0, 0, 0, 0, 0, 0, 0, 5, 1, 1, 1],
    ],
    dtype=np.float64,
)
Y12 = np.array([0, 1, 2, 6, 11, 8])
COUNTS12 = {"n_samples": 6, "n_seen": 3, "n_absent": 3}


def test_hand_worked_gamma_zero_every_key():
    # top-1 hits: s1, s5.  top-5 hits (rank < 5): s1, s4, s5, s6.
    # restricted top-1: S/S s1 (ranks 0,5,2); U/U s5, s6 (ranks 1,0,0).
    # restricted top-5: S/S s1, s3; U/U all three.
    want = {
        "acc_all": 2 / 6,
        "acc_seen": 1 / 3,
        "acc_absent": 1 / 3,
        "acc_seen_seen": 1 / 3,
        "acc_absent_absent": 2 / 3,
        "hmean": 1 / 3,  # equal accuracies: their harmonic mean
        "acc_all_top5": 4 / 6,
        "acc_seen_top5": 1 / 3,
        "acc_absent_top5": 1.0,
        "acc_seen_seen_top5": 2 / 3,
        "acc_absent_absent_top5": 1.0,
        "hmean_top5": 0.5,  # 2 * (1/3) * 1 / (1/3 + 1)
        "gamma": 0.0,
        **COUNTS12,
    }
    got = accuracy_report(Z12, Y12, S12, U12)
    assert set(got) == set(want)
    assert_report(got, want)


def test_hand_worked_positive_gamma():
    # γ = 2.5 lifts U by 2.5: s4 and s6 are no longer beaten by S column 0 (gap 2 < 2.5),
    # s2 and s3 keep their U rivals (4 + 2.5 > 3, 9 + 2.5 > 6), and no other U column passes
    # an S label (2.5 > 3 fails for s2). Ranks 0, 6, 5, 1, 0, 0.
    want = {
        "acc_all": 3 / 6,  # s1, s5, s6
        "acc_seen": 1 / 3,
        "acc_absent": 2 / 3,
        "acc_seen_seen": 1 / 3,  # the restricted accuracies do not depend on γ
        "acc_absent_absent": 2 / 3,
        "hmean": 4 / 9,  # 2 * (1/3) * (2/3) / 1
        "acc_all_top5": 4 / 6,
        "acc_seen_top5": 1 / 3,
        "acc_absent_top5": 1.0,
        "hmean_top5": 0.5,
        "gamma": 2.5,
        **COUNTS12,
    }
    assert_report(accuracy_report(Z12, Y12, S12, U12, gamma=2.5), want)


def test_tie_between_groups_stays_on_the_non_absent_column():
    # at γ = 2 exactly, s4 and s6 tie with S column 0 (3 + 2 = 5, 5 + 2 = 7): S keeps them
    at_gap = accuracy_report(Z12, Y12, S12, U12, gamma=2.0)
    assert at_gap["acc_absent"] == pytest.approx(1 / 3)
    above = accuracy_report(Z12, Y12, S12, U12, gamma=float(np.nextafter(2.0, 3.0)))
    assert above["acc_absent"] == pytest.approx(2 / 3)
    # the same rule as the one prediction code (Gaps.predict); s4 goes to U column 7 (4 + 2 > 5)
    pred = compute_gaps(Z12, np.array(U12)).predict(2.0)
    assert pred[5] == 0 and pred[3] == 7


def test_infinite_gammas():
    # γ = +inf: every U column beats every S label (S ranks 6, 11, 8); U labels rank within U
    # only (1, 0, 0).  γ = -inf: S labels rank within S (0, 5, 2); U labels are beaten by all six
    # S columns (ranks 7, 6, 6).
    plus = accuracy_report(Z12, Y12, S12, U12, gamma=math.inf)
    assert_report(
        plus,
        {
            "acc_all": 2 / 6,
            "acc_seen": 0.0,
            "acc_absent": 2 / 3,
            "hmean": 0.0,
            "acc_all_top5": 3 / 6,
            "acc_seen_top5": 0.0,
            "acc_absent_top5": 1.0,
            "hmean_top5": 0.0,
            "gamma": math.inf,
        },
    )
    minus = accuracy_report(Z12, Y12, S12, U12, gamma=-math.inf)
    assert_report(
        minus,
        {
            "acc_all": 1 / 6,
            "acc_seen": 1 / 3,
            "acc_absent": 0.0,
            "hmean": 0.0,
            "acc_all_top5": 2 / 6,
            "acc_seen_top5": 2 / 3,
            "acc_absent_top5": 0.0,
            "acc_seen_seen": 1 / 3,
            "acc_absent_absent": 2 / 3,
        },
    )


# Hand-worked with extra columns R: 5 classes, S = {0, 1}, U = {2, 3}, R = {4}.
#   r1 y=0 (S): [3, 0, 1, 0, 4]  R column 4 wins (never shifted)          → wrong at any γ
#   r2 y=4 (R): [0, 0, 1, 0, 2]  gap 2 − 1 = 1: right while γ ≤ 1
#   r3 y=2 (U): [1, 0, 2, 0, 0]  gap 1 − 2 = −1: right once γ > −1
#   r4 y=3 (U): [2, 0, 0, 1, 0]  gap 2 − 1 = 1: right once γ > 1
Z_R = np.array([[3, 0, 1, 0, 4], [0, 0, 1, 0, 2], [1, 0, 2, 0, 0], [2, 0, 0, 1, 0]], dtype=float)
Y_R = np.array([0, 4, 2, 3])


def test_hand_worked_rest_columns():
    base = {"n_samples": 4, "n_seen": 1, "n_absent": 2}  # r2 is in neither group
    at_zero = {
        "acc_all": 2 / 4,  # r2, r3: the R sample counts in acc_all
        "acc_seen": 0.0,
        "acc_absent": 1 / 2,
        "acc_seen_seen": 1.0,  # over columns {0, 1}, r1's 3 wins
        "acc_absent_absent": 1.0,  # over {2, 3}: r3's 2 and r4's 1 win
        "hmean": 0.0,
        # top-2: r1 is beaten only by column 4, r4 only by column 0 (γ = 0 is not > 2 − 1)
        "acc_all_top2": 1.0,
        "acc_seen_top2": 1.0,
        "acc_absent_top2": 1.0,
        "hmean_top2": 1.0,
        **base,
    }
    got = accuracy_report(Z_R, Y_R, [0, 1], [2, 3], gamma=0.0, topk=(1, 2))
    assert "acc_all_top5" not in got
    assert_report(got, at_zero)
    # γ = 1.5 > 1: r4 moves to its right absent column, r2 moves to the wrong column 2
    at_15 = {"acc_all": 2 / 4, "acc_seen": 0.0, "acc_absent": 1.0, "hmean": 0.0, **base}
    assert_report(accuracy_report(Z_R, Y_R, [0, 1], [2, 3], gamma=1.5), at_15)


def test_no_absent_sample_gives_nan_and_warns():
    seen_only = Y12 < 6
    with pytest.warns(RuntimeWarning, match="absent"):
        got = accuracy_report(Z12[seen_only], Y12[seen_only], S12, U12)
    for key in ("acc_absent", "acc_absent_absent", "hmean", "acc_absent_top5", "hmean_top5"):
        assert math.isnan(got[key]), key
    assert got["acc_seen"] == pytest.approx(1 / 3) and got["n_absent"] == 0


def test_no_seen_sample_gives_nan_and_warns():
    with pytest.warns(RuntimeWarning, match="seen"):
        got = accuracy_report(Z12[3:], Y12[3:], S12, U12)
    assert math.isnan(got["acc_seen"]) and math.isnan(got["acc_seen_seen"])
    assert got["acc_absent"] == pytest.approx(1 / 3)


def test_harmonic_mean():
    assert harmonic_mean(0.5, 0.5) == 0.5
    assert harmonic_mean(1.0, 0.5) == pytest.approx(2 / 3)
    assert harmonic_mean(0.0, 0.7) == 0.0
    assert math.isnan(harmonic_mean(math.nan, 0.7))
    assert math.isnan(harmonic_mean(0.0, math.nan))


def test_public_name_is_this_function():
    assert calib.accuracy_report is accuracy_report


# ---------------------------------------------------------------------------------------------
# Brute force (tests/brute.py): explicit per-sample comparison of the shifted logits.


@SETTINGS
@given(problem=brute.problems(), extra=st.lists(st.integers(-8, 8), max_size=3))
def test_matches_brute_force(problem, extra):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    for gamma in brute.sweep_gammas(z, u) + [float(e) for e in extra]:
        got = quiet_report(z, y, s, u, gamma=gamma, topk=(1, 2, 3, 5))
        for k in (1, 2, 3, 5):
            suffix = "" if k == 1 else f"_top{k}"
            want = brute.accuracies(z, y, s, u, gamma, k=k)
            assert_report(got, {key + suffix: v for key, v in want.items()})


@SETTINGS
@given(
    problem=brute.problems(with_rest=False),
    dtype=st.sampled_from([np.float32, np.float64]),
    noise=st.lists(st.floats(-1, 1, width=32), min_size=70, max_size=70),
)
def test_rank_zero_is_exactly_gaps_predict(problem, dtype, noise):
    # non-integer logits and γ at, just below and just above every gap: the top-k ranking at
    # k = 1 must reproduce the one prediction rule bit for bit
    n, c = problem.logits.shape
    z = (problem.logits + np.resize(np.array(noise), (n, c))).astype(dtype)
    u = np.array(problem.absent)
    gaps = compute_gaps(z, u)
    gammas = [-math.inf, math.inf, 0.0]
    for g in gaps.gap:
        gammas += [g, np.nextafter(g, -math.inf), np.nextafter(g, math.inf)]
    for gamma in gammas:
        top1 = label_rank(z, problem.labels, u, float(gamma)) == 0
        np.testing.assert_array_equal(top1, gaps.predict(float(gamma)) == problem.labels)


# ---------------------------------------------------------------------------------------------
# Invariances


@SETTINGS
@given(
    problem=brute.problems(),
    shifts=st.lists(st.integers(-20, 20), min_size=10, max_size=10),
    gamma=st.integers(-4, 4),
)
def test_adding_a_constant_to_a_row_changes_nothing(problem, shifts, gamma):
    z = problem.logits
    shifted = z + np.array(shifts[: z.shape[0]], dtype=float)[:, None]
    a = quiet_report(z, problem.labels, problem.seen, problem.absent, gamma=gamma)
    b = quiet_report(shifted, problem.labels, problem.seen, problem.absent, gamma=gamma)
    assert_report(b, a, tol=0)


@SETTINGS
@given(data=st.data(), gamma=st.integers(-4, 4))
def test_a_consistent_class_permutation_changes_nothing(data, gamma):
    # rows of distinct values: the only index-dependent rule (ties within a group) never applies
    problem = data.draw(brute.problems())
    n, c = problem.logits.shape
    z = np.array([data.draw(st.permutations(range(c))) for _ in range(n)], dtype=float)
    perm = np.array(data.draw(st.permutations(range(c))))  # new column j holds old column perm[j]
    new_index = np.argsort(perm)  # old class c sits at new_index[c]
    a = quiet_report(z, problem.labels, problem.seen, problem.absent, gamma=gamma)
    b = quiet_report(
        z[:, perm],
        new_index[problem.labels],
        new_index[problem.seen],
        new_index[problem.absent],
        gamma=gamma,
    )
    assert_report(b, a, tol=0)


# ---------------------------------------------------------------------------------------------
# Input types


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_torch_input_on_any_device_gives_the_numpy_numbers(device, dtype):
    want = accuracy_report(Z12, Y12, S12, U12, gamma=2.5)
    got = accuracy_report(
        torch.tensor(Z12, dtype=dtype, device=device),
        torch.tensor(Y12, device=device),
        torch.tensor(S12),
        U12,
        gamma=torch.tensor(2.5),
    )
    assert got == want
    assert all(isinstance(v, (int, float)) for v in got.values())


def test_float32_and_float64_agree():
    a = accuracy_report(Z12.astype(np.float32), Y12, S12, U12, gamma=2.0)
    b = accuracy_report(Z12, Y12, S12, U12, gamma=2.0)
    assert a == b


def test_default_absent_is_the_complement_of_seen():
    assert accuracy_report(Z12, Y12, S12) == accuracy_report(Z12, Y12, S12, U12)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("bad", [math.nan, math.inf])  # -inf is a never-predictable class
def test_non_finite_logits_are_refused(bad):
    z = Z12.copy()
    z[2, 3] = bad
    with pytest.raises(ValueError, match="non-finite.*sample 2, class 3"):
        accuracy_report(z, Y12, S12, U12)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"labels": np.array([0, 1, 2, 6, 11, 12])}, ValueError, "out of range"),
        ({"labels": np.array([0, 1, 2, 6, 11, -1])}, ValueError, "out of range"),
        ({"labels": Y12[:5]}, ValueError, "5 entries but logits have 6 rows"),
        ({"labels": Y12 + 0.5}, ValueError, "integer"),
        ({"seen": [0, 1, 6]}, ValueError, "overlap"),
        ({"seen": [0, 12]}, ValueError, "out of range"),
        ({"absent": [6, -1]}, ValueError, "out of range"),
        ({"seen": []}, ValueError, "seen_classes is empty"),
        ({"absent": []}, ValueError, "absent_classes is empty"),
        ({"seen": list(range(12)), "absent": None}, ValueError, "nothing to calibrate"),
        ({"seen": [0, 0, 1]}, ValueError, "more than once"),
        ({"logits": Z12[0]}, ValueError, "2-D"),
        ({"logits": Z12[:, :0]}, ValueError, "empty"),
        ({"gamma": math.nan}, ValueError, "gamma is NaN"),
        ({"gamma": "big"}, TypeError, "gamma"),
        ({"gamma": np.array([1.0, 2.0])}, ValueError, "scalar"),
        ({"topk": (1, 0)}, ValueError, "topk"),
        ({"topk": (1, 2.5)}, ValueError, "topk"),
    ],
)
def test_bad_input_is_named(kwargs, error, message):
    args = {"logits": Z12, "labels": Y12, "seen": S12, "absent": U12, "gamma": 0.0, "topk": (1, 5)}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        accuracy_report(
            args["logits"],
            args["labels"],
            args["seen"],
            args["absent"],
            gamma=args["gamma"],
            topk=args["topk"],
        )
