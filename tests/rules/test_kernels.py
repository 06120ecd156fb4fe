"""The one-pass kernels (numba) give exactly what the numpy reference implementations give."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import calib.rules.kernels as _kernels
from calib import accuracy_report, seen_absent_curve
from calib.rules.gaps import group_codes

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="numba is not installed")


def random_problem(rng):
    n, c = int(rng.integers(1, 30)), int(rng.integers(2, 9))
    z = rng.integers(-3, 4, size=(n, c)).astype(rng.choice([np.float32, np.float64]))
    z[rng.random(z.shape) < 0.2] = -np.inf
    z[:, 0] = np.where(np.isneginf(z).all(axis=1), 0.0, z[:, 0])
    group = rng.integers(0, 3, size=c).astype(np.int8)
    group[rng.permutation(c)[:2]] = [0, 1]  # at least one seen and one absent column
    return z, group, rng.integers(0, c, size=n)


def test_scan_equals_the_numpy_reference_with_ties_neg_inf_and_other_columns():
    rng = np.random.default_rng(0)
    for _ in range(300):
        z, group, y = random_problem(rng)
        gamma = float(rng.choice([-1.5, 0.0, 1.0, 2.0, np.inf, -np.inf]))
        got = _kernels.scan(z, group, y, gamma)
        want = _kernels._scan_numpy(z, group, y, gamma)
        for key in (
            "gap",
            "pred_other",
            "pred_absent",
            "pred_seen",
            "rank",
            "rank_seen",
            "rank_absent",
        ):
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_shift_and_alg_sums_equal_numpy():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 7))
    z[3, 2] = -np.inf
    add, rel, tiny = (np.where(np.arange(7) > 3, v, 0.0) for v in (1.5, 2.0**-51, 2.0**-1000))
    out, lo, hi, nan = _kernels.shift(z, add, rel, tiny)
    s = z + add
    np.testing.assert_array_equal(out, s - (np.minimum(np.abs(s), 1e308) * rel + tiny))
    assert np.isneginf(out[3, 2]) and not nan.any() and lo[3] == -np.inf
    group = np.array([0, 0, 0, 1, 1, 2, 1], dtype=np.int8)
    sum_seen, sum_absent, *_ = _kernels.alg_sums(z[4:], group)
    np.testing.assert_allclose(sum_seen, z[4:, :3].sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(sum_absent, z[4:, [3, 4, 6]].sum(axis=1), rtol=1e-14)


def test_the_numpy_fallback_gives_the_same_report_and_curve(monkeypatch):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(300, 12)).astype(np.float32)
    y = rng.integers(0, 12, 300)
    seen, absent = [0, 2, 5, 7], [1, 3, 4, 8, 9]  # 6, 10, 11: other columns
    fast = accuracy_report(z, y, seen, absent, gamma=0.3)
    fast_curve = seen_absent_curve(z, y, seen, absent)
    monkeypatch.setattr(_kernels, "_build", lambda: None)
    assert accuracy_report(z, y, seen, absent, gamma=0.3) == fast
    slow_curve = seen_absent_curve(z, y, seen, absent)
    np.testing.assert_array_equal(slow_curve.gamma, fast_curve.gamma)
    np.testing.assert_array_equal(slow_curve.acc_all, fast_curve.acc_all)


def test_group_codes():
    assert group_codes(5, np.array([0, 3]), np.array([1])).tolist() == [0, 1, 2, 0, 2]


def test_importing_the_metrics_does_not_import_torch():
    code = (
        # CPU time: the machine is shared, and wall time counts other processes' turns
        "import sys, time; t = time.process_time(); import calib; calib.seen_absent_curve; "
        "calib.accuracy_report; t = time.process_time() - t; import numpy as np; "
        "z = np.random.default_rng(0).normal(size=(50, 6)); "
        "calib.seen_absent_curve(z, np.arange(50) % 6, [0, 1, 2]); "
        "print('torch' in sys.modules, t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, seconds = out.stdout.split()
    assert loaded == "False"
    assert float(seconds) < 0.3


def test_the_torch_device_path_equals_the_kernels():
    """scan_torch is what CUDA tensors run on their device; here it runs on CPU tensors."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for _ in range(100):
        z, group, y = random_problem(rng)
        gamma = float(rng.choice([-1.5, 0.0, 1.0, np.inf]))
        got = _kernels.scan_torch(torch.from_numpy(z), group, y, gamma)
        want = _kernels._scan_numpy(z, group, y, gamma)
        for key in (
            "gap",
            "pred_other",
            "pred_absent",
            "pred_seen",
            "rank",
            "rank_seen",
            "rank_absent",
        ):
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.cuda
@pytest.mark.skipif(not pytest.importorskip("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_logits_are_computed_on_the_device(monkeypatch):
    import torch

    from calib.validation import check_logits

    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 50, generator=g)
    y = torch.randint(0, 50, (2000,), generator=g)
    seen = list(range(0, 50, 2))
    want = accuracy_report(z, y, seen, gamma=0.7)
    want_curve = seen_absent_curve(z, y, seen)
    zc, yc = z.cuda(), y.cuda()
    assert check_logits(zc, values=False, on_device=True).is_cuda  # no host copy
    assert accuracy_report(zc, yc, seen, gamma=0.7) == want
    curve = seen_absent_curve(zc, yc, seen)
    assert torch.equal(curve.gamma.cpu(), torch.as_tensor(want_curve.gamma))
    assert curve.ausuc == want_curve.ausuc
