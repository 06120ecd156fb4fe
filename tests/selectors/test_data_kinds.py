"""calib.selectors.data_kinds: one record per selector data kind, read everywhere a kind matters."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.estimator.temperature import check_temperature_param, fitted_temperature
from calib.selectors import DATA_INPUTS, DATA_KINDS, SELECTORS, register_selector
from calib.selectors.data_kinds import (
    DATA_KIND_RECORDS,
    FINETUNE_TRAIN,
    NO_DATA,
    PSEUDO_SPLITS,
    TARGET_LABELLED,
    TARGET_UNLABELLED,
    DataKind,
    data_kind,
)


def test_one_record_per_kind_and_the_old_tables_are_views_of_them():
    assert DATA_KINDS == ("finetune_train", "target_labelled", "target_unlabelled", "pseudo_splits")
    assert list(DATA_KIND_RECORDS) == [*DATA_KINDS, None]
    assert dict(DATA_INPUTS) == {n: k.inputs for n, k in DATA_KIND_RECORDS.items()}
    for name, record in DATA_KIND_RECORDS.items():
        assert record.name == name and data_kind(name) is record and data_kind(record) is record
    # who may use what: labels, U rows, and so whether T may be fitted on it
    table = {
        k.name: (k.labels, k.absent_rows, k.absent_labels, k.fits_temperature)
        for k in DATA_KIND_RECORDS.values()
    }
    assert table == {
        "finetune_train": (True, False, False, True),
        "target_labelled": (True, True, True, True),
        "target_unlabelled": (False, True, False, False),
        "pseudo_splits": (True, False, False, True),
        None: (False, False, False, False),
    }


def test_every_selector_reads_its_record():
    kinds = {name: SELECTORS.get(name).kind for name in SELECTORS}
    assert kinds == {
        "alg": FINETUNE_TRAIN,
        "oracle": TARGET_LABELLED,
        "prior": TARGET_UNLABELLED,
        "pcv": PSEUDO_SPLITS,
        "fixed": NO_DATA,
    }
    # only a kind whose labels of U reach the selector can be the oracle's
    for name in SELECTORS:
        spec = SELECTORS.get(name)
        assert not spec.uses_absent_labels or spec.kind.absent_labels


def test_a_selector_may_declare_the_record_itself():
    register_selector("_kinds_record", data=TARGET_UNLABELLED)(lambda **kw: (0.5, {}))
    try:
        spec = SELECTORS.get("_kinds_record")
        assert spec.data == "target_unlabelled" and spec.kind is TARGET_UNLABELLED
        cal = LogitBiasCalibrator("_kinds_record").fit(np.zeros((3, 4)), seen_classes=[0, 1])
        assert cal.gamma_ == 0.5
    finally:
        SELECTORS.unregister("_kinds_record")


def test_unknown_kinds_are_refused_with_the_message_of_before():
    with pytest.raises(ValueError, match=r"selector '_k': data must be one of \(.*\) or None, "):
        register_selector("_k", data="target")(lambda **kw: (0.0, {}))
    copy = DataKind("target_unlabelled", ("logits",), "x", False, True, "t", no_fit_reason="r")
    with pytest.raises(ValueError, match="data must be one of .* got DataKind"):
        data_kind(copy)  # a record built elsewhere is not the registry's
    assert "_k" not in SELECTORS
    with pytest.raises(ValueError, match="unknown fit input"):
        DataKind("x", ("images",), "x", True, False, "t")
    with pytest.raises(ValueError, match="has no labels: say why"):
        DataKind("x", ("logits",), "x", False, False, "t")


def test_refusals_and_texts_come_from_the_record():
    z = np.zeros((4, 5))
    with pytest.raises(ValueError, match="'prior' does not use labels: it is label-free"):
        LogitBiasCalibrator("prior").fit(z, np.zeros(4, int), seen_classes=[0, 1])
    with pytest.raises(ValueError, match="'alg' needs labels: it reads the logits and labels"):
        LogitBiasCalibrator("alg").fit(z, seen_classes=[0, 1])
    with pytest.raises(ValueError, match="'pcv' does not use logits: it scores the held-out"):
        LogitBiasCalibrator("pcv").fit(z, seen_classes=[0, 1])
    assert FINETUNE_TRAIN.refusal("pseudo_splits") == f"it reads {FINETUNE_TRAIN.holds}"


@pytest.mark.parametrize("kind", [TARGET_UNLABELLED, "target_unlabelled", NO_DATA, None])
def test_a_temperature_fit_needs_a_kind_with_labels(kind):
    record = data_kind(kind)
    with pytest.raises(ValueError, match=f"the selector is {record.no_fit_reason} and the NLL"):
        check_temperature_param("fit", "m", kind)
    assert check_temperature_param(2.0, "m", kind) == 2.0


def test_a_fitted_temperature_notes_what_its_kind_means():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(50, 4)), rng.integers(0, 4, 50)
    data = {"logits": z, "labels": y}
    _, info = fitted_temperature("fit", TARGET_LABELLED, data, np.array([2, 3]), 0.5)
    assert info["temperature_data"] == "target_labelled"
    assert info["temperature_note"] == TARGET_LABELLED.temperature_data
    assert info["temperature_samples"] == 50


def test_the_methods_training_data_is_no_longer_called_data_kinds():
    import calib.methods

    assert calib.methods.TRAINING_DATA == ("seen", "seen+absent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert calib.methods.DATA_KINDS == calib.methods.TRAINING_DATA
    assert any("renamed TRAINING_DATA" in str(w.message) for w in caught)
    with pytest.raises(AttributeError, match="no attribute 'NOPE'"):
        calib.methods.NOPE  # noqa: B018
