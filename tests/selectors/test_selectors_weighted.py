"""The oracle's and PCV's criteria with sample weights and the class-balanced (macro) average:
the best γ of a dense grid scan of the brute-force weighted criterion, repeated rows, and the
declaration that routes ``sample_weight``."""

from __future__ import annotations

import numpy as np
import pytest

import tests.brute as brute
from calib.selectors import PseudoSplit, register_selector, select_oracle, select_pcv
from calib.selectors.spec import SELECTORS
from tests.selectors.test_selectors import GRID, brute_predict, lattice_problem, make_splits


def brute_weighted_criterion(logits, labels, seen, absent, gamma, criterion, weights, average):
    hits = brute_predict(logits, np.asarray(absent), gamma) == labels
    seen, absent = set(map(int, seen)), set(map(int, absent))
    if criterion == "acc_all":
        return brute.group_accuracy(hits, labels, lambda y: True, weights, average)
    s = brute.group_accuracy(hits, labels, seen.__contains__, weights, average)
    a = brute.group_accuracy(hits, labels, absent.__contains__, weights, average)
    return 0.0 if s + a == 0 else 2 * s * a / (s + a)


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("criterion", ["acc_all", "hmean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_oracle_equals_a_dense_grid_scan(average, criterion, seed):
    logits, labels, seen, absent = lattice_problem(seed)
    w = np.random.default_rng(seed).integers(0, 4, labels.size).astype(float)
    w[0] = 1.0
    gamma, info = select_oracle(
        logits, labels, seen, criterion=criterion, average=average, sample_weight=w
    )
    args = (logits, labels, seen, absent)
    scan = [brute_weighted_criterion(*args, t, criterion, w, average) for t in GRID]
    reached = brute_weighted_criterion(*args, gamma, criterion, w, average)
    assert reached == pytest.approx(max(scan), abs=1e-12)
    assert info["value"] == pytest.approx(reached, abs=1e-12)
    assert info["average"] == average and info["weighted"] is True
    # integer weights are repeated rows: the same best value
    k = w.astype(int)
    _, rows = select_oracle(
        np.repeat(logits, k, 0), np.repeat(labels, k), seen, criterion=criterion, average=average
    )
    assert rows["value"] == pytest.approx(info["value"], abs=1e-12)


def test_macro_oracle_differs_from_micro_on_an_unbalanced_set():
    # the absent classes are rare: micro acc_all barely cares for them, macro does
    logits, labels, seen, absent = lattice_problem(5, n=200)
    keep = np.isin(labels, seen) | (np.arange(labels.size) % 5 == 0)
    logits, labels = logits[keep], labels[keep]
    g_micro, micro = select_oracle(logits, labels, seen)
    g_macro, macro = select_oracle(logits, labels, seen, average="macro")
    scan = [brute_weighted_criterion(logits, labels, seen, absent, t, "acc_all", None, "macro")
            for t in GRID]  # fmt: skip
    assert macro["value"] == pytest.approx(max(scan), abs=1e-12)
    assert g_macro > g_micro  # balancing the classes favours the rare absent ones


@pytest.mark.parametrize("average", ["micro", "macro"])
@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_pcv_equals_a_dense_grid_scan_of_the_average(average, seed):
    splits, s, u = make_splits(seed)
    rng = np.random.default_rng(seed + 10)
    weighted = []
    for p in splits:
        w = rng.integers(0, 3, np.asarray(p.labels).size).astype(float)
        w[0] = 1.0
        weighted.append(PseudoSplit(p.logits, p.labels, p.seen_classes, p.absent_classes, w))

    def mean_criterion(t):
        return np.mean(
            [
                brute_weighted_criterion(
                    np.asarray(p.logits),
                    np.asarray(p.labels),
                    p.seen_classes,
                    p.absent_classes,
                    t,
                    "hmean",
                    p.sample_weight,
                    average,
                )  # fmt: skip
                for p in weighted
            ]
        )

    gamma, info = select_pcv(weighted, s, u, average=average)
    scan = [mean_criterion(t) for t in GRID]
    assert mean_criterion(gamma) == pytest.approx(max(scan), abs=1e-12)
    assert info["value"] == pytest.approx(mean_criterion(gamma), abs=1e-12)
    assert info["average"] == average


def test_pcv_names_the_split_of_a_bad_weight():
    splits, s, u = make_splits(0, k=2)
    p = splits[1]
    bad = PseudoSplit(p.logits, p.labels, p.seen_classes, p.absent_classes, np.ones(3))
    with pytest.raises(ValueError, match=r"pseudo_splits\[1\]: sample_weight has 3 entries"):
        select_pcv([splits[0], bad], s, u)
    zero_absent = np.where(np.isin(p.labels, p.seen_classes), 1.0, 0.0)
    bad = PseudoSplit(p.logits, p.labels, p.seen_classes, p.absent_classes, zero_absent)
    with pytest.raises(ValueError, match=r"pseudo_splits\[0\]: criterion 'hmean'.*sample_weight"):
        select_pcv([bad], s, u)
    with pytest.raises(ValueError, match="average must be one of"):
        select_pcv(splits, s, u, average="balanced")


def test_a_selector_declaring_sample_weight_must_read_logits():
    def fn(pseudo_splits, sample_weight, seen_classes, absent_classes, num_classes):
        return 0.0, {}

    with pytest.raises(ValueError, match="sample_weight weighs the rows of logits"):
        register_selector("weights_without_logits", data="pseudo_splits", sample_weight=True)(fn)
    assert "weights_without_logits" not in SELECTORS

    def takes_none(logits, labels, seen_classes, absent_classes, num_classes):
        return 0.0, {}

    with pytest.raises(TypeError, match="does not take the keyword argument.*sample_weight"):
        register_selector("weights_not_taken", data="target_labelled", sample_weight=True)(
            takes_none
        )
    assert "weights_not_taken" not in SELECTORS
