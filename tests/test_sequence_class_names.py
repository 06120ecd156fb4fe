"""Class names in PCV's pseudo splits and the fine-tuning sequence: names == indices, a misspelt
name stops before any training, ``Stage(classes="infer")`` reads its training labels (logged)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from calib.pseudo_cv import make_pseudo_splits, pseudo_subsets
from calib.sequence import Stage, finetune_sequence
from tests.test_sequence import CLASSES, PCV, TEST, Blobs, C, _pretrained, _train

NAMES = ("cat", "dog", "bird", "fish", "frog", "horse")
assert len(NAMES) == C


def _named(classes):
    return [NAMES[c] for c in classes]


def _stages(classes_of):
    return [Stage(Blobs(np.repeat(cs, 12), 1 + k), classes_of(cs)) for k, cs in enumerate(CLASSES)]


def _sequence(stages, **kw):
    return finetune_sequence(
        _pretrained(), _train, stages, TEST, ("alg", "pcv"), pcv_options=PCV, progress=False, **kw
    )


# ----------------------------------------------------------------------------- pseudo splits


def test_pseudo_splits_with_names_equal_them_with_indices():
    data = Blobs(np.repeat([0, 1, 2, 3], 10), 3)
    by_index = make_pseudo_splits(_pretrained(), _train, data, [0, 1, 2, 3], progress=False)
    by_name = make_pseudo_splits(
        _pretrained(),
        _train,
        data,
        ["cat", "dog", "bird", "fish"],
        ["frog", "horse"],
        progress=False,
        class_names=NAMES,
    )
    assert len(by_name) == len(by_index) == 3
    for a, b in zip(by_name, by_index, strict=True):
        np.testing.assert_array_equal(a.seen_classes, b.seen_classes)  # column indices
        np.testing.assert_array_equal(a.absent_classes, b.absent_classes)
        np.testing.assert_array_equal(a.labels, b.labels)
        # the same training on the same rows from the same seed
        np.testing.assert_array_equal(a.logits, b.logits)
    subsets = pseudo_subsets(data.targets.numpy(), ["cat", "dog", 2, "fish"], class_names=NAMES)
    again = pseudo_subsets(data.targets.numpy(), [0, 1, 2, 3])
    for a, b in zip(subsets, again, strict=True):
        np.testing.assert_array_equal(a.pseudo_absent, b.pseudo_absent)
        np.testing.assert_array_equal(a.heldout_rows, b.heldout_rows)


def test_a_misspelt_name_stops_the_pseudo_splits_before_any_training():
    calls = []

    def finetune(model, data, classes):
        calls.append(classes)
        return model

    data = Blobs(np.repeat([0, 1, 2], 5), 3)
    with pytest.raises(
        ValueError, match="seen_classes: 'bitd' is not a class name; did you mean 'bird'"
    ):
        make_pseudo_splits(
            _pretrained(), finetune, data, ["cat", "dog", "bitd"], progress=False, class_names=NAMES
        )
    with pytest.raises(ValueError, match="holds class names.*no class_names were given"):
        make_pseudo_splits(_pretrained(), finetune, data, ["cat", "dog"], progress=False)
    with pytest.raises(ValueError, match="class_names has 2 names but the head has 6 classes"):
        make_pseudo_splits(
            _pretrained(), finetune, data, [0, 1, 2], num_classes=C, class_names=NAMES[:2]
        )
    assert calls == []


# ----------------------------------------------------------------------------- the sequence


@pytest.fixture(scope="module")
def by_index():
    return _sequence(_stages(list))


def test_stages_given_by_name_give_the_results_of_stages_given_by_index(by_index):
    by_name = _sequence(_stages(_named), class_names=list(NAMES))
    for a, b in zip(by_name, by_index, strict=True):
        np.testing.assert_array_equal(a.seen_classes, b.seen_classes)
        np.testing.assert_array_equal(a.absent_classes, b.absent_classes)
        np.testing.assert_array_equal(a.test_logits, b.test_logits)  # the same training
        assert a.class_names == NAMES and b.class_names is None
        for name, cal in a.calibrators.items():
            assert cal.gamma_ == b.calibrators[name].gamma_
            assert cal.class_names_ == NAMES
        assert a.reports == b.reports


def test_stages_with_inferred_classes_give_the_same_results_and_log_them(by_index, caplog):
    with caplog.at_level(logging.INFO, logger="calib.classes"):
        inferred = _sequence(_stages(lambda cs: "infer"), class_names=NAMES)
    for a, b in zip(inferred, by_index, strict=True):
        np.testing.assert_array_equal(a.seen_classes, b.seen_classes)
        for name, cal in a.calibrators.items():
            assert cal.gamma_ == b.calibrators[name].gamma_
    lines = [r.getMessage() for r in caplog.records if r.name == "calib.classes"]
    assert lines == [
        "seen classes inferred from 24 stages[0] training labels: 2 classes: 0 cat, 1 dog",
        "seen classes inferred from 48 stages[1] training labels: "
        "4 classes: 0 cat, 1 dog, 2 bird, 3 fish",
        "seen classes inferred from 60 stages[2] training labels: "
        "5 classes: 0 cat, 1 dog, 2 bird, 3 fish, 4 frog",
    ]


def test_a_misspelt_stage_class_stops_the_sequence_before_any_training():
    calls = []

    def finetune(model, data, classes):
        calls.append(classes)
        return model

    stages = _stages(_named)
    stages[1] = Stage(stages[1].train_data, ["cat", "dog", "brid", "fish"])
    with pytest.raises(ValueError, match=r"stages\[1\]\.classes: 'brid' .*did you mean 'bird'"):
        finetune_sequence(_pretrained(), finetune, stages, TEST, ("alg",), class_names=NAMES)
    with pytest.raises(ValueError, match=r"stages\[0\]\.classes holds class names"):
        finetune_sequence(_pretrained(), finetune, _stages(_named), TEST, ("alg",))
    assert calls == []


def test_an_inferred_stage_covering_every_class_is_refused():
    everything = Stage(Blobs(np.repeat(np.arange(C), 4), 5), "infer")
    with pytest.raises(ValueError, match=r"stages\[0\] training labels cover all 6 classes"):
        finetune_sequence(_pretrained(), _train, [everything], TEST, ("alg",), progress=False)
