"""transform(logits, out=buffer): the same float64 logits as a fresh call, written into out."""

from __future__ import annotations

import numpy as np
import pytest

import calib.rules.kernels as _kernels
from calib import LogitBiasCalibrator


@pytest.fixture
def fitted():
    return LogitBiasCalibrator("fixed", gamma=0.75).fit(seen_classes=[0, 2, 3], num_classes=6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_receives_exactly_the_plain_result(fitted, dtype):
    z = np.random.default_rng(0).normal(size=(50, 6)).astype(dtype)
    z[3, 1] = -np.inf
    want = fitted.transform(z)
    buf = np.full(z.shape, np.nan)
    got = fitted.transform(z, out=buf)
    assert got is buf
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_out_is_checked(fitted):
    z = np.zeros((4, 6))
    with pytest.raises(ValueError, match="float64 of the logits' shape"):
        fitted.transform(z, out=np.empty((4, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="float64 of the logits' shape"):
        fitted.transform(z, out=np.empty((4, 5)))
    with pytest.raises(ValueError, match="C-contiguous"):
        fitted.transform(z, out=np.empty((6, 4)).T)
    with pytest.raises(ValueError, match="overlaps"):
        fitted.transform(z, out=z)
    with pytest.raises(TypeError, match="numpy array"):
        fitted.transform(z, out=[[0.0] * 6] * 4)


def test_bad_values_are_refused_with_out_too(fitted):
    z = np.zeros((4, 6), dtype=np.float32)
    z[2, 4] = np.nan
    with pytest.raises(ValueError, match="sample 2, class 4"):
        fitted.transform(z, out=np.empty((4, 6)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shift_row_statistics_from_keys(dtype):
    """The shift kernel's min/max/NaN come from integer keys: same as numpy's."""
    rng = np.random.default_rng(4)
    z = rng.choice(np.array([0.0, -0.0, 1e-45, -3.0, 7.5, -np.inf, 1e30]), size=(30, 21))
    z = z.astype(dtype)
    zero = np.zeros(21)
    _, lo, hi, nan = _kernels.shift(z, zero, zero, zero)
    np.testing.assert_array_equal(lo, z.min(axis=1))
    np.testing.assert_array_equal(hi, z.max(axis=1))
    assert not nan.any()
    z[4, 7], z[9, 0] = np.nan, np.inf
    _, lo, hi, nan = _kernels.shift(z, zero, zero, zero)
    assert np.flatnonzero(nan).tolist() == [4] and hi[9] == np.inf


def test_large_outputs_from_numbas_allocator_are_the_same(fitted, monkeypatch):
    """Beyond _HUGE_PAGES_UP_TO the output comes from numba's malloc: same numbers."""
    z = np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32)
    want = fitted.transform(z)
    monkeypatch.setattr(_kernels, "_HUGE_PAGES_UP_TO", 0)
    got = fitted.transform(z)
    assert got.dtype == np.float64 and got.flags.c_contiguous and got.flags.writeable
    np.testing.assert_array_equal(got, want)


def test_the_numpy_fallback_writes_out_the_same(fitted, monkeypatch):
    z = np.random.default_rng(2).normal(size=(30, 6)).astype(np.float32)
    want = fitted.transform(z)
    monkeypatch.setattr(_kernels, "_build", lambda: None)
    buf = np.empty(z.shape)
    assert fitted.transform(z, out=buf) is buf
    np.testing.assert_array_equal(buf, want)
    np.testing.assert_array_equal(fitted.transform(z), want)
