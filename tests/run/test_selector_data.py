"""calib.run.selector_data: the one table of where each selector data kind comes from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.data import ClassSplit
from calib.extract import Extracted
from calib.run.selector_data import SELECTOR_DATA, selector_fit_data, selector_inputs
from calib.selectors import SELECTORS, PseudoSplit
from calib.selectors.data_kinds import DATA_KIND_RECORDS

SPLIT = ClassSplit(seen=(0, 2), absent=(1, 3), num_classes=4)


def _extracts():
    gen = torch.Generator().manual_seed(0)
    train_y = torch.tensor([0, 1, 2, 3, 0, 2])  # U rows 1 and 3 must never reach ALG
    test_y = torch.tensor([3, 2, 1, 0])
    return {
        "finetuned_train": Extracted(torch.randn(6, 4, generator=gen), train_y),
        "finetuned_test": Extracted(torch.randn(4, 4, generator=gen), test_y),
    }


def test_every_declared_kind_has_one_row():
    assert set(SELECTOR_DATA) == set(DATA_KIND_RECORDS.values())
    for name in SELECTORS.names():
        assert SELECTORS.get(name).kind in SELECTOR_DATA


def test_fit_data_gives_each_selector_only_its_declared_rows():
    ex = _extracts()
    alg = selector_fit_data("alg", SPLIT, ex, None)
    train = ex["finetuned_train"]
    rows = np.array([0, 2, 4, 5])  # labels 0, 2, 0, 2: the S rows, in order
    np.testing.assert_array_equal(alg["labels"], train.labels.numpy()[rows])
    np.testing.assert_array_equal(alg["logits"], train.logits.numpy()[rows])

    oracle = selector_fit_data("oracle", SPLIT, ex, None)
    np.testing.assert_array_equal(oracle["labels"], ex["finetuned_test"].labels.numpy())

    prior = selector_fit_data("prior", SPLIT, ex, None)
    assert set(prior) == {"logits"}  # label-free: no labels handed over
    assert selector_fit_data("fixed", SPLIT, ex, None) == {}


def test_pseudo_splits_are_required_and_passed_through():
    ex = _extracts()
    with pytest.raises(ValueError, match="selector 'pcv' takes pseudo splits, but pseudo_splits"):
        selector_fit_data("pcv", SPLIT, ex, None)
    split = PseudoSplit(
        logits=np.zeros((2, 4)), labels=np.array([0, 2]), seen_classes=[0], absent_classes=[1, 2, 3]
    )
    assert selector_fit_data("pcv", SPLIT, ex, [split])["pseudo_splits"] == [split]


def test_inputs_are_the_stage_keys_of_the_declared_data():
    keys = {"finetuned_train": "k-train", "finetuned_test": "k-test"}
    assert selector_inputs("alg", keys, ["p0", "p1"]) == ["k-train"]
    assert selector_inputs("oracle", keys, ["p0", "p1"]) == ["k-test"]
    assert selector_inputs("prior", keys, ["p0", "p1"]) == ["k-test"]
    assert selector_inputs("pcv", keys, ["p0", "p1"]) == ["p0", "p1"]
    assert selector_inputs("fixed", keys, ["p0", "p1"]) == []
