"""The selectors alg, prior, oracle and pcv given a streamed SeenAbsentState for their logits:
the same γ and info as from the logits themselves (ALG to float rounding), and one-line errors
for what a state cannot be given with."""

from __future__ import annotations

import numpy as np
import pytest

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
    with pytest.raises(TypeError, match=r"states\[1\] must be a SeenAbsentState"):
        select_pcv([state, PseudoSplit(z, y, SEEN, None)], SEEN)
