"""calib.class_names: names in place of column indices, did-you-mean, and inferred S."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from calib.class_names import (
    check_class_names,
    class_ids,
    describe_classes,
    infer_seen_classes,
    resolve_classes,
)

NAMES = ("cat", "dog", "fish", "horse", "bird")


def test_names_and_indices_resolve_to_the_same_columns():
    by_name = resolve_classes(["dog", "cat"], ["bird"], 5, NAMES)
    by_index = resolve_classes([1, 0], [4], 5)
    for a, b in zip(by_name, by_index):
        np.testing.assert_array_equal(a, b)
    mixed = resolve_classes(["dog", 0], None, 5, NAMES)
    np.testing.assert_array_equal(mixed[0], [0, 1])
    np.testing.assert_array_equal(mixed[1], [2, 3, 4])


def test_index_arrays_and_tensors_pass_through():
    assert class_ids(np.array([3, 1]), NAMES) is not None
    t = torch.tensor([3, 1])
    assert class_ids(t, NAMES) is t
    np.testing.assert_array_equal(resolve_classes(np.array(["fish"]), None, 5, NAMES)[0], [2])
    np.testing.assert_array_equal(resolve_classes({"fish", "cat"}, None, 5, NAMES)[0], [0, 2])


def test_an_unknown_name_gets_a_did_you_mean():
    with pytest.raises(
        ValueError, match=r"seen_classes: 'dgo' is not a class name; did you mean 'dog'\?"
    ):
        resolve_classes(["dgo"], None, 5, NAMES)
    with pytest.raises(ValueError, match=r"'Cat' is not a class name; did you mean 'cat'"):
        class_ids(["Cat"], NAMES, "seen_classes")
    with pytest.raises(ValueError, match=r"'zebra' is not a class name\Z"):
        class_ids(["zebra"], NAMES)
    with pytest.raises(ValueError, match="2 unknown names"):
        class_ids(["zebra", "dgo"], NAMES)


def test_names_without_class_names_and_one_string_are_refused():
    with pytest.raises(ValueError, match="holds class names .* no class_names were given"):
        resolve_classes(["dog"], None, 5)
    with pytest.raises(TypeError, match=r"got the string 'dog'; one class is \['dog'\]"):
        class_ids("dog", NAMES, "seen_classes")


@pytest.mark.parametrize(
    "bad, match",
    [
        ("cat", "got the string"),
        (["cat", 3], r"class_names\[1\] is 3"),
        (["cat", ""], r"class_names\[1\] is an empty name"),
        ([], "is empty"),
    ],
)
def test_bad_class_names_are_named(bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        check_class_names(bad)


def test_class_names_must_match_the_head():
    with pytest.raises(ValueError, match="has 5 names but the head has 6 classes"):
        resolve_classes(["cat"], None, 6, NAMES)


def test_describe_classes():
    assert describe_classes([0, 2], NAMES) == "2 classes: 0 cat, 2 fish"
    assert describe_classes([3]) == "1 class: 3"
    assert describe_classes(range(12), None, limit=2) == "12 classes: 0, 1, ..."


def test_infer_seen_classes_logs_what_it_found(caplog):
    labels = torch.tensor([3, 1, 1, 3, 0])
    with caplog.at_level(logging.INFO, logger="calib.classes"):
        seen = infer_seen_classes(labels, 5, NAMES)
    np.testing.assert_array_equal(seen, [0, 1, 3])
    assert seen.dtype == np.int64
    assert "inferred from 5 fine-tuning labels: 3 classes: 0 cat, 1 dog, 3 horse" in caplog.text


def test_infer_seen_classes_refuses_what_cannot_be_s():
    with pytest.raises(ValueError, match="cover all 3 classes"):
        infer_seen_classes([0, 1, 2], 3)
    with pytest.raises(ValueError, match="empty"):
        infer_seen_classes(np.array([], dtype=np.int64), 3)
    with pytest.raises(ValueError, match="out of range"):
        infer_seen_classes([0, 7], 3)


def test_a_shared_name_is_accepted_but_cannot_pick_a_class():
    names = ("crane", "dog", "crane", "fox")  # ImageNet's label set has such names
    assert check_class_names(names, 4) == names
    np.testing.assert_array_equal(resolve_classes(["dog", 0], None, 4, names)[0], [0, 1])
    with pytest.raises(ValueError, match=r"'crane' names 2 classes \(columns \[0, 2\]\); give"):
        resolve_classes(["crane"], None, 4, names)
