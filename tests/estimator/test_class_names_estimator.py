"""Class names in the estimator layer: LogitBiasCalibrator.fit(class_names=), seen_classes="infer",
the file's class_names, the corrections (wa, bic, gla) and fit_temperature*."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from calib.estimator.bias_correction import BiasCorrection
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.estimator.corrected_classifier import CorrectedClassifier
from calib.estimator.pretrained_ensemble import PretrainedEnsemble
from calib.estimator.temperature import fit_temperature, fit_temperature_pseudo_splits
from calib.estimator.weight_aligning import WeightAligning
from calib.metrics.streaming import SeenAbsentState
from calib.selectors import PseudoSplit

NAMES = ("cat", "dog", "bird", "fish", "frog", "horse")
C = len(NAMES)
S = [0, 1, 2]
S_NAMES = ["cat", "dog", "bird"]
U = [3, 4, 5]
U_NAMES = ["fish", "frog", "horse"]


def _logits(n: int, labels_from, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(labels_from, size=n)
    z = rng.normal(size=(n, C))
    z[np.arange(n), y] += 2.0
    z[:, S] += 1.0  # fine-tuning pushed S up
    return z, y


TRAIN = _logits(90, S, 0)  # fine-tuning data: labels in S only
TARGET = _logits(120, range(C), 1)  # target data: U included


def _splits(seen, absent, seed=2):
    """Two pseudo splits of S (held-out S rows), their classes as given."""
    out = []
    for j, (ps, pa) in enumerate(zip(seen, absent, strict=True)):
        z, y = _logits(40, S, seed + j)
        out.append(PseudoSplit(z, y, ps, pa))
    return out


SPLIT_IDS = ([[0, 1], [1, 2]], [[2, 3, 4, 5], [0, 3, 4, 5]])
SPLIT_NAMES = (
    [["cat", "dog"], ["dog", "bird"]],
    [["bird", "fish", "frog", "horse"], ["cat", "fish", "frog", "horse"]],
)


def _fit(method, seen, absent=None, **kw):
    data = {
        "alg": {"logits": TRAIN[0], "labels": TRAIN[1]},
        "oracle": {"logits": TARGET[0], "labels": TARGET[1]},
        "prior": {"logits": TARGET[0]},
        "fixed": {"num_classes": C},
        "pcv": {"pseudo_splits": kw.pop("splits", None) or _splits(*SPLIT_IDS)},
    }[method]
    params = {"gamma": 0.7} if method == "fixed" else {}
    return LogitBiasCalibrator(method, **params).fit(
        seen_classes=seen, absent_classes=absent, **data, **kw
    )


# ----------------------------------------------------------------------------- names == indices


@pytest.mark.parametrize("method", ["alg", "oracle", "prior", "fixed", "pcv"])
def test_names_fit_the_same_gamma_and_predictions_as_indices(method):
    by_index = _fit(method, S)
    kw = {"splits": _splits(*SPLIT_NAMES)} if method == "pcv" else {}
    by_name = _fit(method, S_NAMES, U_NAMES, class_names=list(NAMES), **kw)
    # the same selector on the same numbers: the same γ, bit for bit
    assert by_name.gamma_ == by_index.gamma_
    np.testing.assert_array_equal(by_name.seen_classes_, S)
    np.testing.assert_array_equal(by_name.absent_classes_, U)
    np.testing.assert_array_equal(by_name.predict(TARGET[0]), by_index.predict(TARGET[0]))
    assert by_name.class_names_ == NAMES and by_index.class_names_ is None


def test_names_and_indices_may_be_mixed_and_names_may_be_a_set_or_array():
    base = _fit("oracle", S)
    for seen in (["cat", 1, "bird"], {"cat", "dog", "bird"}, np.array(S_NAMES)):
        cal = _fit("oracle", seen, class_names=NAMES)
        assert cal.gamma_ == base.gamma_
        np.testing.assert_array_equal(cal.seen_classes_, S)


def test_a_fitted_temperature_is_the_same_with_names():
    z, y = TRAIN
    a = LogitBiasCalibrator("alg", temperature="fit").fit(z, y, S)
    b = LogitBiasCalibrator("alg", temperature="fit").fit(z, y, S_NAMES, class_names=NAMES)
    assert a.temperature_ == b.temperature_ and a.gamma_ == b.gamma_
    c = LogitBiasCalibrator("pcv", temperature="fit").fit(
        pseudo_splits=_splits(*SPLIT_NAMES), seen_classes=S_NAMES, class_names=NAMES
    )
    d = LogitBiasCalibrator("pcv", temperature="fit").fit(
        pseudo_splits=_splits(*SPLIT_IDS), seen_classes=S
    )
    assert c.temperature_ == d.temperature_ and c.gamma_ == d.gamma_


# ----------------------------------------------------------------------------- mistakes


def test_a_misspelt_name_gets_a_did_you_mean():
    with pytest.raises(
        ValueError, match=r"seen_classes: 'dgo' is not a class name; did you mean 'dog'"
    ):
        _fit("alg", ["cat", "dgo", "bird"], class_names=NAMES)
    with pytest.raises(ValueError, match=r"absent_classes: 'hors' .*did you mean 'horse'"):
        _fit("fixed", S, ["hors"], class_names=NAMES)
    bad = _splits([["cat", "dog"], ["dog", "brid"]], SPLIT_NAMES[1])
    with pytest.raises(
        ValueError, match=r"pseudo_splits\[1\]\.seen_classes: 'brid' .*did you mean 'bird'"
    ):
        _fit("pcv", S_NAMES, class_names=NAMES, splits=bad)


def test_the_mistake_stops_fit_before_the_data_are_read():
    # oracle without logits would say it needs logits; the name is reported first
    with pytest.raises(ValueError, match="'kat' is not a class name; did you mean 'cat'"):
        LogitBiasCalibrator("oracle").fit(seen_classes=["kat"], class_names=NAMES)


def test_names_without_class_names_and_class_names_of_another_width_are_refused():
    with pytest.raises(ValueError, match="holds class names.*no class_names were given"):
        _fit("alg", S_NAMES)
    with pytest.raises(ValueError, match="class_names has 5 names but the head has 6 classes"):
        _fit("alg", S, class_names=NAMES[:5])
    with pytest.raises(TypeError, match="class_names must be a sequence of names"):
        _fit("alg", S, class_names="cat dog")


# ----------------------------------------------------------------------------- infer


def test_infer_for_alg_fits_the_gamma_of_the_explicit_s_and_logs_it(caplog):
    z, y = TRAIN
    explicit = LogitBiasCalibrator("alg").fit(z, y, S)
    with caplog.at_level(logging.INFO, logger="calib.classes"):
        inferred = LogitBiasCalibrator("alg").fit(z, y, "infer", class_names=NAMES)
    assert inferred.gamma_ == explicit.gamma_
    np.testing.assert_array_equal(inferred.seen_classes_, S)
    np.testing.assert_array_equal(inferred.absent_classes_, U)
    assert inferred.info_["seen_classes_inferred"] is True
    assert "seen_classes_inferred" not in explicit.info_
    lines = [r.getMessage() for r in caplog.records if r.name == "calib.classes"]
    assert lines == [
        f"seen classes inferred from {y.size} fine-tuning labels: 3 classes: 0 cat, 1 dog, 2 bird"
    ]


def test_infer_with_names_for_u_and_without_class_names():
    z, y = TRAIN
    cal = LogitBiasCalibrator("alg").fit(z, y, "infer", ["fish", "frog"], class_names=NAMES)
    np.testing.assert_array_equal(cal.absent_classes_, [3, 4])
    plain = LogitBiasCalibrator("alg").fit(z, y, "infer")
    assert plain.gamma_ == LogitBiasCalibrator("alg").fit(z, y, S).gamma_


@pytest.mark.parametrize(
    ("method", "why"),
    [
        ("oracle", "its labels are target labels, which include the absent classes U"),
        ("prior", "it reads no labels"),
        ("fixed", "it reads no labels"),
        ("pcv", "its labels are not the fine-tuning training labels"),
    ],
)
def test_infer_is_refused_by_selectors_not_fed_the_finetuning_labels(method, why):
    with pytest.raises(ValueError) as err:
        _fit(method, "infer")
    text = str(err.value)
    assert (
        f"seen_classes='infer' reads S off the fine-tuning training labels, but method {method!r}"
        in text
    )
    assert why in text and "calib.infer_seen_classes(finetune_labels)" in text


def test_infer_with_a_state_is_refused():
    state = SeenAbsentState(C, S, alg=True, keep_gaps=False)
    state.update(*TRAIN)
    with pytest.raises(
        ValueError, match=r"'infer' with a SeenAbsentState.*seen_classes=state.seen_classes"
    ):
        LogitBiasCalibrator("alg").fit(state, seen_classes="infer")


# ----------------------------------------------------------------------------- states


def test_a_state_built_with_names_names_the_calibrator():
    z, y = TARGET
    state = SeenAbsentState(C, S_NAMES, class_names=NAMES)
    state.update(z, y)
    cal = LogitBiasCalibrator("oracle").fit(state, seen_classes=S_NAMES)  # the state's names
    assert cal.class_names_ == NAMES
    assert cal.gamma_ == LogitBiasCalibrator("oracle").fit(z, y, S).gamma_
    same = LogitBiasCalibrator("oracle").fit(state, seen_classes=S, class_names=NAMES)
    assert same.gamma_ == cal.gamma_
    other = ("kitten", *NAMES[1:])
    with pytest.raises(ValueError, match=r"class_names \[0\] is 'kitten', not 'cat'"):
        LogitBiasCalibrator("oracle").fit(state, seen_classes=S, class_names=other)
    with pytest.raises(ValueError, match="differ from those the SeenAbsentState was built with"):
        LogitBiasCalibrator("oracle").fit(state, seen_classes=["cat", "dog"])


# ----------------------------------------------------------------------------- files


def test_save_load_round_trips_the_names(tmp_path):
    cal = _fit("oracle", S_NAMES, class_names=NAMES)
    cal.save(tmp_path / "c.json")
    payload = json.loads((tmp_path / "c.json").read_text())
    assert payload["fitted"]["class_names"] == list(NAMES)
    assert payload["fitted"]["seen_classes"] == S  # the file holds column indices
    back = LogitBiasCalibrator.load(tmp_path / "c.json")
    assert back.class_names_ == NAMES and back.gamma_ == cal.gamma_
    unnamed = _fit("oracle", S)
    unnamed.save(tmp_path / "u.json")
    assert json.loads((tmp_path / "u.json").read_text())["fitted"]["class_names"] is None
    assert LogitBiasCalibrator.load(tmp_path / "u.json").class_names_ is None


def test_a_file_written_before_names_loads_without_them_and_bad_names_are_refused(tmp_path):
    cal = _fit("oracle", S_NAMES, class_names=NAMES)
    cal.save(tmp_path / "c.json")
    payload = json.loads((tmp_path / "c.json").read_text())
    old = {**payload, "fitted": {k: v for k, v in payload["fitted"].items() if k != "class_names"}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    back = LogitBiasCalibrator.load(tmp_path / "old.json")
    assert back.class_names_ is None and back.gamma_ == cal.gamma_
    for bad, message in [
        (list(NAMES[:4]), "class_names has 4 names but the head has 6"),
        ("cat", "class_names must be a list of names or null"),
        (["cat", "", *NAMES[2:]], r"class_names\[1\] is an empty name"),
    ]:
        broken = {**payload, "fitted": {**payload["fitted"], "class_names": bad}}
        (tmp_path / "bad.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=f"bad.json is a corrupt calibrator file: .*{message}"):
            LogitBiasCalibrator.load(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- corrections


def test_wa_with_names_equals_wa_with_indices(tmp_path):
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(C, 8)), rng.normal(size=C)
    by_index = WeightAligning().fit(w, b, S)
    by_name = WeightAligning().fit(w, b, S_NAMES, U_NAMES, class_names=NAMES)
    assert by_name.ratio_ == by_index.ratio_ and by_name.class_names_ == NAMES
    assert by_index.class_names_ is None
    np.testing.assert_array_equal(by_name.predict(TARGET[0]), by_index.predict(TARGET[0]))
    by_name.save(tmp_path / "wa.json")
    back = WeightAligning.load(tmp_path / "wa.json")
    assert back.class_names_ == NAMES and back.ratio_ == by_name.ratio_
    payload = json.loads((tmp_path / "wa.json").read_text())
    del payload["fitted"]["class_names"]  # a file written before names
    (tmp_path / "old.json").write_text(json.dumps(payload))
    assert WeightAligning.load(tmp_path / "old.json").class_names_ is None
    with pytest.raises(ValueError, match="'fsh' is not a class name; did you mean 'fish'"):
        WeightAligning().fit(w, b, S_NAMES, ["fsh"], class_names=NAMES)


def test_gla_and_bic_with_names_equal_them_with_indices():
    z = TARGET[0]
    a = PretrainedEnsemble().fit(z, seen_classes=S)
    b = PretrainedEnsemble().fit(z, seen_classes=S_NAMES, class_names=NAMES)
    np.testing.assert_array_equal(a.log_prior_, b.log_prior_)
    assert b.class_names_ == NAMES
    c = BiasCorrection(temperature="fit").fit(pseudo_splits=_splits(*SPLIT_IDS), seen_classes=S)
    d = BiasCorrection(temperature="fit").fit(
        pseudo_splits=_splits(*SPLIT_NAMES), seen_classes=S_NAMES, class_names=NAMES
    )
    assert (c.alpha_, c.beta_, c.temperature_) == (d.alpha_, d.beta_, d.temperature_)
    assert d.class_names_ == NAMES and c.class_names_ is None
    bad = _splits([["cat", "dgo"], ["dog", "bird"]], SPLIT_NAMES[1])
    with pytest.raises(ValueError, match=r"pseudo_splits\[0\]\.seen_classes: 'dgo'.*'dog'"):
        BiasCorrection().fit(pseudo_splits=bad, seen_classes=S_NAMES, class_names=NAMES)


def test_fit_temperature_takes_names():
    z, y = TARGET
    a = fit_temperature(z, y, gamma=0.5, seen_classes=S)
    b = fit_temperature(z, y, U_NAMES, 0.5, seen_classes=S_NAMES, class_names=NAMES)
    assert a == b
    c = fit_temperature(z, y, ["fish", "frog", "horse"], 0.5, class_names=NAMES)
    assert c == a
    d = fit_temperature_pseudo_splits(_splits(*SPLIT_IDS), 0.5)
    e = fit_temperature_pseudo_splits(_splits(*SPLIT_NAMES), 0.5, class_names=NAMES)
    assert d == e
    with pytest.raises(ValueError, match=r"pseudo_splits\[0\]: absent_classes: 'brd'"):
        fit_temperature_pseudo_splits(
            _splits([["cat"], ["dog"]], [["brd"], ["cat"]]), 0.5, class_names=NAMES
        )


def test_the_corrected_classifier_reads_the_corrections_names():
    head = torch.nn.Linear(4, C)
    w, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    named = WeightAligning().fit(w, b, S_NAMES, class_names=NAMES)
    assert CorrectedClassifier(head, named).class_names == NAMES
    assert CorrectedClassifier(head, WeightAligning().fit(w, b, S)).class_names is None
