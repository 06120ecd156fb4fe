"""The scikit-learn contract of LogitBiasCalibrator, and deploying a calibrated model
(mode, jit.script, jit.trace, torch.export, ONNX, save/load with weights_only, timm features)."""

from __future__ import annotations

import importlib.util
import pickle
import warnings

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.estimator_checks import check_estimator
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from calib.estimator.calibrator import LogitBiasCalibrator, NotFittedError
from calib.extract import extract
from calib.wrapper import CalibratedClassifier, calibrate

SEEN = [0, 1, 2]


# ----------------------------------------------------------------------------- scikit-learn


def test_fitted_state_tags_repr_clone_and_error():
    cal = LogitBiasCalibrator("oracle", criterion="hmean", options=None)
    assert issubclass(NotFittedError, SklearnNotFittedError) and is_classifier(cal)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(cal)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        cal.predict(np.zeros((2, 6)))
    twin = clone(cal)
    assert twin is not cal and twin.get_params() == cal.get_params()
    html = cal._repr_html_()
    assert "LogitBiasCalibrator" in html and "hmean" in html
    tags = cal.__sklearn_tags__()
    assert tags.estimator_type == "classifier" and not tags.target_tags.required
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(40, 6)), rng.integers(0, 6, 40)
    cal.fit(z, y, SEEN)
    check_is_fitted(cal)
    back = pickle.loads(pickle.dumps(cal))
    assert back.gamma_ == cal.gamma_ and np.array_equal(back.predict(z), cal.predict(z))
    assert not hasattr(clone(cal), "gamma_")


class PriorOnHalf(LogitBiasCalibrator):
    """scikit-learn's checks call ``fit(X, y)`` only: S = the first half of X's columns."""

    def fit(self, X, y=None):
        width = np.asarray(X).shape[-1] if np.ndim(np.asarray(X)) == 2 else 2
        return super().fit(X, seen_classes=range(max(1, width // 2)))


#: The scikit-learn checks that do not apply, and why (every other one must pass).
NOT_APPLICABLE = {
    # calib's vocabulary: score(logits, labels), not score(X, y)
    "check_fit_score_takes_y": "arguments named logits/labels",
    # calib's own messages (they name `logits`), not scikit-learn's wording
    "check_n_features_in_after_fitting": "own message for a wrong column count",
    "check_complex_data": "own message for complex logits",
    "check_dtype_object": "own message for object dtype",
    "check_estimators_empty_data_messages": "own message for empty logits",
    "check_fit2d_1feature": "one column: nothing to calibrate (own message)",
    "check_fit2d_predict1d": "own message for 1-D logits",
    "check_n_features_in": "n_features_in_ is set, but checked with sklearn's validate_data",
    # logits are dense score matrices
    "check_estimator_sparse_tag": "dense logits only",
    "check_estimator_sparse_array": "dense logits only",
    "check_estimator_sparse_matrix": "dense logits only",
    # predict returns a column index of the logits; y is not what is learnt, and the
    # label-free `prior` used here ignores y entirely
    "check_classifiers_one_label": "predict returns logit columns, not learnt labels",
    "check_classifiers_classes": "classes_ are the logit columns",
    "check_classifiers_train": "prior ignores y",
    "check_classifiers_regression_target": "prior ignores y",
    "check_supervised_y_no_nan": "prior ignores y",
    "check_supervised_y_2d": "prior ignores y",
    # no fit_transform: a calibrator is fitted on one set (fine-tuning data) and transforms
    # another (test logits); fit_transform would invite fitting on the data it scores
    "check_transformer_general": "no fit_transform",
    "check_transformer_preserve_dtypes": "no fit_transform",
    "check_transformer_data_not_an_array": "no fit_transform",
    "check_array_api_input": "skipped by scikit-learn unless SCIPY_ARRAY_API is set",
}


def test_scikit_learn_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(PriorOnHalf("prior"), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] != "passed"}
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert failed <= set(NOT_APPLICABLE), (
        f"sklearn {sklearn.__version__}: {failed - set(NOT_APPLICABLE)}"
    )
    must_pass = {
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_methods_subset_invariance",
        "check_methods_sample_order_invariance",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_dict_unchanged",
        "check_estimators_dtypes",
        "check_readonly_memmap_input",
        "check_pipeline_consistency",
        "check_get_params_invariance",
        "check_set_params",
        "check_estimator_cloneable",
        "check_no_attributes_set_in_init",
    }
    assert must_pass <= passed


# ----------------------------------------------------------------------------- deployment


@pytest.fixture
def wrapped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6)).eval()
    return CalibratedClassifier(model, 1.25, [3, 4, 5], 6)


