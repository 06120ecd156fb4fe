"""The contract every correction shares: scikit-learn parameters, not-fitted errors, file checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from calib.estimator.bias_correction import BiasCorrection
from calib.estimator.calibrator import NotFittedError
from calib.estimator.pretrained_ensemble import PretrainedEnsemble
from calib.estimator.weight_aligning import WeightAligning

CLASSES = [WeightAligning, BiasCorrection, PretrainedEnsemble]


@pytest.mark.parametrize("cls", CLASSES)
def test_clone_and_params(cls):
    est = cls(temperature=2.0)
    assert clone(est).get_params() == est.get_params()
    assert est.get_params()["temperature"] == 2.0


@pytest.mark.parametrize("cls", CLASSES)
def test_use_before_fit_raises_not_fitted(cls):
    with pytest.raises(NotFittedError, match=f"this {cls.__name__} is not fitted yet"):
        cls().predict(np.zeros((2, 3)))


def test_fit_returns_self_and_columns_are_checked():
    w = np.random.default_rng(0).normal(size=(4, 3))
    wa = WeightAligning()
    assert wa.fit(w, None, [0, 1]) is wa
    with pytest.raises(ValueError, match="logits has 5 columns but the correction was fitted on 4"):
        wa.predict(np.zeros((2, 5)))


def test_a_file_of_another_correction_or_corrupt_is_refused(tmp_path):
    w = np.random.default_rng(0).normal(size=(4, 3))
    WeightAligning().fit(w, None, [0, 1]).save(tmp_path / "wa.json")
    with pytest.raises(ValueError, match="is not a bic file: format tag 'calib.WeightAligning'"):
        BiasCorrection.load(tmp_path / "wa.json")
    data = json.loads((tmp_path / "wa.json").read_text())
    data["fitted"]["state"]["ratio_"] = "x"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="corrupt wa file: ratio_ must be a number"):
        WeightAligning.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="no wa file"):
        WeightAligning.load(tmp_path / "none.json")
