"""γ selectors: hand-worked values, brute-force scans over dense γ grids, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.rules.stepmax import _interior
from calib.rules.stepmax import maximise as _maximise
from calib.selectors import (
    SELECTORS,
    PseudoSplit,
    select_alg,
    select_fixed,
    select_oracle,
    select_pcv,
    select_prior,
    selector_arguments,
)

# ----------------------------------------------------------------------------- brute force


def brute_predict(logits: np.ndarray, absent: np.ndarray, gamma: float) -> np.ndarray:
    """argmax of the shifted logits, computed column by column (independent of calib.rules.gaps)."""
    shifted = logits.astype(np.float64).copy()
    shifted[:, absent] += gamma
    return shifted.argmax(axis=1)


def brute_criterion(logits, labels, seen, absent, gamma, criterion):
    pred = brute_predict(logits, absent, gamma)
    right = pred == labels
    if criterion == "acc_all":
        return right.mean()
    s = right[np.isin(labels, seen)].mean()
    a = right[np.isin(labels, absent)].mean()
    return 0.0 if s + a == 0 else 2 * s * a / (s + a)


def lattice_problem(seed: int, n: int = 60, c: int = 7, n_seen: int = 3):
    """Logits on a 1/8 lattice: every sum and difference is exact in floating point."""
    rng = np.random.default_rng(seed)
    logits = rng.integers(-24, 24, size=(n, c)) / 8.0
    labels = rng.integers(0, c, size=n)
    seen = np.arange(n_seen)
    absent = np.arange(n_seen, c)
    # make the fine-tuned head favour S, as after fine-tuning
    logits[:, seen] += 1.0
    return logits, labels, seen, absent


# a grid that falls strictly between the lattice's gaps (offset 1/16) and covers every step
GRID = np.arange(-9.0, 9.0, 0.125) + 0.0625


def distance_to_zero(low: float, high: float) -> float:
    return low if low >= 0 else (-high if high < 0 else 0.0)


# ----------------------------------------------------------------------------- registry


def test_registry_holds_every_selector():
    assert SELECTORS.names() == ["alg", "fixed", "oracle", "pcv", "prior"]
    required, optional = selector_arguments("prior")
    assert required == {"logits", "seen_classes"}
    assert "labels" not in required | optional
    with pytest.raises(KeyError, match="Did you mean 'alg'"):
        SELECTORS.get("agl")


# ----------------------------------------------------------------------------- ALG


def test_alg_matches_hand_computation():
    # S = {0, 1, 2}, U = {3, 4}
    logits = np.array(
        [
            [5.0, 1.0, 3.0, 0.0, 2.0],  # label 0: others of S (1+3)/2 = 2, U mean 1 -> 1
            [2.0, 6.0, 4.0, -1.0, -3.0],  # label 1: (2+4)/2 = 3, U mean -2 -> 5
            [0.0, 0.0, 9.0, 1.0, 1.0],  # label 2: (0+0)/2 = 0, U mean 1 -> -1
        ]
    )
    gamma, info = select_alg(logits, np.array([0, 1, 2]), [0, 1, 2])
    assert gamma == pytest.approx((1 + 5 - 1) / 3)
    assert info["n_samples"] == 3
    assert info["gap_std"] == pytest.approx(np.std([1.0, 5.0, -1.0]))


def test_alg_ignores_columns_outside_s_and_u():
    # S = {0, 1}, U = {3}; column 2 (R) must not enter either mean
    logits = np.array([[4.0, 2.0, 100.0, -1.0], [1.0, 3.0, -100.0, 0.5]])
    gamma, _ = select_alg(logits, [0, 1], [0, 1], absent_classes=[3])
    assert gamma == pytest.approx(((2 - -1) + (1 - 0.5)) / 2)


def test_alg_is_invariant_to_a_constant_per_sample():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(40, 9))
    labels = rng.integers(0, 4, size=40)
    shifted = logits + rng.normal(scale=50, size=(40, 1))
    assert select_alg(shifted, labels, range(4))[0] == pytest.approx(
        select_alg(logits, labels, range(4))[0], abs=1e-9
    )


def test_alg_accepts_torch_and_float32():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(20, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=20)
    expected = select_alg(logits, labels, [0, 1, 2])[0]
    assert select_alg(torch.from_numpy(logits), torch.from_numpy(labels), [0, 1, 2])[0] == expected


@pytest.mark.parametrize("bad_label, where", [(3, "absent classes U"), (2, "non-seen columns")])
def test_alg_refuses_data_outside_s(bad_label, where):
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match=f"ALG may only see fine-tuning.*{where}"):
        select_alg(logits, [0, 1, bad_label], [0, 1], absent_classes=[3])


def test_alg_needs_two_seen_classes():
    with pytest.raises(ValueError, match="at least 2 seen classes"):
        select_alg(np.zeros((2, 3)), [0, 0], [0])


@pytest.mark.parametrize(
    "logits, labels, seen, absent, match",
    [
        (np.array([[np.nan, 0.0, 1.0]]), [0], [0, 1], None, "non-finite"),
        (np.zeros((2, 3)), [0, 5], [0, 1], None, "out of range"),
        (np.zeros((2, 3)), [0, 1], [0, 1], [1, 2], "overlap"),
        (np.zeros((2, 3)), [0, 1], [0, 1, 2], None, "absent_classes is empty"),
        (np.zeros((2, 3)), [0, 1], [], None, "seen_classes is empty"),
        (np.zeros((2, 3)), [0], [0, 1], None, "1 entries"),
    ],
)
def test_alg_rejects_bad_input(logits, labels, seen, absent, match):
    with pytest.raises(ValueError, match=match):
        select_alg(logits, labels, seen, absent)


# ----------------------------------------------------------------------------- oracle


@pytest.mark.parametrize("criterion", ["acc_all", "hmean"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_oracle_equals_a_dense_grid_scan(criterion, seed):
    logits, labels, seen, absent = lattice_problem(seed)
    gamma, info = select_oracle(logits, labels, seen, criterion=criterion)
    scan = np.array([brute_criterion(logits, labels, seen, absent, t, criterion) for t in GRID])
    reached = brute_criterion(logits, labels, seen, absent, gamma, criterion)
    assert reached == pytest.approx(scan.max(), abs=1e-12)
    assert info["value"] == pytest.approx(reached, abs=1e-12)
    low, high = info["interval"]
    assert low < gamma <= high
    # no γ of the grid closer to 0 than the chosen interval reaches the best value
    best = GRID[np.isclose(scan, scan.max(), rtol=0, atol=1e-12)]
    assert np.abs(best).min() >= distance_to_zero(low, high) - 1e-9
    assert info["uses_absent_labels"] is True and "upper bound" in info["note"]


def test_oracle_first_and_last_intervals():
    # two seen samples, right while γ ≤ their gaps 3 and 5: acc_all is best on (-inf, 3]
    seen_only = np.array([[3.0, 0.0], [5.0, 0.0]])
    with pytest.warns(RuntimeWarning, match="no test sample"):
        gamma, info = select_oracle(seen_only, [0, 0], [0])
    assert gamma == 2.0 and info["interval"] == (-np.inf, 3.0)
    # two absent samples, right once γ > their gaps 2 and 4: best on (4, inf)
    absent_only = np.array([[2.0, 0.0], [4.0, 0.0]])
    with pytest.warns(RuntimeWarning, match="no test sample"):
        gamma, info = select_oracle(absent_only, [1, 1], [0])
    assert gamma == 5.0 and info["interval"] == (4.0, np.inf)


def test_oracle_hmean_needs_both_groups():
    with pytest.raises(ValueError, match="hmean.*absent"):
        select_oracle(np.array([[3.0, 0.0]]), [0], [0], criterion="hmean")


def test_unknown_criterion():
    with pytest.raises(ValueError, match="criterion must be one of"):
        select_oracle(np.zeros((2, 3)), [0, 1], [0], criterion="f1")


# ----------------------------------------------------------------------------- exact maximiser


def test_maximise_breaks_ties_towards_zero():
    gamma = np.array([-3.0, -2.0, 1.0, 2.0, np.inf])
    value = np.array([0.0, 1.0, 0.0, 1.0, 0.0])  # best on (-3, -2] and (1, 2]
    choice = _maximise([(gamma, value)])
    assert choice.interval == (1.0, 2.0) and choice.gamma == 1.5
    # an interval containing 0 wins over any other
    value = np.array([1.0, 0.0, 1.0, 0.0, 1.0])  # (-inf,-3], (-2, 1], (2, inf)
    assert _maximise([(gamma, value)]).gamma == -0.5


def test_maximise_averages_step_functions_on_their_union():
    a = (np.array([0.0, np.inf]), np.array([1.0, 0.0]))  # 1 on (-inf, 0]
    b = (np.array([-1.0, np.inf]), np.array([0.0, 1.0]))  # 1 on (-1, inf)
    choice = _maximise([a, b])
    assert choice.interval == (-1.0, 0.0) and choice.value == 1.0
    assert choice.values.tolist() == [1.0, 1.0]


def test_interior_points_lie_inside_their_intervals():
    low = np.array([-np.inf, 1.0, 1.0, 1e300, -np.inf, 5.0])
    high = np.array([2.0, np.nextafter(1.0, 2.0), 3.0, np.inf, np.inf, np.inf])
    point = _interior(low, high)
    assert np.all(point > low) and np.all(point <= high)
    assert point.tolist()[:3] == [1.0, np.nextafter(1.0, 2.0), 2.0]
    assert point[4] == 0.0 and point[5] == 6.0


# ----------------------------------------------------------------------------- PCV


def make_splits(seed: int, k: int = 3):
    """k pseudo splits of S = {0..5} in a 9-class head with U = {6, 7, 8}."""
    rng = np.random.default_rng(seed)
    s = np.arange(6)
    u = np.arange(6, 9)
    splits = []
    for _ in range(k):
        order = rng.permutation(s)
        p_seen, p_absent = np.sort(order[:3]), np.sort(order[3:])
        labels = rng.choice(s, size=40)
        logits = rng.integers(-24, 24, size=(40, 9)) / 8.0
        logits[:, p_seen] += 1.0
        splits.append(PseudoSplit(logits, labels, p_seen, np.union1d(p_absent, u)))
    return splits, s, u


@pytest.mark.parametrize("criterion", ["hmean", "acc_all"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pcv_equals_a_dense_grid_scan_of_the_average(criterion, seed):
    splits, s, u = make_splits(seed)

    def average(t):
        return np.mean(
            [
                brute_criterion(
                    np.asarray(p.logits),
                    np.asarray(p.labels),
                    p.seen_classes,
                    p.absent_classes,
                    t,
                    criterion,
                )
                for p in splits
            ]
        )

    gamma, info = select_pcv(splits, s, u, criterion=criterion)
    scan = np.array([average(t) for t in GRID])
    assert average(gamma) == pytest.approx(scan.max(), abs=1e-12)
    assert info["value"] == pytest.approx(average(gamma), abs=1e-12)
    assert info["n_splits"] == 3 and len(info["split_values"]) == 3
    assert np.mean(info["split_values"]) == pytest.approx(info["value"])


def test_pcv_with_one_split_is_the_oracle_of_that_split():
    (split,), s, u = make_splits(5, k=1)
    oracle = select_oracle(
        split.logits, split.labels, split.seen_classes, split.absent_classes, criterion="hmean"
    )
    assert select_pcv([split], s, u)[0] == oracle[0]


def test_pcv_refuses_absent_class_data():
    splits, s, u = make_splits(0)
    labels = np.array(splits[1].labels)
    labels[4] = 7  # a real U sample
    bad = PseudoSplit(splits[1].logits, labels, splits[1].seen_classes, splits[1].absent_classes)
    with pytest.raises(ValueError, match=r"pseudo_splits\[1\].*PCV may not touch U data"):
        select_pcv([splits[0], bad], s, u)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(seen_classes=[0, 1, 6]), "overlap|not in S"),
        (dict(seen_classes=[0, 1, 2], absent_classes=[3, 4, 6, 7, 8]), "neither the split"),
        (dict(logits=np.zeros((40, 8))), "disagree on the number of columns"),
        (dict(logits=np.full((40, 9), np.nan)), "non-finite"),
    ],
)
def test_pcv_rejects_inconsistent_splits(change, match):
    splits, s, u = make_splits(0)
    fields = dict(vars(splits[0]))
    fields.update(change)
    with pytest.raises(ValueError, match=match):
        select_pcv([PseudoSplit(**fields), splits[1]], s, u)


def test_pcv_rejects_labels_outside_s_and_empty_input():
    splits, s, u = make_splits(0)
    # S = {0..4}: label 5 is then an extra (R) class, not a fine-tuning class
    with pytest.raises(ValueError, match="not a fine-tuning"):
        select_pcv(splits, s[:5], u)
    with pytest.raises(ValueError, match="at least one pseudo split"):
        select_pcv([], s, u)
    with pytest.raises(TypeError, match="PseudoSplit"):
        select_pcv([(1, 2, 3, 4)], s, u)


def test_pcv_hmean_needs_pseudo_absent_samples():
    splits, s, u = make_splits(0)
    p = splits[0]
    keep = np.isin(p.labels, p.seen_classes)
    only_seen = PseudoSplit(p.logits[keep], p.labels[keep], p.seen_classes, p.absent_classes)
    with pytest.raises(ValueError, match=r"pseudo_splits\[0\]: criterion 'hmean'"):
        select_pcv([only_seen], s, u)


# ----------------------------------------------------------------------------- prior and fixed


@pytest.mark.parametrize("prior", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_prior_reaches_the_requested_share(prior):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(200, 8))  # distinct gaps: every share k / 200 is reachable
    gamma, info = select_prior(logits, [0, 1, 2], prior=prior)
    predicted_absent = np.isin(brute_predict(logits, np.arange(3, 8), gamma), np.arange(3, 8))
    assert predicted_absent.mean() == info["share"] == round(prior * 200) / 200


def test_prior_defaults_to_the_class_share():
    rng = np.random.default_rng(4)
    _, info = select_prior(rng.normal(size=(100, 10)), [0, 1, 2, 3], absent_classes=[4, 5, 6])
    assert info["prior"] == pytest.approx(3 / 7)
    assert info["share"] == pytest.approx(0.43)


def test_prior_with_tied_gaps_picks_the_closest_share():
    logits = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])  # gaps 1, 1, 1, -1
    gamma, info = select_prior(logits, [0], prior=0.5)  # reachable shares: 0, 1/4, 1
    assert info["share"] == 0.25 and -1 < gamma <= 1


def test_prior_rejects_out_of_range_prior():
    with pytest.raises(ValueError, match=r"prior must be a share in \[0, 1\]"):
        select_prior(np.zeros((2, 3)), [0], prior=1.5)


def test_fixed():
    assert select_fixed(0.25) == (0.25, {"method": "fixed"})
    assert select_fixed(np.float32(2.0))[0] == 2.0
    with pytest.raises(ValueError, match="finite"):
        select_fixed(float("nan"))
    with pytest.raises(TypeError, match="number"):
        select_fixed("big")
