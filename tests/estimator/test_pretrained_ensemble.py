"""``gla``: the prior estimate against a plain mean of softmaxes, the ensemble, refusals, files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calib.estimator.pretrained_ensemble import PretrainedEnsemble


def _data(seed=0, n=40, c=5):
    rng = np.random.default_rng(seed)
    pre = rng.normal(size=(n, c)) + np.array([2.0, 0.0, 0.0, -1.0, 0.5])  # biased to class 0
    return pre, rng.normal(size=(n, c))


def test_prior_is_the_mean_softmax_of_the_pretrained_model():
    pre, _ = _data()
    gla = PretrainedEnsemble().fit(pre, seen_classes=[0, 1])
    rows = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in pre]
    prior = [sum(r[c] for r in rows) / len(rows) for c in range(5)]
    np.testing.assert_allclose(np.exp(gla.log_prior_), prior, rtol=1e-12)
    assert np.argmax(gla.log_prior_) == 0


def test_ensemble_is_the_sum_of_logits_minus_the_log_prior():
    pre, ft = _data(1)
    gla = PretrainedEnsemble().fit(pre, seen_classes=[0, 1])
    expected = [
        [ft[i, c] + pre[i, c] - gla.log_prior_[c] for c in range(5)] for i in range(len(ft))
    ]
    np.testing.assert_allclose(gla.transform(ft, pretrained_logits=pre), expected, rtol=1e-12)
    np.testing.assert_array_equal(
        gla.predict(ft, pretrained_logits=pre), np.argmax(expected, axis=1)
    )
    plain = PretrainedEnsemble(debias=False).fit(pre, seen_classes=[0, 1])
    np.testing.assert_array_equal(plain.log_prior_, np.zeros(5))
    np.testing.assert_allclose(plain.transform(ft, pretrained_logits=pre), ft + pre, rtol=1e-15)


def test_a_balanced_pretrained_model_has_no_prior_to_remove():
    # every sample the same logits up to a cyclic shift: each class gets the same mean mass
    row = np.array([3.0, 1.0, 0.0, -1.0, 0.5])
    pre = np.stack([np.roll(row, k) for k in range(5)])
    gla = PretrainedEnsemble().fit(pre, seen_classes=[0, 1])
    np.testing.assert_allclose(gla.log_prior_, np.full(5, -math.log(5)), rtol=1e-12)


def test_labels_are_refused_and_pretrained_logits_are_needed():
    pre, ft = _data()
    with pytest.raises(ValueError, match="gla does not use labels.*label-free"):
        PretrainedEnsemble().fit(pre, np.zeros(40, dtype=int), seen_classes=[0, 1])
    with pytest.raises(ValueError, match="gla needs logits"):
        PretrainedEnsemble().fit(seen_classes=[0, 1])
    gla = PretrainedEnsemble().fit(pre, seen_classes=[0, 1])
    with pytest.raises(ValueError, match="gla needs pretrained_logits.*second forward pass"):
        gla.predict(ft)
    with pytest.raises(ValueError, match=r"shape \(3, 5\) but the logits \(40, 5\)"):
        gla.predict(ft, pretrained_logits=pre[:3])
    with pytest.raises(ValueError, match="temperature='fit'"):
        PretrainedEnsemble(temperature="fit").fit(pre, seen_classes=[0, 1])


def test_non_finite_pretrained_logits_name_gla_the_kind_and_the_value():
    pre, ft = _data()
    pre[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"gla \(pre-trained logits\).*inf"):
        PretrainedEnsemble().fit(pre, seen_classes=[0, 1])
    pre, _ = _data()
    pre[:, 4] = -np.inf  # class 4 never gets any mass
    with pytest.raises(ValueError, match="class 4 gets no probability"):
        PretrainedEnsemble().fit(pre, seen_classes=[0, 1])


def test_save_load_round_trip(tmp_path):
    pre, ft = _data(2)
    gla = PretrainedEnsemble(temperature=0.5).fit(pre, seen_classes=[1, 3])
    gla.save(tmp_path / "gla.json")
    back = PretrainedEnsemble.load(tmp_path / "gla.json")
    np.testing.assert_array_equal(back.log_prior_, gla.log_prior_)
    np.testing.assert_array_equal(
        back.predict_proba(ft, pretrained_logits=pre), gla.predict_proba(ft, pretrained_logits=pre)
    )
