"""The float32 kernel over the floats' bits (integer keys) gives what the numpy reference gives.

It decides by integer comparisons of keys (-0.0 = +0.0, ties to the lowest column) and turns
the rule's γ comparison into one key per row (:func:`calib.rules.kernels.cross_keys`); these tests
stress exactly those steps: ties, signed zeros, -inf, subnormals, values 60 orders of magnitude
apart (where z_c − z_y rounds in float64), γ = ±0, ±inf and γ equal to a logit difference.
"""

from __future__ import annotations

import numpy as np
import pytest

import calib.rules.kernels as _kernels
from calib.rules.keys import cross_keys, floats_of_keys

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="numba is not installed")

_POOL = np.array(
    [0.0, -0.0, 1.0, -1.0, 2.5, 1e-45, -1e-45, 1e-30, 1e30, -1e30, 3e38, -3e38, -np.inf, 0.5],
    dtype=np.float32,
)
_GAMMAS = [0.0, -0.0, 1.0, -1.0, 1.5, 1e-30, 1e30, -1e30, 3e38, np.inf, -np.inf, 2.0**-30]

_KEYS = ("gap", "pred_other", "pred_absent", "pred_seen", "rank", "rank_seen", "rank_absent")


# float64 values that agree in the upper half of their key (first 20 mantissa bits) but not
# after: scan_f64 must search for the column of the maximum there
_NEAR = np.array([1.0, np.nextafter(1.0, 2.0), 1.0 + 2.0**-40, 1.0 + 2.0**-21, -1.0 - 2.0**-40])


def two_group_problem(rng, dtype=np.float32):
    """Logits over S and U only (the key kernels' case), labels anywhere."""
    n, c = int(rng.integers(1, 40)), int(rng.integers(2, 70))
    u = rng.random()
    if u < 0.4:
        z = rng.choice(_POOL, size=(n, c))
    elif u < 0.6 and dtype == np.float64:
        z = rng.choice(np.concatenate([_NEAR, _POOL[:4]]), size=(n, c))
    else:  # few distinct values: many exact ties and differences equal to γ
        z = rng.integers(-2, 3, size=(n, c)).astype(dtype)
        z[rng.random(z.shape) < 0.1] = -np.inf
    group = (rng.random(c) < 0.5).astype(np.int8)
    group[rng.permutation(c)[:2]] = [0, 1]
    return z.astype(dtype), group, rng.integers(0, c, size=n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_key_kernels_equal_the_numpy_reference(dtype):
    rng = np.random.default_rng(11)
    for _ in range(400):
        z, group, y = two_group_problem(rng, dtype)
        gamma = float(rng.choice(_GAMMAS))
        if rng.random() < 0.3:  # γ exactly a logit difference of some row
            i, j = rng.integers(0, z.shape[0]), rng.integers(0, z.shape[1])
            diff = float(z[i, j]) - float(z[i, y[i]])
            gamma = diff if np.isfinite(diff) else gamma
        got = _kernels.scan(z, group, y, gamma)
        with np.errstate(invalid="ignore"):  # -inf − -inf in all -inf rows: NaN gaps
            want = _kernels._scan_numpy(z, group, y, gamma)
        for key in _KEYS:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key}, γ={gamma}")
        np.testing.assert_array_equal(got["lo"], z.min(axis=1))
        np.testing.assert_array_equal(got["hi"], z.max(axis=1))
        assert not got["nan"].any()
        top1 = _kernels.scan(z, group)
        for key in ("gap", "pred_other", "pred_absent"):
            np.testing.assert_array_equal(top1[key], want[key])


def test_float64_near_ties_find_the_column_of_the_maximum():
    hi = np.nextafter(1.0, 2.0)
    z = np.array([[1.0, 0.0, 1.0, 0.0, hi, 0.0, hi], [hi, 0.0, 1.0, 5.0, hi, 0.0, 1.0]])
    group = np.array([0, 1, 0, 1, 0, 1, 0], dtype=np.int8)
    got = _kernels.scan(z, group)
    assert got["pred_other"].tolist() == [4, 0]
    assert got["gap"].tolist() == [hi - 0.0, hi - 5.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_go_to_the_lowest_column_and_signed_zeros_tie(dtype):
    z = np.array([[-0.0, 0.0, 0.0, -0.0], [1.0, 1.0, 1.0, 1.0], [-np.inf] * 4], dtype=dtype)
    group = np.array([0, 1, 0, 1], dtype=np.int8)
    got = _kernels.scan(z, group)
    assert got["pred_other"].tolist() == [0, 0, 0]  # -inf everywhere: the group's first column
    assert got["pred_absent"].tolist() == [1, 1, 1]
    assert np.signbit(got["gap"][0])  # -0.0 − 0.0 taken from the chosen columns, bit for bit


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf])
def test_nan_and_plus_inf_are_flagged(bad, dtype):
    z = np.zeros((3, 37), dtype=dtype)
    z[1, 20] = bad
    bits = z.view(np.int32 if dtype == np.float32 else np.int64)
    if bad != bad:  # a NaN with another payload too
        bits[2, 36] = -1  # all bits set: a negative NaN
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
    from calib.rules.numba_kernels import NO_KEY

    assert keys[0] == NO_KEY and keys[1] != NO_KEY


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_keys_are_the_exact_boundary(dtype):
    """T: a column of value x of the other group beats the label iff key(x) > T, checked at
    T and T + 1 with the float64 rule itself."""
    from calib.rules.numba_kernels import NO_KEY

    rng = np.random.default_rng(5)
    z = (rng.standard_normal((300, 9)) * rng.choice([1e-3, 1.0, 1e4], size=(300, 1))).astype(dtype)
    is_absent = np.arange(9) % 3 == 0
    y = rng.integers(0, 9, 300)
    for gamma in (0.7, -2.25, 1e-6, 3e4):
        keys = cross_keys(z, is_absent, y, gamma)
        assert (keys != NO_KEY).all()
        zy = z[np.arange(300), y].astype(np.float64)
        for t, beaten in ((keys, False), (keys + 1, True)):
            d = floats_of_keys(t, dtype).astype(np.float64) - zy
            beats = np.where(is_absent[y], d >= gamma, d > -gamma)
            assert (beats == beaten).all()
