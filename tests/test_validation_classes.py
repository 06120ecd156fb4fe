"""check_classes (counts per column) against numpy's set routines."""

from __future__ import annotations

import numpy as np
import pytest

from calib.validation import check_classes


def test_check_classes_equals_numpy_set_routines():
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = int(rng.integers(2, 60))
        perm = rng.permutation(c)
        k = int(rng.integers(1, c))
        seen_in = perm[:k]
        absent_in = perm[k : k + int(rng.integers(1, c - k + 1))] if rng.random() < 0.5 else None
        seen, absent = check_classes(list(seen_in), absent_in, c)
        np.testing.assert_array_equal(seen, np.unique(seen_in))
        want = np.setdiff1d(np.arange(c), seen_in) if absent_in is None else np.unique(absent_in)
        np.testing.assert_array_equal(absent, want)
        assert seen.dtype == absent.dtype == np.int64


def test_duplicates_and_overlap_are_named():
    with pytest.raises(ValueError, match=r"more than once: \[2, 5\]"):
        check_classes([5, 2, 1, 2, 5], None, 8)
    with pytest.raises(ValueError, match=r"overlap: \[1, 3\]"):
        check_classes([0, 1, 3], [3, 1, 4], 8)
