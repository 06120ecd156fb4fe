"""The metrics take class names wherever they take classes (``class_names=``, issue 22).

Names are resolved to column indices before any computation, so a call by name and the same
call by index run the same code on the same input: their numbers are compared exactly.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from calib.metrics.accuracy import accuracy_report
from calib.metrics.curve import ausuc, seen_absent_curve
from calib.metrics.lightning_metric import SeenAbsentMetric
from calib.metrics.ncm import class_means, ncm_report, ncm_scores
from calib.metrics.premise import premise_check
from calib.metrics.probability import (
    probability_report,
    reliability_diagram,
    shifted_probabilities,
)
from calib.metrics.streaming import SeenAbsentState, alg_from_state, check_alg_labels

NAMES = ("cat", "dog", "fish", "horse", "bird", "frog")
C = len(NAMES)
S_IDX, U_IDX = [0, 1, 2], [3, 4]  # column 5 (frog) is in neither: R
S_NAMES, U_NAMES = ["cat", "dog", "fish"], ["horse", "bird"]
S_MIXED, U_MIXED = ["fish", 0, "dog"], [4, "horse"]

RNG = np.random.default_rng(22)
N = 80
Z = RNG.normal(size=(N, C)) * 2
Z_PRE = Z + RNG.normal(size=(N, C))
Y = RNG.integers(0, C, size=N)
W = RNG.uniform(0.1, 2.0, size=N)
FEAT_TRAIN = RNG.normal(size=(60, 4))
Y_TRAIN = np.arange(60) % C
FEAT_TEST = RNG.normal(size=(N, 4))


def assert_same(a, b) -> None:
    """Exact equality of two results of the same computation (NaN equals NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- the same numbers by name


def _curve(**kw):
    c = seen_absent_curve(Z, Y, sample_weight=W, **kw)
    return {
        "gamma": c.gamma,
        "acc_seen": c.acc_seen,
        "acc_absent": c.acc_absent,
        "acc_all": c.acc_all,
        "ausuc": c.ausuc,
        "n": (c.n_seen, c.n_absent),
    }


def _diagram(**kw):
    d = reliability_diagram(Z, Y, gamma=0.4, n_bins=5, adaptive=True, group="absent", **kw)
    return {"edges": d.edges, "conf": d.confidence, "acc": d.accuracy, "count": d.count}


def _premise(**kw):
    out = premise_check(Z_PRE, Z, Y, selector_gamma={"a": 0.1, "b": 1.2}, **kw).to_dict()
    return out


def _state(**kw):
    st = SeenAbsentState(C, topk=(1, 2), gammas=(0.0, 0.5), alg=False, **kw)
    st.update(Z[:30], Y[:30], W[:30]).update(Z[30:], Y[30:], W[30:])
    c = st.curve("macro")
    return st.report(0.5, average="micro") | {"curve": c.acc_all, "ausuc": st.ausuc()}


CALLS = {
    "accuracy_report": lambda **kw: accuracy_report(
        Z, Y, gamma=0.7, topk=(1, 2), sample_weight=W, **kw
    ),
    "seen_absent_curve": _curve,
    "ausuc": lambda **kw: ausuc(Z, Y, average="macro", **kw),
    "probability_report": lambda **kw: probability_report(
        Z, Y, gamma=0.3, temperature=(1.5, 0.8), n_bins=7, **kw
    ),
    "reliability_diagram": _diagram,
    "premise_check": _premise,
    "ncm_report": lambda **kw: ncm_report(
        FEAT_TRAIN, Y_TRAIN, FEAT_TEST, np.where(Y == 5, 0, Y), num_classes=C, **kw
    ),
    "SeenAbsentState": _state,
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_names_give_the_numbers_of_the_indices(name):
    call = CALLS[name]
    by_index = call(seen_classes=S_IDX, absent_classes=U_IDX)
    by_name = call(seen_classes=S_NAMES, absent_classes=U_NAMES, class_names=NAMES)
    mixed = call(seen_classes=S_MIXED, absent_classes=U_MIXED, class_names=list(NAMES))
    assert_same(by_name, by_index)
    assert_same(mixed, by_index)
    # indices with class_names: the names change nothing
    assert_same(call(seen_classes=S_IDX, absent_classes=U_IDX, class_names=NAMES), by_index)


@pytest.mark.parametrize("name", ["accuracy_report", "probability_report", "SeenAbsentState"])
def test_default_absent_by_name(name):
    """U defaults to every column not in S, whether S is given by name or not."""
    call = CALLS[name]
    by_index = call(seen_classes=S_IDX, absent_classes=None)
    by_name = call(seen_classes=np.array(S_NAMES), absent_classes=None, class_names=NAMES)
    assert_same(by_name, by_index)


def test_shifted_probabilities_by_name():
    by_index = shifted_probabilities(Z, U_IDX, gamma=0.9, temperature=2.0)
    by_name = shifted_probabilities(Z, U_NAMES, gamma=0.9, temperature=2.0, class_names=NAMES)
    mixed = shifted_probabilities(Z, {"bird", 3}, gamma=0.9, temperature=2.0, class_names=NAMES)
    np.testing.assert_array_equal(by_name, by_index)
    np.testing.assert_array_equal(mixed, by_index)
    with pytest.raises(ValueError, match=r"absent_classes: 'brid' is not a class name; did you"):
        shifted_probabilities(Z, ["brid"], class_names=NAMES)
    with pytest.raises(ValueError, match="absent_classes holds class names"):
        shifted_probabilities(Z, ["bird"])
    with pytest.raises(ValueError, match=r"class_names has 5 names but the head has 6"):
        shifted_probabilities(Z, [4], class_names=NAMES[:5])


def test_ncm_scores_and_means_by_name():
    np.testing.assert_array_equal(
        ncm_scores(FEAT_TRAIN, Y_TRAIN, FEAT_TEST, ["fish", 0], class_names=NAMES),
        ncm_scores(FEAT_TRAIN, Y_TRAIN, FEAT_TEST, [2, 0]),
    )
    np.testing.assert_array_equal(
        class_means(FEAT_TRAIN, Y_TRAIN, ["frog", "cat"], class_names=NAMES),
        class_means(FEAT_TRAIN, Y_TRAIN, [5, 0]),
    )
    with pytest.raises(ValueError, match=r"classes: 'fsh' is not a class name; did you mean"):
        class_means(FEAT_TRAIN, Y_TRAIN, ["fsh"], class_names=NAMES)


def test_ncm_report_takes_num_classes_from_the_names():
    y = np.where(Y == 5, 0, Y)
    assert_same(
        ncm_report(FEAT_TRAIN, Y_TRAIN, FEAT_TEST, y, S_NAMES, class_names=NAMES),
        ncm_report(FEAT_TRAIN, Y_TRAIN, FEAT_TEST, y, S_IDX, num_classes=C),
    )


def test_the_fast_path_takes_integer_arrays_and_tensors():
    by_list = accuracy_report(Z, Y, S_IDX, U_IDX, class_names=NAMES)
    assert_same(accuracy_report(Z, Y, np.array(S_IDX), torch.tensor(U_IDX)), by_list)
    assert_same(
        accuracy_report(torch.from_numpy(Z), Y, torch.tensor(S_IDX), class_names=NAMES),
        accuracy_report(Z, Y, S_IDX),
    )


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_misspelt_name_gets_a_did_you_mean(name):
    with pytest.raises(ValueError, match=r"seen_classes: 'dgo' is not a class name; did you mean"):
        CALLS[name](seen_classes=["cat", "dgo"], absent_classes=U_NAMES, class_names=NAMES)
    with pytest.raises(ValueError, match=r"absent_classes: 'Bird' is not a class name; did you"):
        CALLS[name](seen_classes=S_NAMES, absent_classes=["Bird"], class_names=NAMES)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_names_without_class_names_are_refused(name):
    with pytest.raises(ValueError, match=r"seen_classes holds class names .* no class_names"):
        CALLS[name](seen_classes=S_NAMES, absent_classes=U_IDX)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_class_names_of_the_wrong_length_are_refused(name):
    with pytest.raises(ValueError, match=r"class_names has 7 names but the head has 6 classes"):
        CALLS[name](seen_classes=S_IDX, absent_classes=U_IDX, class_names=(*NAMES, "owl"))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_class_names_that_are_not_names_are_refused(name):
    with pytest.raises(TypeError, match=r"class_names\[2\] is 7 \(int\)"):
        CALLS[name](seen_classes=S_IDX, absent_classes=U_IDX, class_names=["a", "b", 7])
    with pytest.raises(ValueError, match=r"seen_classes: 'a' names 6 classes"):
        CALLS[name](seen_classes=["a"], absent_classes=U_IDX, class_names=["a"] * C)


def test_errors_that_name_classes_show_the_names():
    with pytest.raises(ValueError, match=r"absent_classes \(1 class: 5 frog\)"):
        premise_check(Z_PRE, Z, np.where(Y == 5, 0, Y), S_IDX, ["frog"], class_names=NAMES)
    with pytest.raises(ValueError, match=r"class\(es\) 1 class: 5 frog have no training sample"):
        class_means(FEAT_TRAIN[Y_TRAIN != 5], Y_TRAIN[Y_TRAIN != 5], [0, 5], class_names=NAMES)
    with pytest.raises(ValueError, match=r"outside seen ∪ absent, e\.g\. 5 frog"):
        ncm_report(FEAT_TRAIN, Y_TRAIN, FEAT_TEST, Y, S_NAMES, U_NAMES, class_names=NAMES)
    with pytest.raises(ValueError, match=r"e\.g\. 3 \(horse\); pass the fine-tuning"):
        check_alg_labels(np.array([0, 3]), np.array(S_IDX), np.array(U_IDX), NAMES)
    with pytest.raises(ValueError, match=r"e\.g\. 3; pass the fine-tuning"):
        check_alg_labels(np.array([0, 3]), np.array(S_IDX), np.array(U_IDX))


# ---------------------------------------------------------------- the streamed state


def test_state_keeps_the_names_and_alg_reads_them():
    st = SeenAbsentState(C, S_NAMES, class_names=list(NAMES), alg=True)
    assert st.class_names == NAMES
    np.testing.assert_array_equal(st.seen_classes, S_IDX)
    np.testing.assert_array_equal(st.absent_classes, [3, 4, 5])
    assert SeenAbsentState(C, S_IDX).class_names is None
    keep = np.isin(Y, S_IDX)
    st.update(Z[keep], Y[keep])
    gamma, _ = alg_from_state(st)
    plain = SeenAbsentState(C, S_IDX, alg=True).update(Z[keep], Y[keep])
    assert gamma == alg_from_state(plain)[0]
    stray = SeenAbsentState(C, S_NAMES, class_names=NAMES, alg=True).update(Z, Y)
    with pytest.raises(
        ValueError, match=r"label\(s\) lie in the .*e\.g\. \d \((horse|bird|frog)\)"
    ):
        alg_from_state(stray)


def test_merge_refuses_states_with_different_names():
    a = SeenAbsentState(C, S_NAMES, class_names=NAMES).update(Z[:40], Y[:40])
    same = SeenAbsentState(C, S_IDX, class_names=list(NAMES)).update(Z[40:], Y[40:])
    other = tuple(n.upper() for n in NAMES)
    renamed = SeenAbsentState(C, S_IDX, class_names=other).update(Z[40:], Y[40:])
    unnamed = SeenAbsentState(C, S_IDX).update(Z[40:], Y[40:])
    for b in (renamed, unnamed):
        with pytest.raises(
            ValueError, match="cannot merge states built with different class_names"
        ):
            a.merge(b)
    assert a.n_samples == 40  # the refused merges added nothing
    a.merge(same)
    assert_same(a.report(0.2), accuracy_report(Z, Y, S_IDX, gamma=0.2, topk=(1,)))


def test_pickling_keeps_the_names():
    st = SeenAbsentState(C, S_NAMES, U_NAMES, class_names=NAMES).update(Z, Y)
    back = pickle.loads(pickle.dumps(st))
    assert back.class_names == NAMES
    assert_same(back.report(0.3), st.report(0.3))
    back.merge(SeenAbsentState(C, S_IDX, U_IDX, class_names=NAMES).update(Z, Y))
    assert back.n_samples == 2 * N


def test_a_state_pickled_without_names_loads_with_none():
    st = SeenAbsentState(C, S_IDX).update(Z, Y)
    del st.__dict__["class_names"]  # as a state pickled before names existed
    back = pickle.loads(pickle.dumps(st))
    assert back.class_names is None
    back.merge(SeenAbsentState(C, S_IDX).update(Z, Y))
    assert back.n_samples == 2 * N


def test_lightning_metric_passes_the_names_through():
    by_name = SeenAbsentMetric(C, S_NAMES, U_NAMES, gamma=0.5, topk=(1, 2), class_names=NAMES)
    by_index = SeenAbsentMetric(C, S_IDX, U_IDX, gamma=0.5, topk=(1, 2))
    for m in (by_name, by_index):
        m.update(torch.from_numpy(Z[:50]), torch.from_numpy(Y[:50]))
        m.update(torch.from_numpy(Z[50:]), torch.from_numpy(Y[50:]))
    assert by_name.state().class_names == NAMES
    assert by_index.state().class_names is None
    got, want = by_name.compute(), by_index.compute()
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, equal_nan=True)
    with pytest.raises(ValueError, match=r"'hrose' is not a class name; did you mean 'horse'"):
        SeenAbsentMetric(C, S_NAMES, ["hrose"], class_names=NAMES)


def names_are_compared_in_sync(rank: int, world: int) -> None:
    """On 2 gloo processes: named states sync and keep the names; different names are refused
    on every rank (run by :func:`test_sync_compares_the_names`)."""
    rows = np.arange(N)[rank::world]
    st = SeenAbsentState(C, S_NAMES, class_names=NAMES).update(Z[rows], Y[rows])
    joined = st.sync()
    assert joined.class_names == NAMES
    assert_same(joined.report(0.4), accuracy_report(Z, Y, S_IDX, gamma=0.4, topk=(1,)))
    names = NAMES if rank == 0 else tuple(n.upper() for n in NAMES)
    other = SeenAbsentState(C, S_IDX, class_names=names).update(Z[rows], Y[rows])
    with pytest.raises(ValueError, match=r"rank 1's state was built with different class_names"):
        other.sync()


@pytest.mark.slow  # two processes: a few seconds
def test_sync_compares_the_names():
    from tests.helpers_distributed import run_group

    run_group(names_are_compared_in_sync, 2)
