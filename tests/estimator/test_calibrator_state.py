"""LogitBiasCalibrator.fit from streamed SeenAbsentStates: the same fitted γ as from the logits,
and the inputs a state cannot serve refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from calib import LogitBiasCalibrator
from calib.metrics.streaming import SeenAbsentState
from calib.selectors import PseudoSplit

C, SEEN = 16, np.arange(6)


def data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, C)).round(2)
    z[:, SEEN] += 1.0
    return z, rng.integers(0, C, n)


def stream(z, y=None, seen=SEEN, absent=None, **kwargs) -> SeenAbsentState:
    state = SeenAbsentState(C, seen, absent, **kwargs)
    for at in range(0, len(z), 64):
        state.update(z[at : at + 64], None if y is None else y[at : at + 64])
    return state


def test_fit_from_states_equals_fit_from_logits():
    z, y = data()
    y_s = SEEN[y % SEEN.size]
    alg = LogitBiasCalibrator("alg").fit(stream(z, y_s, alg=True), seen_classes=SEEN)
    assert alg.gamma_ == pytest.approx(
        LogitBiasCalibrator("alg").fit(z, y_s, SEEN).gamma_, rel=1e-12
    )
    prior = LogitBiasCalibrator("prior", prior=0.4).fit(stream(z), seen_classes=SEEN)
    assert prior.gamma_ == LogitBiasCalibrator("prior", prior=0.4).fit(z, seen_classes=SEEN).gamma_
    oracle = LogitBiasCalibrator("oracle", criterion="hmean").fit(stream(z, y), seen_classes=SEEN)
    want = LogitBiasCalibrator("oracle", criterion="hmean").fit(z, y, SEEN)
    assert (oracle.gamma_, oracle.info_) == (want.gamma_, want.info_)
    assert oracle.num_classes_ == C and np.array_equal(oracle.absent_classes_, np.arange(6, C))
    np.testing.assert_array_equal(oracle.predict(z), want.predict(z))
    rng = np.random.default_rng(1)
    splits, states = [], []
    for _ in range(2):
        p_seen = np.sort(rng.choice(SEEN, 4, replace=False))
        p_absent = np.setdiff1d(np.arange(C), p_seen)
        zs, _ = data(int(rng.integers(100)), 120)
        ys = rng.choice(SEEN, 120)
        splits.append(PseudoSplit(zs, ys, p_seen, p_absent))
        states.append(stream(zs, ys, p_seen, p_absent))
    pcv = LogitBiasCalibrator("pcv").fit(pseudo_splits=states, seen_classes=SEEN)
    assert (
        pcv.gamma_ == LogitBiasCalibrator("pcv").fit(pseudo_splits=splits, seen_classes=SEEN).gamma_
    )


def test_what_fit_refuses_with_a_state():
    z, y = data()
    state = stream(z, y)
    with pytest.raises(ValueError, match="method 'fixed' does not take a SeenAbsentState"):
        LogitBiasCalibrator("fixed", gamma=1.0).fit(state, seen_classes=SEEN)
    with pytest.raises(
        ValueError, match="method 'oracle' does not take a SeenAbsentState as pseudo"
    ):
        LogitBiasCalibrator("oracle").fit(pseudo_splits=[state], seen_classes=SEEN)
    with pytest.raises(ValueError, match="temperature='fit' needs the logits themselves"):
        LogitBiasCalibrator("oracle", temperature="fit").fit(state, seen_classes=SEEN)
    with pytest.raises(ValueError, match="sample_weight given with a SeenAbsentState"):
        LogitBiasCalibrator("oracle").fit(state, seen_classes=SEEN, sample_weight=np.ones(300))
    with pytest.raises(ValueError, match=r"inconsistent number of classes: \[16, 17\]"):
        LogitBiasCalibrator("oracle").fit(state, seen_classes=SEEN, num_classes=17)
    with pytest.raises(ValueError, match="labels given with a SeenAbsentState"):
        LogitBiasCalibrator("oracle").fit(state, y, SEEN)
    with pytest.raises(ValueError, match="absent_classes .* differ from those the SeenAbsentState"):
        LogitBiasCalibrator("oracle").fit(state, seen_classes=SEEN, absent_classes=[7, 8])
