"""The float32 kernel over the floats' bits (integer keys) gives what the numpy reference gives.

It decides by integer comparisons of keys (-0.0 = +0.0, ties to the lowest column) and turns
the rule's γ comparison into one key per row (:func:`calib._kernels.cross_keys`); these tests
stress exactly those steps: ties, signed zeros, -inf, subnormals, values 60 orders of magnitude
apart (where z_c − z_y rounds in float64), γ = ±0, ±inf and γ equal to a logit difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from calib import _kernels
from calib._keys import cross_keys, floats_of_keys

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="numba is not installed")

_POOL = np.array(
    [0.0, -0.0, 1.0, -1.0, 2.5, 1e-45, -1e-45, 1e-30, 1e30, -1e30, 3e38, -3e38, -np.inf, 0.5],
    dtype=np.float32,
)
_GAMMAS = [0.0, -0.0, 1.0, -1.0, 1.5, 1e-30, 1e30, -1e30, 3e38, np.inf, -np.inf, 2.0**-30]

_KEYS = ("gap", "pred_other", "pred_absent", "pred_seen", "rank", "rank_seen", "rank_absent")


def two_group_problem(rng):
    """Float32 logits over S and U only (the key kernel's case), labels anywhere."""
    n, c = int(rng.integers(1, 40)), int(rng.integers(2, 70))
    if rng.random() < 0.5:
        z = rng.choice(_POOL, size=(n, c))
    else:  # few distinct values: many exact ties and differences equal to γ
        z = rng.integers(-2, 3, size=(n, c)).astype(np.float32)
        z[rng.random(z.shape) < 0.1] = -np.inf
    group = (rng.random(c) < 0.5).astype(np.int8)
    group[rng.permutation(c)[:2]] = [0, 1]
    return z.astype(np.float32), group, rng.integers(0, c, size=n)


def test_float32_key_kernel_equals_the_numpy_reference():
    rng = np.random.default_rng(11)
    for _ in range(400):
        z, group, y = two_group_problem(rng)
        gamma = float(rng.choice(_GAMMAS))
        if rng.random() < 0.3:  # γ exactly a logit difference of some row
            i, j = rng.integers(0, z.shape[0]), rng.integers(0, z.shape[1])
            diff = float(z[i, j]) - float(z[i, y[i]])
            gamma = diff if np.isfinite(diff) else gamma
        got = _kernels.scan(z, group, y, gamma)
        want = _kernels._scan_numpy(z, group, y, gamma)
        for key in _KEYS:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key}, γ={gamma}")
        np.testing.assert_array_equal(got["lo"], z.min(axis=1))
        np.testing.assert_array_equal(got["hi"], z.max(axis=1))
        assert not got["nan"].any()
        top1 = _kernels.scan(z, group)
        for key in ("gap", "pred_other", "pred_absent"):
            np.testing.assert_array_equal(top1[key], want[key])


def test_ties_go_to_the_lowest_column_and_signed_zeros_tie():
    z = np.array([[-0.0, 0.0, 0.0, -0.0], [1.0, 1.0, 1.0, 1.0], [-np.inf] * 4], dtype=np.float32)
    group = np.array([0, 1, 0, 1], dtype=np.int8)
    got = _kernels.scan(z, group)
    assert got["pred_other"].tolist() == [0, 0, 0]  # -inf everywhere: the group's first column
    assert got["pred_absent"].tolist() == [1, 1, 1]
    assert np.signbit(got["gap"][0])  # -0.0 − 0.0 taken from the chosen columns, bit for bit


@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf])
def test_nan_and_plus_inf_are_flagged(bad):
    z = np.zeros((3, 37), dtype=np.float32)
    z[1, 20] = bad
    bits = z.view(np.int32)
    if bad != bad:  # a NaN with another payload too
        bits[2, 36] = np.int32(-1)  # 0xFFFFFFFF: a negative NaN
    group = (np.arange(37) % 2).astype(np.int8)
    got = _kernels.scan(z, group)
    if bad == np.inf:
        assert got["hi"][1] == np.inf and not got["nan"].any()
    else:
        assert got["nan"].tolist() == [False, True, True]


def test_cross_keys_fall_back_where_the_label_logit_is_minus_inf():
    z = np.array([[-np.inf, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    is_absent = np.array([False, True, True])
    keys = cross_keys(z, is_absent, np.array([0, 0]), 1.0)
    from calib._numba_kernels import NO_KEY

    assert keys[0] == NO_KEY and keys[1] != NO_KEY


def test_cross_keys_are_the_exact_boundary():
    """T: a column of value x of the other group beats the label iff key(x) > T, checked at
    T and T + 1 with the float64 rule itself."""
    from calib._numba_kernels import NO_KEY

    rng = np.random.default_rng(5)
    z = (rng.standard_normal((300, 9)) * rng.choice([1e-3, 1.0, 1e4], size=(300, 1))).astype(
        np.float32
    )
    is_absent = np.arange(9) % 3 == 0
    y = rng.integers(0, 9, 300)
    for gamma in (0.7, -2.25, 1e-6, 3e4):
        keys = cross_keys(z, is_absent, y, gamma)
        assert (keys != NO_KEY).all()
        zy = z[np.arange(300), y].astype(np.float64)
        for t, beaten in ((keys, False), (keys + 1, True)):
            d = floats_of_keys(t, np.float32).astype(np.float64) - zy
            beats = np.where(is_absent[y], d >= gamma, d > -gamma)
            assert (beats == beaten).all()
