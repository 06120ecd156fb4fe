"""The selectors alg, prior, oracle and pcv given a streamed SeenAbsentState for their logits:
the same γ and info as from the logits themselves (ALG to float rounding), and one-line errors
for what a state cannot be given with."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.brute as brute
from calib import LogitBiasCalibrator
from calib.metrics.streaming import SeenAbsentState
from calib.selectors import PseudoSplit, select_alg, select_oracle, select_pcv, select_prior

C, SEEN = 20, np.arange(8)


def data(seed=0, n=400):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, C)).round(2).astype(np.float32)
    z[:, SEEN] += 1.0
    y = rng.integers(0, C, n)
    return z, y


def stream(z, y=None, seen=SEEN, absent=None, weights=None, **kwargs) -> SeenAbsentState:
    state = SeenAbsentState(C, seen, absent, **kwargs)
    for at in range(0, len(z), 96):
        rows = slice(at, at + 96)
        state.update(
            z[rows], None if y is None else y[rows], None if weights is None else weights[rows]
        )
    return state


def test_alg_from_a_state():
    z, y = data()
    y = SEEN[y % SEEN.size]
    got = select_alg(stream(z, y, alg=True, keep_gaps=False), None, SEEN, num_classes=C)
    want = select_alg(z, y, SEEN)
    assert got[0] == pytest.approx(want[0], rel=1e-12, abs=1e-15)
    assert got[1]["n_samples"] == want[1]["n_samples"]


@pytest.mark.parametrize("prior", [None, 0.3])
def test_prior_from_a_state(prior):
    z, _ = data(1)
    assert select_prior(stream(z), SEEN, prior=prior) == select_prior(z, SEEN, prior=prior)


@pytest.mark.parametrize("criterion", ["acc_all", "hmean"])
@pytest.mark.parametrize("average", ["micro", "macro"])
def test_oracle_from_a_state_with_and_without_weights(criterion, average):
    z, y = data(2)
    w = np.random.default_rng(3).uniform(0, 2, len(y))
    for weights in (None, w):
        got = select_oracle(
            stream(z, y, weights=weights), None, SEEN, criterion=criterion, average=average
        )
        want = select_oracle(
            z, y, SEEN, criterion=criterion, average=average, sample_weight=weights
        )
        assert got == want


def test_pcv_from_one_state_per_split():
    rng = np.random.default_rng(4)
    splits, states = [], []
    for _ in range(3):
        p_seen = np.sort(rng.choice(SEEN, 5, replace=False))
        p_absent = np.setdiff1d(np.arange(C), p_seen)
        z, _ = data(int(rng.integers(1000)), n=150)
        y = rng.choice(SEEN, 150)
        splits.append(PseudoSplit(z, y, p_seen, p_absent))
        states.append(stream(z, y, p_seen, p_absent))
    for criterion in ("hmean", "acc_all"):
        assert select_pcv(states, SEEN, criterion=criterion) == select_pcv(
            splits, SEEN, criterion=criterion
        )


def test_what_a_state_cannot_be_given_with():
    z, y = data()
    state = stream(z, y)
    with pytest.raises(ValueError, match="labels given with a SeenAbsentState: the state holds"):
        select_oracle(state, y, SEEN)
    with pytest.raises(ValueError, match="sample_weight given with a SeenAbsentState"):
        select_oracle(state, None, SEEN, sample_weight=np.ones(len(y)))
    with pytest.raises(ValueError, match=r"seen_classes \[0, 1\] differ from those the"):
        select_oracle(state, None, [0, 1])
    with pytest.raises(ValueError, match="num_classes=21 but the logits have 20 columns"):
        select_prior(state, SEEN, num_classes=21)
    with pytest.raises(ValueError, match="build it with alg=True"):
        select_alg(SeenAbsentState(C, SEEN).update(z, SEEN[y % 8]), None, SEEN)
    with pytest.raises(TypeError, match=r"pseudo_splits\[1\] must be a SeenAbsentState"):
        select_pcv([state, PseudoSplit(z, y, SEEN, None)], SEEN)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def fed(z, y, seen, absent, cuts, **kwargs) -> SeenAbsentState:
    state = SeenAbsentState(z.shape[1], seen, absent, **kwargs)
    edges = [0, *sorted(c for c in cuts if 0 < c < len(z)), len(z)]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b > a:
            state.update(z[a:b], None if y is None else y[a:b])
    return state


@settings(deadline=None, max_examples=60)
@given(
    problem=brute.problems(),
    cuts=st.lists(st.integers(0, 10), max_size=4),
    prior=st.one_of(st.none(), st.floats(0, 1)),
)
def test_prior_and_oracle_of_tiny_problems_in_batches(problem, cuts, prior):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    assert select_prior(fed(z, None, s, u, cuts), s, u, prior=prior) == select_prior(
        z, s, u, prior=prior
    )
    labelled = fed(z, y, s, u, cuts)
    assert quiet(select_oracle, labelled, None, s, u) == quiet(select_oracle, z, y, s, u)
    if np.isin(y, s).any() and np.isin(y, u).any():
        assert quiet(
            select_oracle, labelled, None, s, u, criterion="hmean", average="macro"
        ) == quiet(select_oracle, z, y, s, u, criterion="hmean", average="macro")


@pytest.mark.parametrize("top", [1e307, 1.5e308])
def test_alg_near_the_float64_maximum_rescales_as_from_the_logits(top):
    # 1e307: the terms are finite, their mean overflows; 1.5e308: the rows' sums overflow too
    rng = np.random.default_rng(3)
    z = rng.uniform(0.5, 1.0, size=(40, 8)) * top
    y = rng.integers(0, 4, 40)
    state = fed(z, y, [0, 1, 2, 3], None, [13], alg=True)
    assert state.columns()["alg_flag"].any() == (top > 1e308)  # those terms kept scaled
    gamma, info = select_alg(state, None, [0, 1, 2, 3])
    want, want_info = select_alg(z, y, [0, 1, 2, 3])
    assert math.isfinite(gamma) and gamma == pytest.approx(want, rel=1e-12)
    assert info["gap_std"] == pytest.approx(want_info["gap_std"], rel=1e-9)


def test_selectors_refuse_states_they_cannot_use():
    z = np.arange(24, dtype=np.float64).reshape(4, 6) % 5
    y = np.array([0, 1, 4, 5])

    def state(**kwargs):
        return SeenAbsentState(6, [0, 1, 2], **kwargs)

    with pytest.raises(ValueError, match="build it with alg=True"):
        select_alg(state().update(z, y), None, [0, 1, 2])
    with pytest.raises(ValueError, match=r"ALG may only see fine-tuning \(S\) data, but 2 label"):
        select_alg(state(alg=True).update(z, y), None, [0, 1, 2])
    dead = np.where(np.arange(6) == 4, -np.inf, z)
    with pytest.raises(ValueError, match="sample 0 holds -inf in a column of S or U"):
        select_alg(state(alg=True).update(dead, np.array([0, 1, 2, 0])), None, [0, 1, 2])
    with pytest.raises(ValueError, match="ALG needs at least 2 seen classes"):
        select_alg(SeenAbsentState(6, [0], alg=True).update(z, np.zeros(4, int)), None, [0])
    weighted = state(alg=True).update(z, np.array([0, 1, 2, 0]), sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="ALG weighs every fine-tuning sample alike"):
        select_alg(weighted, None, [0, 1, 2])
    with pytest.raises(ValueError, match="prior counts every target sample alike"):
        select_prior(state().update(z, sample_weight=np.ones(4)), [0, 1, 2])
    with pytest.raises(ValueError, match="prior must be a share in"):
        select_prior(state().update(z), [0, 1, 2], prior=1.5)
    with pytest.raises(ValueError, match="prior: the state holds no sample yet"):
        select_prior(state(), [0, 1, 2])
    with pytest.raises(ValueError, match="criterion must be one of"):
        select_oracle(state().update(z, y), None, [0, 1, 2], criterion="f1")
    only_seen = state().update(z, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="criterion 'hmean' needs samples of both groups"):
        select_oracle(only_seen, None, [0, 1, 2], criterion="hmean")
    light = state(alg=True, keep_gaps=False).update(z, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="prior needs the gaps"):
        select_prior(light, [0, 1, 2])
    with pytest.raises(ValueError, match="oracle needs the gaps"):
        select_oracle(light, None, [0, 1, 2])


def test_pcv_states_refused_as_pseudo_splits_are():
    z = np.arange(24, dtype=np.float64).reshape(4, 6) % 5
    split = SeenAbsentState(6, [0, 1], [2, 3, 4, 5]).update(z, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="PCV may not touch U data"):
        select_pcv([split], [0, 1], [2, 3, 4, 5])
    narrow = SeenAbsentState(6, [0, 1], [2]).update(z, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match=r"pseudo_splits\[0\]: absent_classes .* leave out"):
        select_pcv([narrow], [0, 1, 2], [3])
    with pytest.raises(ValueError, match="disagree on the number of columns"):
        select_pcv([split], [0, 1, 2], num_classes=7)
    assert select_pcv([split], [0, 1, 2], [3, 4, 5], criterion="acc_all")[1]["n_splits"] == 1
    assert (
        LogitBiasCalibrator("pcv", criterion="acc_all")
        .fit(pseudo_splits=[split], seen_classes=[0, 1, 2], absent_classes=[3, 4, 5])
        .gamma_
        == select_pcv([split], [0, 1, 2], [3, 4, 5], criterion="acc_all")[0]
    )