def test_calibrate_returns_the_wrapper_in_the_model_mode():
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5)).eval()
    data = TensorDataset(torch.randn(20, 4), torch.randint(0, 3, (20,)))
    out = calibrate(model, DataLoader(data, batch_size=8), SEEN, progress=False)
    assert not out.training and not model.training and not model[1].training
    model.train()
    out = calibrate(model, DataLoader(data, batch_size=8), SEEN, progress=False)
    assert out.training and model.training


def test_torch_shift_is_the_numpy_shift():
    from calib.rules.gaps import shifted_logits
    from calib.rules.torch_ops import shifted_logits_torch

    z = np.array([[0.0, -1.5, 3.0, -np.inf], [1e-300, 0.0, -2.0, 7.0]])
    mask = torch.tensor([False, True, False, True])
    got = shifted_logits_torch(torch.from_numpy(z), mask, torch.tensor(0.75, dtype=torch.float64))
    np.testing.assert_array_equal(got.numpy(), shifted_logits(z, np.array([1, 3]), 0.75))


def test_jit_script_trace_and_export_give_the_same_logits(wrapped):
    x = torch.randn(7, 5)
    with torch.no_grad():
        want = wrapped(x)
        scripted = torch.jit.script(wrapped)
        assert torch.equal(scripted(x), want)
        traced = torch.jit.trace(wrapped, (x,))
        assert torch.equal(traced(torch.randn(7, 5) * 0 + x), want)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(wrapped, (x,), dynamic_shapes={"x": {0: batch}})
    assert torch.equal(program.module()(x), want)
    assert program.module()(x[:3]).shape == (3, 6)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
def test_onnx_export(wrapped, tmp_path):
    path = tmp_path / "calibrated.onnx"
    torch.onnx.export(wrapped, (torch.randn(2, 5),), str(path))
    assert path.stat().st_size > 0


def test_save_and_load_is_one_call_each_with_weights_only(wrapped, tmp_path):
    path = tmp_path / "calibrated.pt"
    wrapped.save(path)
    torch.load(path, weights_only=True)  # no code in the file
    fresh = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6))
    back = CalibratedClassifier.load(path, fresh)
    x = torch.randn(4, 5)
    with torch.no_grad():
        assert torch.equal(back(x), wrapped(x))
    assert float(back.gamma) == 1.25 and back.absent_classes.tolist() == [3, 4, 5]
    (tmp_path / "junk.pt").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="junk.pt is not a calibrated-model file"):
        CalibratedClassifier.load(tmp_path / "junk.pt", fresh)
    with pytest.raises(RuntimeError, match="size mismatch"):
        CalibratedClassifier.load(path, nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 6)))


# ----------------------------------------------------------------------------- timm


def test_timm_models_give_features_without_an_adapter():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=6).eval()
    x = torch.randn(5, 3, 32, 32)
    got = extract(model, DataLoader(TensorDataset(x), batch_size=2), features=True, progress=False)
    with torch.no_grad():
        trunk = model.forward_features(x)
        want_features = model.forward_head(trunk, pre_logits=True)
        want_logits = model(x)
    assert got.features.shape == (5, model.num_features)
    torch.testing.assert_close(got.features, want_features)
    torch.testing.assert_close(got.logits, want_logits)
    wrapped = CalibratedClassifier(model, 0.5, [3, 4, 5], 6)
    with torch.no_grad():
        features, logits = wrapped.forward_features_logits(x)
    torch.testing.assert_close(features, want_features)
    assert torch.equal(logits, wrapped(x))
