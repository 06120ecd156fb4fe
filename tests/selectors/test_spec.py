"""Selectors declare their data: SelectorSpec, register_selector, and a user selector end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import calib
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.selectors import (
    DATA_INPUTS,
    DATA_KINDS,
    REQUIRED,
    SELECTORS,
    SelectorSpec,
    register_selector,
    selector_arguments,
)
from calib.wrapper import calibrate

SEEN = [0, 1, 2]
C = 6


def test_every_builtin_selector_declares_its_data_and_parameters():
    declared = {
        name: (SELECTORS.get(name).data, dict(SELECTORS.get(name).params)) for name in SELECTORS
    }
    assert declared == {
        "alg": ("finetune_train", {}),
        "oracle": ("target_labelled", {"criterion": "acc_all", "average": "micro"}),
        "prior": ("target_unlabelled", {"prior": None}),
        "pcv": ("pseudo_splits", {"criterion": "hmean", "average": "micro"}),
        "fixed": (None, {"gamma": REQUIRED}),
    }
    assert [n for n in SELECTORS if SELECTORS.get(n).uses_absent_labels] == ["oracle"]
    assert [n for n in SELECTORS if SELECTORS.get(n).sample_weight] == ["oracle"]
    assert set(DATA_INPUTS) == {*DATA_KINDS, None}
    assert all(
        isinstance(SELECTORS.get(n), SelectorSpec) and SELECTORS.get(n).description
        for n in SELECTORS
    )
    assert SELECTORS.get("prior").needs_logits and not SELECTORS.get("prior").needs_labels


def test_check_params_fills_defaults_and_names_bad_values():
    oracle = SELECTORS.get("oracle")
    assert oracle.check_params({}) == {"criterion": "acc_all", "average": "micro"}
    assert oracle.check_params({"criterion": "hmean"}) == {"criterion": "hmean", "average": "micro"}
    with pytest.raises(ValueError, match="criterion must be one of .* got 'f1'"):
        oracle.check_params({"criterion": "f1"})
    with pytest.raises(ValueError, match="average must be one of .* got 'weighted'"):
        oracle.check_params({"average": "weighted"})
    with pytest.raises(ValueError, match="'oracle' takes no parameter 'prior' \\(got 0.3\\)"):
        oracle.check_params({"prior": 0.3})
    with pytest.raises(ValueError, match="prior must be a real number, got 'abc'"):
        SELECTORS.get("prior").check_params({"prior": "abc"})
    with pytest.raises(ValueError, match="'fixed' needs gamma"):
        SELECTORS.get("fixed").check_params({})
    with pytest.raises(ValueError, match="gamma must be a real number, got '2.5'"):
        SELECTORS.get("fixed").check_params({"gamma": "2.5"})


def test_a_declaration_is_checked_when_registered():
    with pytest.raises(ValueError, match="data must be one of"):
        register_selector("bad_kind", data="test_labels")(lambda **kw: (0.0, {}))
    with pytest.raises(ValueError, match="data keywords"):
        register_selector("bad_param", data=None, params={"logits": 1})(lambda **kw: (0.0, {}))
    assert "bad_kind" not in SELECTORS and "bad_param" not in SELECTORS


def test_selector_arguments_is_a_deprecated_shim():
    with pytest.deprecated_call():
        required, optional = selector_arguments("prior")
    assert required == {"logits", "seen_classes"} and "labels" not in required | optional
    assert "prior" in optional


# ----------------------------------------------------------------------------- a user selector

CALLS: list[dict] = []


@pytest.fixture
def median_gap():
    """A label-free user selector with one parameter, registered for one test only."""

    def select(logits, seen_classes, absent_classes, num_classes, q):
        CALLS.append({"logits": logits, "num_classes": num_classes, "q": q})
        z = np.asarray(logits, dtype=np.float64)
        other = np.setdiff1d(np.arange(num_classes), absent_classes)
        gap = z[:, other].max(axis=1) - z[:, absent_classes].max(axis=1)
        return float(np.quantile(gap, q)), {"method": "median_gap", "q": q}

    def check_q(q):
        if not isinstance(q, float) or not 0 <= q <= 1:
            raise ValueError(f"q must be a float in [0, 1], got {q!r}")
        return q

    register_selector(
        "median_gap",
        data="target_unlabelled",
        params={"q": 0.5},
        checks={"q": check_q},
        description="a quantile of the unlabelled gaps",
    )(select)
    CALLS.clear()
    yield select
    SELECTORS.unregister("median_gap")
    assert "median_gap" not in SELECTORS


def test_user_selector_through_the_calibrator(median_gap):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, C))
    cal = LogitBiasCalibrator("median_gap", options={"q": 0.25}).fit(z, seen_classes=SEEN)
    assert cal.gamma_ == median_gap(z, np.array(SEEN), np.array([3, 4, 5]), C, 0.25)[0]
    assert CALLS[0]["num_classes"] == C and CALLS[0]["q"] == 0.25
    assert LogitBiasCalibrator("median_gap").fit(z, seen_classes=SEEN).info_["q"] == 0.5
    with pytest.raises(ValueError, match="'median_gap' does not use labels: it is label-free"):
        LogitBiasCalibrator("median_gap").fit(z, rng.integers(0, 3, 50), SEEN)
    with pytest.raises(ValueError, match="'median_gap' needs logits"):
        LogitBiasCalibrator("median_gap").fit(seen_classes=SEEN, num_classes=C)
    with pytest.raises(ValueError, match="q must be a float in \\[0, 1\\], got 2.0"):
        LogitBiasCalibrator("median_gap", options={"q": 2.0}).fit(z, seen_classes=SEEN)
    with pytest.raises(ValueError, match="takes no parameter 'criterion'"):
        LogitBiasCalibrator("median_gap", criterion="hmean").fit(z, seen_classes=SEEN)
    assert calib.selectors.SELECTORS.get("median_gap").fn is median_gap


class _CountingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, C)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def test_user_selector_through_calibrate_without_labels(median_gap):
    torch.manual_seed(0)
    model = _CountingModel().eval()
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    wrapped = calibrate(model, loader, SEEN, method="median_gap", q=0.75, progress=False)
    assert model.calls == 4  # extracted once: the kind needs logits
    assert isinstance(CALLS[-1]["logits"], np.ndarray)  # validated logits, no labels passed
    with torch.no_grad():
        expected = median_gap(model.net(x).numpy(), np.array(SEEN), np.array([3, 4, 5]), C, 0.75)
    assert wrapped.calibrator.gamma_ == pytest.approx(expected[0], abs=1e-6)
    assert not wrapped.training  # the wrapper follows the model's mode
    with pytest.raises(ValueError, match="q must be a float"):
        calibrate(model, loader, SEEN, method="median_gap", q="high", progress=False)
    assert model.calls == 4  # refused before the model ran
    with pytest.raises(TypeError, match="unexpected keyword.*'median_gap' takes \\['q'\\]"):
        calibrate(model, loader, SEEN, method="median_gap", alpha=1, progress=False)


def test_calibrate_runs_no_model_for_a_selector_without_data():
    model = _CountingModel()
    wrapped = calibrate(model, None, SEEN, method="fixed", gamma=1.5, num_classes=C)
    assert model.calls == 0 and wrapped.calibrator.gamma_ == 1.5 and wrapped.training
