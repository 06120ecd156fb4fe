"""LogitBiasCalibrator: estimator contract, dispatch to the selectors, transform/predict, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib.estimator.calibrator import (
    FILE_FORMAT,
    FILE_VERSION,
    LogitBiasCalibrator,
    NotFittedError,
)
from calib.selectors import PseudoSplit, select_alg, select_oracle, select_prior

SEEN = [0, 1, 2, 3]
ABSENT = [4, 5, 6, 7, 8, 9]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(80, 10)).astype(np.float32)
    logits[:, SEEN] += 1.5
    labels = rng.integers(0, 10, size=80)
    return logits, labels


def fitted(gamma: float = 0.75, **kwargs) -> LogitBiasCalibrator:
    return LogitBiasCalibrator(method="fixed", gamma=gamma).fit(
        seen_classes=SEEN, num_classes=10, **kwargs
    )


# ----------------------------------------------------------------------------- contract


def test_init_only_stores_and_params_round_trip():
    cal = LogitBiasCalibrator(method="no-such-method", criterion="hmean")
    assert cal.get_params() == {
        "method": "no-such-method",
        "gamma": None,
        "criterion": "hmean",
        "prior": None,
        "options": None,
        "temperature": None,
    }
    assert cal.set_params(method="oracle") is cal and cal.method == "oracle"
    assert repr(cal) == "LogitBiasCalibrator(criterion='hmean', method='oracle')"
    with pytest.raises(ValueError, match="no parameter"):
        cal.set_params(gama=1.0)
    assert not hasattr(cal, "gamma_")


def test_unknown_method_is_reported_at_fit():
    with pytest.raises(ValueError, match="unknown selector 'agl'.*Did you mean 'alg'"):
        LogitBiasCalibrator(method="agl").fit(np.zeros((2, 3)), [0, 1], [0, 1])


def test_fit_matches_the_selectors(data):
    logits, labels = data
    train = np.isin(labels, SEEN)
    cal = LogitBiasCalibrator().fit(logits[train], labels[train], SEEN)
    assert cal.gamma_ == select_alg(logits[train], labels[train], SEEN)[0]
    assert cal.num_classes_ == 10
    assert cal.seen_classes_.tolist() == SEEN and cal.absent_classes_.tolist() == ABSENT
    assert cal.info_["method"] == "alg"

    cal = LogitBiasCalibrator("oracle", criterion="hmean").fit(logits, labels, SEEN)
    assert cal.gamma_ == select_oracle(logits, labels, SEEN, criterion="hmean")[0]
    assert cal.info_["criterion"] == "hmean"

    cal = LogitBiasCalibrator("prior", prior=0.3).fit(logits, None, SEEN)
    assert cal.gamma_ == select_prior(logits, SEEN, prior=0.3)[0]

    assert fitted(-2.5).gamma_ == -2.5


def test_fit_with_pseudo_splits(data):
    logits, labels = data
    rng = np.random.default_rng(1)
    s_labels = rng.choice(SEEN, size=80)
    split = PseudoSplit(logits, s_labels, [0, 1], [2, 3, *ABSENT])
    cal = LogitBiasCalibrator("pcv").fit(pseudo_splits=(split,), seen_classes=SEEN)
    assert cal.num_classes_ == 10 and cal.info_["n_splits"] == 1
    assert cal.info_["criterion"] == "hmean"


def test_fit_refuses_data_a_selector_does_not_use(data):
    logits, labels = data
    with pytest.raises(ValueError, match="'prior' does not use labels: it is label-free"):
        LogitBiasCalibrator("prior").fit(logits, labels, SEEN)
    with pytest.raises(ValueError, match="'pcv' does not use logits"):
        LogitBiasCalibrator("pcv").fit(logits, seen_classes=SEEN, pseudo_splits=[])
    with pytest.raises(ValueError, match="'alg' takes no parameter 'criterion'"):
        LogitBiasCalibrator("alg", criterion="hmean").fit(logits, labels, SEEN)
    with pytest.raises(ValueError, match="'oracle' needs labels"):
        LogitBiasCalibrator("oracle").fit(logits, None, SEEN)
    with pytest.raises(ValueError, match="'fixed' needs gamma"):
        LogitBiasCalibrator("fixed").fit(seen_classes=SEEN, num_classes=10)


def test_fit_checks_classes_and_widths(data):
    logits, labels = data
    with pytest.raises(ValueError, match="needs seen_classes"):
        LogitBiasCalibrator().fit(logits, labels)
    with pytest.raises(ValueError, match="inconsistent number of classes"):
        LogitBiasCalibrator("prior").fit(logits, seen_classes=SEEN, num_classes=12)
    with pytest.raises(ValueError, match="cannot tell the number of classes"):
        LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=SEEN)
    with pytest.raises(ValueError, match="overlap"):
        LogitBiasCalibrator("prior").fit(logits, seen_classes=SEEN, absent_classes=[3, 4])
    with pytest.raises(ValueError, match="absent_classes is empty"):
        LogitBiasCalibrator("prior").fit(logits, seen_classes=range(10))
    with pytest.raises(ValueError, match="non-finite"):
        bad = logits.copy()
        bad[3, 2] = np.nan
        LogitBiasCalibrator("prior").fit(bad, seen_classes=SEEN)
    with pytest.raises(ValueError, match="out of range"):
        LogitBiasCalibrator("oracle").fit(logits, np.full(80, 10), SEEN)
    with pytest.raises(ValueError, match="ALG may only see fine-tuning"):
        LogitBiasCalibrator("alg").fit(logits, labels, SEEN)


# ----------------------------------------------------------------------------- using γ


@pytest.mark.parametrize("method", ["transform", "predict", "score", "report", "save"])
def test_use_before_fit_raises_not_fitted(method, tmp_path):
    cal = LogitBiasCalibrator()
    arg = [tmp_path / "x.json"] if method == "save" else [np.zeros((2, 10))]
    if method in ("score", "report"):
        arg.append([0, 1])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(cal, method)(*arg)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_transform_adds_gamma_to_absent_columns_only(data):
    logits, _ = data
    cal = fitted(0.75, absent_classes=[4, 5])  # columns 6..9 are extra (R): un-shifted
    out = cal.transform(logits)
    assert out.dtype == np.float64 and out is not logits
    exact = logits[:, [4, 5]].astype(np.float64) + 0.75
    # γ added in float64, then lowered by 2-4 units in the last place (ties stay out of U)
    assert np.all(out[:, [4, 5]] < exact)
    np.testing.assert_allclose(out[:, [4, 5]], exact, rtol=2**-49, atol=0)
    np.testing.assert_array_equal(np.delete(out, [4, 5], axis=1), np.delete(logits, [4, 5], axis=1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_transform_keeps_tensor_type_and_device_in_float64(dtype, data):
    logits = torch.from_numpy(data[0]).to(dtype)
    before = logits.clone()
    out = fitted().transform(logits)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert out.device == logits.device
    assert torch.equal(logits, before)
    expected = fitted().transform(before.double().numpy())
    assert torch.equal(out, torch.from_numpy(expected))


def test_transform_and_predict_check_their_input(data):
    cal = fitted()
    with pytest.raises(ValueError, match="9 columns but the calibrator was fitted on 10"):
        cal.transform(data[0][:, :9])
    with pytest.raises(ValueError, match="9 columns"):
        cal.transform(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="9 columns"):
        cal.predict(data[0][:, :9])
    with pytest.raises(ValueError, match="non-finite"):
        cal.transform(torch.full((2, 10), float("nan")))
    with pytest.raises(ValueError, match="non-finite"):
        cal.predict(np.full((2, 10), np.inf))
    with pytest.raises(ValueError, match="2-D"):
        cal.transform(torch.zeros(10))


def test_predict_is_the_argmax_of_transform_and_keeps_the_type(data):
    logits, _ = data
    cal = fitted(0.75)
    pred = cal.predict(logits)
    assert pred.dtype == np.int64
    np.testing.assert_array_equal(pred, cal.transform(logits.astype(np.float64)).argmax(axis=1))
    pred_t = cal.predict(torch.from_numpy(logits))
    assert isinstance(pred_t, torch.Tensor) and pred_t.dtype == torch.int64
    np.testing.assert_array_equal(pred_t.numpy(), pred)


def test_predict_tie_between_groups_stays_on_the_seen_column():
    cal = LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=[0], num_classes=2)
    # gap exactly 1.0 = γ: the non-absent column keeps the sample
    assert cal.predict(np.array([[2.0, 1.0], [2.0, 1.5]])).tolist() == [0, 1]


def test_score_is_acc_all_and_report_the_accuracy_report_at_gamma(data):
    from calib.metrics import accuracy_report

    logits, labels = data
    cal = LogitBiasCalibrator("oracle").fit(logits, labels, SEEN)
    report = cal.report(logits, labels)
    assert report == accuracy_report(logits, labels, SEEN, gamma=cal.gamma_)
    assert report["acc_all"] == pytest.approx(cal.info_["value"])
    score = cal.score(logits, labels)
    assert type(score) is float and score == report["acc_all"]
    assert score == float(np.mean(cal.predict(logits) == labels))
    weights = np.linspace(0.5, 2.0, labels.size)
    expected = np.sum(weights * (cal.predict(logits) == labels)) / weights.sum()
    assert cal.score(logits, labels, sample_weight=weights) == pytest.approx(expected)


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("gamma", [0.1 + 0.2, -0.0, 0.0, 1e300, -3.0e-310, 7.0])
def test_save_load_round_trip_is_exact(gamma, tmp_path):
    cal = fitted(gamma, absent_classes=[4, 7])
    path = tmp_path / "sub" / "cal.json"
    cal.save(path)
    back = LogitBiasCalibrator.load(path)
    assert back.gamma_ == gamma and np.copysign(1, back.gamma_) == np.copysign(1, gamma)
    assert back.get_params() == cal.get_params()
    assert back.seen_classes_.tolist() == SEEN and back.absent_classes_.tolist() == [4, 7]
    assert back.num_classes_ == 10 and back.info_ == cal.info_
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left


def test_save_load_keeps_selector_info(data, tmp_path):
    logits, labels = data
    cal = LogitBiasCalibrator("oracle").fit(
        torch.from_numpy(logits), torch.from_numpy(labels), SEEN
    )
    cal.save(tmp_path / "oracle.json")
    back = LogitBiasCalibrator.load(tmp_path / "oracle.json")
    assert back.gamma_ == cal.gamma_
    assert back.info_["value"] == cal.info_["value"]
    # non-finite info numbers (an unbounded interval end) are written as null
    expected = [v if np.isfinite(v) else None for v in cal.info_["interval"]]
    assert back.info_["interval"] == expected
    x = np.random.default_rng(5).normal(size=(30, 10))
    np.testing.assert_array_equal(back.predict(x), cal.predict(x))
    payload = json.loads((tmp_path / "oracle.json").read_text())
    assert payload["format"] == FILE_FORMAT and payload["version"] == FILE_VERSION


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match="missing.json"):
        LogitBiasCalibrator.load(missing)

    good = tmp_path / "good.json"
    fitted().save(good)
    payload = json.loads(good.read_text())

    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return path

    cases = {
        write(
            "corrupt.json", good.read_text()[:-20]
        ): "corrupt.json is not a calibrator file .invalid JSON",
        write("list.json", "[1, 2]"): "list.json is not a calibrator file: format tag None",
        write("foreign.json", json.dumps({"format": "other", "gamma": 1})): "foreign.json.*'other'",
        write("v3.json", json.dumps({**payload, "version": 3})): "v3.json.*version 3",
    }
    broken = json.loads(good.read_text())
    broken["fitted"]["gamma"] = "1.0"
    cases[write("gamma.json", json.dumps(broken))] = "gamma.json is a corrupt.*finite number"
    broken = json.loads(good.read_text())
    del broken["fitted"]["seen_classes"]
    cases[write("noseen.json", json.dumps(broken))] = "noseen.json.*missing field 'seen_classes'"
    broken = json.loads(good.read_text())
    broken["fitted"]["absent_classes"] = [3, 4]
    cases[write("overlap.json", json.dumps(broken))] = "overlap.json.*overlap"
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    cases[binary] = "binary.json is not a calibrator file"
    for path, match in cases.items():
        with pytest.raises(ValueError, match=match):
            LogitBiasCalibrator.load(path)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_stay_on_the_device(data):
    logits = torch.from_numpy(data[0]).cuda()
    cal = fitted()
    out = cal.transform(logits)
    assert out.is_cuda and torch.equal(out.cpu(), cal.transform(logits.cpu()))
    pred = cal.predict(logits)
    assert pred.is_cuda and torch.equal(pred.cpu(), cal.predict(logits.cpu()))
