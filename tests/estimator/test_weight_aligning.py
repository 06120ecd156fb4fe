"""``wa``: the norm ratio, the corrected logits against a rescaled head, the data it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib.estimator.weight_aligning import WeightAligning


def _head(seed=0, c=7, d=5, seen_scale=3.0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(c, d))
    w[:3] *= seen_scale  # S = {0, 1, 2} grown by fine-tuning
    return w, rng.normal(size=c), rng.normal(size=(11, d))


def test_ratio_is_the_ratio_of_mean_row_norms_computed_plainly():
    w, b, _ = _head()
    wa = WeightAligning().fit(w, b, [0, 1, 2])
    norms = [math.sqrt(sum(float(x) ** 2 for x in row)) for row in w]
    expected = (sum(norms[:3]) / 3) / (sum(norms[3:]) / 4)
    assert wa.ratio_ == pytest.approx(expected, rel=1e-12)
    assert wa.ratio_ > 1  # the seen rows were scaled up
    assert wa.info_["ratio"] == wa.ratio_


def test_corrected_logits_are_those_of_a_head_with_rescaled_absent_rows():
    w, b, f = _head(1)
    logits = f @ w.T + b
    wa = WeightAligning().fit(w, b, [0, 1, 2])
    w_aligned = w.copy()
    w_aligned[3:] *= wa.ratio_  # rows only; the bias stays
    expected = f @ w_aligned.T + b
    np.testing.assert_allclose(wa.transform(logits), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(wa.predict(logits), np.argmax(expected, axis=1))
    head = torch.nn.Linear(5, 7).double()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        head.bias.copy_(torch.from_numpy(b))
    aligned = wa.aligned_head(head)
    out = aligned(torch.from_numpy(f)).detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(head.weight, torch.from_numpy(w))  # the given head is not modified


def test_head_without_bias_is_bias_zero():
    w, _, f = _head(2)
    wa = WeightAligning().fit(w, None, [0, 1, 2])
    np.testing.assert_array_equal(wa.absent_bias_, np.zeros(4))
    z = f @ w.T
    expected = z.copy()
    expected[:, 3:] *= wa.ratio_
    np.testing.assert_allclose(wa.transform(z), expected, rtol=1e-12)


def test_probabilities_sum_to_one_and_follow_predict():
    w, b, f = _head(3)
    wa = WeightAligning(temperature=2.0).fit(w, b, [0, 1, 2])
    p = wa.predict_proba(f @ w.T + b)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(p.argmax(axis=1), wa.predict(f @ w.T + b))
    corrected = wa.transform(f @ w.T + b) / 2.0
    e = np.exp(corrected - corrected.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"logits": np.zeros((2, 7))}, "wa does not use logits"),
        ({"labels": np.zeros(2, dtype=int)}, "wa does not use labels"),
        ({"pseudo_splits": []}, "wa does not use pseudo_splits"),
    ],
)
def test_refuses_any_data_but_the_head(kwargs, match):
    w, b, _ = _head()
    with pytest.raises(ValueError, match=match):
        WeightAligning().fit(w, b, [0, 1, 2], **kwargs)


def test_bad_head_values_name_wa_the_head_and_the_value():
    w, b, _ = _head()
    w[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"wa \(head\).*nan"):
        WeightAligning().fit(w, b, [0, 1, 2])
    w, b, _ = _head()
    b[5] = np.inf
    with pytest.raises(ValueError, match=r"wa \(head\): head_bias\[5\] is inf"):
        WeightAligning().fit(w, b, [0, 1, 2])
    w, b, _ = _head()
    w[3:] = 0.0
    with pytest.raises(ValueError, match="all zero"):
        WeightAligning().fit(w, b, [0, 1, 2])
    with pytest.raises(ValueError, match="temperature='fit'"):
        WeightAligning(temperature="fit").fit(*_head()[:2], [0, 1, 2])


def test_nan_logits_at_predict_are_refused():
    w, b, f = _head()
    wa = WeightAligning().fit(w, b, [0, 1, 2])
    z = f @ w.T + b
    z[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"wa \(fine-tuned logits\).*nan"):
        wa.predict(z)


def test_save_load_round_trip(tmp_path):
    w, b, f = _head(4)
    wa = WeightAligning(temperature=1.5).fit(w, b, [0, 2, 4], [1, 3, 5])
    wa.save(tmp_path / "wa.json")
    back = WeightAligning.load(tmp_path / "wa.json")
    assert back.ratio_ == wa.ratio_
    np.testing.assert_array_equal(back.absent_bias_, wa.absent_bias_)
    np.testing.assert_array_equal(back.absent_classes_, [1, 3, 5])
    z = f[:, :5] @ w[:, :5].T + b
    np.testing.assert_array_equal(back.transform(z), wa.transform(z))
    np.testing.assert_array_equal(back.predict_proba(z), wa.predict_proba(z))
