"""calib.data.stratified.stratified_split selects exactly what scikit-learn's split selects."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from calib.data.digits import _digits_raw, _mnist5k_raw
from calib.data.stratified import stratified_split


def _sklearn(labels, test_size, seed):
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed
    )
    return np.sort(train), np.sort(test)


def _check(labels, test_size, seed):
    train, test = stratified_split(labels, test_size, seed)
    ref_train, ref_test = _sklearn(labels, test_size, seed)
    assert np.array_equal(train, ref_train) and np.array_equal(test, ref_test)
    assert train.dtype == test.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))


@pytest.mark.parametrize(("raw", "test_size"), [(_mnist5k_raw, 1000), (_digits_raw, 0.4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_demo_domains_split_as_sklearn_splits_them(raw, test_size, seed):
    _check(raw()[1], test_size, seed)


@pytest.mark.parametrize("seed", range(12))
def test_random_label_vectors_split_as_sklearn_splits_them(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 12))
    counts = rng.integers(2, 40, size=n_classes)
    if seed % 3 == 0:
        counts[:] = counts[0]  # equal class sizes: many tied remainders, broken at random
    labels = rng.permutation(np.repeat(np.arange(n_classes) * 3 - 5, counts))  # any label values
    n = len(labels)
    test_size = (
        float(rng.uniform(0.1, 0.9))
        if seed % 2
        else int(rng.integers(n_classes, n - n_classes + 1))
    )
    _check(labels, test_size, int(rng.integers(0, 2**31)))


def test_string_labels_split_as_sklearn_splits_them():
    labels = np.array(list("abcab" * 7 + "cc"))
    _check(labels, 0.3, 4)


@pytest.mark.parametrize(
    ("labels", "test_size", "message"),
    [
        ([0, 0, 1, 1], 0, "test_size must be"),
        ([0, 0, 1, 1], 4, "test_size must be"),
        ([0, 0, 1, 1], 1.0, "test_size must be"),
        ([0, 0, 1, 1], True, "test_size must be"),
        ([0, 0, 1, 1, 2], 2, "classes \\[2\\]"),
        ([0, 0, 1, 1, 2, 2], 2, "cannot hold each of 3 classes"),
    ],
)
def test_bad_input_is_refused(labels, test_size, message):
    with pytest.raises(ValueError, match=message):
        stratified_split(np.array(labels), test_size, 0)
