"""A stratified train/test split of sample indices, identical to scikit-learn's, without it.

``stratified_split(labels, test_size, seed)`` returns the sorted index sets that
``sklearn.model_selection.train_test_split(np.arange(n), test_size=..., stratify=labels,
random_state=seed)`` selects (the algorithm of its ``StratifiedShuffleSplit``: per-class counts
by the approximate mode of the multivariate hypergeometric, ties broken by the seeded
``RandomState``, then a seeded permutation within each class). Importing scikit-learn costs
1–3 s, more than everything else the digits demo imports after torch; the tests check this
function against scikit-learn on the demo's two domains and on random label vectors.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["stratified_split"]


def stratified_split(
    labels: np.ndarray, test_size: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices of a stratified split.

    Args:
        labels: ``(N,)`` class labels (any sortable dtype); every class needs ≥ 2 samples.
        test_size: an int in [1, N) (test samples) or a float in (0, 1) (their fraction,
            rounded up, as scikit-learn does); the rest is the training set.
        seed: the ``numpy.random.RandomState`` seed (scikit-learn's ``random_state``).

    Returns:
        ``(train, test)``: sorted int64 index arrays, disjoint, covering all N samples.

    Raises:
        ValueError: a bad ``test_size``, a class with fewer than 2 samples, or fewer train or
            test samples than classes.
    """
    labels = np.asarray(labels)
    n = len(labels)
    n_test = _n_test(test_size, n)
    n_train = n - n_test
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"every class needs >= 2 samples; classes {classes[counts < 2].tolist()}")
    if min(n_train, n_test) < len(classes):
        raise ValueError(
            f"{n_train} train / {n_test} test samples cannot hold each of {len(classes)} classes"
        )
    class_indices = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    n_train_per_class = _approximate_mode(counts, n_train, rng)
    n_test_per_class = _approximate_mode(counts - n_train_per_class, n_test, rng)
    train, test = [], []
    for indices, count, k_train, k_test in zip(
        class_indices, counts, n_train_per_class, n_test_per_class, strict=True
    ):
        shuffled = indices.take(rng.permutation(count), mode="clip")
        train.append(shuffled[:k_train])
        test.append(shuffled[k_train : k_train + k_test])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _n_test(test_size: float | int, n: int) -> int:
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):
        if 1 <= test_size < n:
            return int(test_size)
    elif isinstance(test_size, numbers.Real) and not isinstance(test_size, bool):
        if 0 < test_size < 1:
            return math.ceil(test_size * n)
    raise ValueError(
        f"test_size must be an int in [1, {n}) or a float in (0, 1), got {test_size!r}"
    )


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Per-class draws ≈ the mode of the multivariate hypergeometric (scikit-learn's rule).

    Floor the proportional share of every class, then hand the missing draws to the largest
    remainders, choosing at random among equal remainders.
    """
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            take = min(len(tied), need)
            floored[rng.choice(tied, size=take, replace=False)] += 1
            need -= take
            if need == 0:
                break
    return floored.astype(int)
