"""``bic``: (α, β) against a brute-force minimiser, PCV's data discipline, bad input, files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from calib.estimator.bias_correction import BiasCorrection
from calib.selectors import PseudoSplit

SEEN = [0, 1, 2, 3]  # U = {4, 5}


def _splits(seed=0, n=120):
    rng = np.random.default_rng(seed)
    out = []
    for pseudo_absent in ([2, 3], [0, 1]):
        y = rng.choice(SEEN, size=n)
        z = rng.normal(size=(n, 6))
        z[np.arange(n), y] += 2.5
        absent = pseudo_absent + [4, 5]
        z[:, absent] = 0.6 * z[:, absent] - 1.2  # the pseudo model's low absent logits
        pseudo_seen = [c for c in SEEN if c not in pseudo_absent]
        out.append(PseudoSplit(z, y, pseudo_seen, absent))
    return out


def _plain_nll(splits, alpha, beta):
    """Mean over splits of the mean NLL, one row and one column at a time."""
    total = 0.0
    for s in splits:
        absent = set(int(c) for c in s.absent_classes)
        nll = 0.0
        for row, label in zip(s.logits, s.labels, strict=True):
            scores = [alpha * v + beta if c in absent else v for c, v in enumerate(row)]
            top = max(scores)
            nll += top + math.log(sum(math.exp(v - top) for v in scores)) - scores[int(label)]
        total += nll / len(s.labels)
    return total / len(splits)


def test_alpha_beta_match_a_brute_force_minimiser():
    splits = _splits()
    bic = BiasCorrection().fit(pseudo_splits=splits, seen_classes=SEEN)
    ref = minimize(
        lambda x: _plain_nll(splits, x[0], x[1]),
        x0=[1.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 4000},
    )
    assert ref.success
    assert bic.alpha_ == pytest.approx(ref.x[0], abs=1e-4)
    assert bic.beta_ == pytest.approx(ref.x[1], abs=1e-4)
    assert bic.info_["nll"] == pytest.approx(_plain_nll(splits, bic.alpha_, bic.beta_), rel=1e-9)
    assert bic.info_["nll"] <= ref.fun + 1e-10
    assert bic.alpha_ > 1 and bic.beta_ > 0  # it undoes the pseudo models' low absent logits


def test_correction_applies_to_the_real_absent_columns_only():
    bic = BiasCorrection().fit(pseudo_splits=_splits(1), seen_classes=SEEN)
    z = np.random.default_rng(5).normal(size=(9, 6))
    out = bic.transform(z)
    np.testing.assert_array_equal(out[:, :4], z[:, :4])
    np.testing.assert_allclose(out[:, 4:], bic.alpha_ * z[:, 4:] + bic.beta_, rtol=1e-15)
    np.testing.assert_array_equal(bic.predict(z), np.argmax(out, axis=1))


def test_fitted_temperature_minimises_the_nll_of_the_corrected_splits():
    splits = _splits(2)
    bic = BiasCorrection(temperature="fit").fit(pseudo_splits=splits, seen_classes=SEEN)
    t = bic.temperature_

    def nll_at(temp):
        scaled = [
            PseudoSplit(
                np.where(
                    np.isin(np.arange(6), s.absent_classes),
                    bic.alpha_ * s.logits + bic.beta_,
                    s.logits,
                )
                / temp,
                s.labels,
                s.seen_classes,
                s.absent_classes,
            )
            for s in splits
        ]
        return _plain_nll(scaled, 1.0, 0.0)

    assert nll_at(t) <= nll_at(t * 1.01) and nll_at(t) <= nll_at(t / 1.01)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"logits": np.zeros((3, 6))}, "bic does not use logits"),
        ({"labels": np.zeros(3, dtype=int)}, "bic does not use labels"),
    ],
)
def test_refuses_target_rows_like_pcv(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BiasCorrection().fit(pseudo_splits=_splits(), seen_classes=SEEN, **kwargs)


def test_a_u_label_or_a_split_without_u_is_refused():
    splits = _splits()
    bad = splits[0]
    labels = bad.labels.copy()
    labels[7] = 5
    splits[0] = PseudoSplit(bad.logits, labels, bad.seen_classes, bad.absent_classes)
    with pytest.raises(
        ValueError,
        match=r"bic \(pseudo_splits\[0\]\): 1 label\(s\) lie in the absent classes U, e.g. 5",
    ):
        BiasCorrection().fit(pseudo_splits=splits, seen_classes=SEEN)
    splits = _splits()
    s = splits[1]
    splits[1] = PseudoSplit(s.logits, s.labels, s.seen_classes, [0, 1, 4])
    with pytest.raises(ValueError, match=r"leave out the real absent classes \[5\]"):
        BiasCorrection().fit(pseudo_splits=splits, seen_classes=SEEN)
    with pytest.raises(ValueError, match="bic needs pseudo_splits"):
        BiasCorrection().fit(seen_classes=SEEN)


def test_without_pseudo_absent_rows_there_is_no_minimum():
    s = _splits()[0]
    keep = np.isin(s.labels, s.seen_classes)
    only_seen = PseudoSplit(s.logits[keep], s.labels[keep], s.seen_classes, s.absent_classes)
    with pytest.raises(ValueError, match="no held-out row of a pseudo-absent class"):
        BiasCorrection().fit(pseudo_splits=[only_seen], seen_classes=SEEN)


def test_nan_logits_name_bic_the_split_and_the_value():
    splits = _splits()
    z = splits[1].logits.copy()
    z[3, 2] = np.nan
    splits[1] = PseudoSplit(z, splits[1].labels, splits[1].seen_classes, splits[1].absent_classes)
    with pytest.raises(ValueError, match=r"bic \(pseudo_splits\): pseudo_splits\[1\].logits.*nan"):
        BiasCorrection().fit(pseudo_splits=splits, seen_classes=SEEN)


def test_save_load_round_trip(tmp_path):
    bic = BiasCorrection(temperature="fit").fit(pseudo_splits=_splits(3), seen_classes=SEEN)
    bic.save(tmp_path / "bic.json")
    back = BiasCorrection.load(tmp_path / "bic.json")
    assert (back.alpha_, back.beta_, back.temperature_) == (bic.alpha_, bic.beta_, bic.temperature_)
    z = np.random.default_rng(0).normal(size=(8, 6))
    np.testing.assert_array_equal(back.predict_proba(z), bic.predict_proba(z))
    assert back.info_["converged"] is True


def test_masked_minus_inf_logits_are_refused():
    splits = _splits()
    z = splits[0].logits.copy()
    z[1, 5] = -np.inf
    splits[0] = PseudoSplit(z, splits[0].labels, splits[0].seen_classes, splits[0].absent_classes)
    with pytest.raises(ValueError, match=r"bic \(pseudo_splits\[0\]\): logits\[1, 5\] is -inf"):
        BiasCorrection().fit(pseudo_splits=splits, seen_classes=SEEN)
