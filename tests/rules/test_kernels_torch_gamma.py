"""The torch (CUDA) rank path compares differences with γ in float64, as numpy and numba do
(for CUDA tensors). ``scan_torch`` is the path CUDA tensors take; it runs on CPU tensors here.
"""

from __future__ import annotations

import numpy as np
import pytest

import calib.rules.kernels as _kernels

torch = pytest.importorskip("torch")

GAMMA = 0.1  # not exact in float32: float32(0.1) = 0.10000000149011612 > 0.1
BETWEEN = 0.1 + 1e-10  # a float64 difference strictly between 0.1 and float32(0.1)


def test_the_constructed_gap_lies_between_gamma_and_its_float32_rounding():
    assert GAMMA < BETWEEN < float(np.float32(GAMMA))


@pytest.mark.parametrize("gamma", [GAMMA, -GAMMA])
def test_torch_ranks_equal_numpy_for_a_difference_between_float32_gamma_and_gamma(gamma):
    # columns: 0 seen, 1 absent, 2 seen. Row 0: seen label 0, the absent column BETWEEN below
    # it (γ = 0.1: γ > z_y − z_c is false, the absent column does not beat the label; against
    # float32(γ) it would). Row 1: absent label 1, seen column 0 BETWEEN above it (γ = 0.1:
    # "not (γ > z_c − z_y)" holds, column 0 beats the label). With −γ the mirrored rows.
    s = 1.0 if gamma > 0 else -1.0
    z = np.array([[0.0, -s * BETWEEN, -5.0], [s * BETWEEN, 0.0, -5.0]])
    group = np.array([_kernels.SEEN, _kernels.ABSENT, _kernels.SEEN], dtype=np.int8)
    y = np.array([0, 1])
    want = _kernels._scan_numpy(z, group, y, gamma)
    got = _kernels.scan_torch(torch.from_numpy(z), group, y, gamma)
    expected = [0, 1] if gamma > 0 else [1, 0]
    np.testing.assert_array_equal(want["rank"], expected)  # the rule, by hand
    np.testing.assert_array_equal(got["rank"], want["rank"])
    if _kernels.available():
        np.testing.assert_array_equal(_kernels.scan(z, group, y, gamma)["rank"], want["rank"])
