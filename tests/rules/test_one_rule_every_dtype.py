"""The library's contract: one decision rule in every dtype, and every input either
computed correctly or refused with a message naming the parameter and the value given."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tests.brute as brute
from calib import accuracy_report, seen_absent_curve
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.selectors import PseudoSplit, select_pcv
from calib.wrapper import CalibratedClassifier, calibrate

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
SEEN = range(5)


def identity_wrapper(cal: LogitBiasCalibrator, device: str) -> CalibratedClassifier:
    return CalibratedClassifier.from_calibrator(nn.Identity().to(device), cal)


# ----------------------------------------------------------------------------- one rule


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [5.113, 2.0])  # 2.0 on a coarse grid: exact ties z_a + γ = z_o
def test_one_decision_rule_in_every_dtype(dtype, device, gamma):
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(20000, 10, generator=g) * 4).to(dtype).to(device)
    if gamma == 2.0:
        z = torch.round(z).to(dtype)  # integer logits: many samples sit exactly at the gap
    y = torch.randint(0, 10, (20000,), generator=g).to(device)
    cal = LogitBiasCalibrator("fixed", gamma=gamma).fit(seen_classes=SEEN, num_classes=10)
    pred = cal.predict(z)
    by_transform = cal.transform(z).argmax(1)
    with torch.no_grad():
        by_wrapper = identity_wrapper(cal, device)(z).argmax(1)
    assert torch.equal(pred, by_transform) and torch.equal(pred, by_wrapper)
    # the gap rule, written out: U exactly when γ > max_other − max_absent (ties stay out of U)
    zz = z.double().cpu()
    gap = zz[:, :5].max(1).values - zz[:, 5:].max(1).values
    rule = torch.where(gamma > gap, zz[:, 5:].argmax(1) + 5, zz[:, :5].argmax(1))
    assert torch.equal(pred.cpu(), rule)
    if gamma == 2.0:
        assert int((gap == gamma).sum()) > 500  # the ties were really exercised
    hits = (pred == y).double().mean().item()
    assert cal.score(z, y) == hits
    assert accuracy_report(z, y, SEEN, gamma=gamma, topk=(1,))["acc_all"] == hits


def test_one_rule_for_numpy_float16_and_integer_logits():
    rng = np.random.default_rng(1)
    z16 = (rng.normal(size=(5000, 8)) * 4).astype(np.float16)
    zint = np.round(rng.normal(size=(5000, 8)) * 4).astype(np.int64)
    cal = LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=range(4), num_classes=8)
    for z in (z16, zint):
        out = cal.transform(z)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out.argmax(1), cal.predict(z))


def test_int64_model_logits_are_not_truncated_and_float16_does_not_overflow():
    class IntModel(nn.Module):
        def forward(self, x):
            return x.round().long()

    wrapped = CalibratedClassifier(IntModel(), 2.7, [2, 3], 4)
    out = wrapped(torch.tensor([[0.0, 1.0, 1.0, -1.0]]))
    assert out.dtype == torch.float64 and out[0, 2].item() == pytest.approx(3.7, abs=1e-12)
    big = CalibratedClassifier(nn.Identity(), 7e4, [1], 2)
    out = big(torch.tensor([[1.0, 2.0]], dtype=torch.float16))
    assert torch.isfinite(out).all() and out[0, 1].item() == pytest.approx(70002.0)


# ----------------------------------------------------------------------------- -inf columns


def test_neg_inf_columns_are_never_predicted_and_exact():
    rng = np.random.default_rng(2)
    z = rng.integers(-3, 4, size=(60, 6)).astype(np.float64)
    z[rng.random(z.shape) < 0.25] = -np.inf
    z[:, 0] = np.where(np.isneginf(z).all(axis=1), 0.0, z[:, 0])  # no row all -inf
    z[:5, 3:] = -np.inf  # rows whose absent columns can never win
    z[5:10, :3] = -np.inf  # rows whose seen columns can never win
    y = rng.integers(0, 6, size=60)
    seen, absent = [0, 1, 2], [3, 4, 5]
    for gamma in [-2.5, -1.0, 0.0, 0.5, 1.0, 3.0]:
        got = accuracy_report(z, y, seen, absent, gamma=gamma, topk=(1, 2, 3))
        for k in (1, 2, 3):
            want = brute.accuracies(z, y, seen, absent, gamma, k)
            suffix = "" if k == 1 else f"_top{k}"
            for key, value in want.items():
                np.testing.assert_equal(
                    got[key + suffix], value, err_msg=f"{key}{suffix} γ={gamma}"
                )
    curve = seen_absent_curve(z, y, seen, absent)
    assert np.all(np.isfinite(curve.gamma[:-1])) and curve.gamma[-1] == np.inf
    for k, gamma in enumerate(curve.gamma[:-1]):
        want = brute.accuracies(z, y, seen, absent, float(gamma))
        assert curve.acc_seen[k] == want["acc_seen"] and curve.acc_absent[k] == want["acc_absent"]
    cal = LogitBiasCalibrator("fixed", gamma=0.5).fit(seen_classes=seen, num_classes=6)
    pred = cal.predict(z)
    assert not np.any(np.isneginf(z[np.arange(60), pred]))
    np.testing.assert_array_equal(pred, brute.predict(z, absent, 0.5))
    np.testing.assert_array_equal(cal.transform(z).argmax(1), pred)
    assert np.isfinite(LogitBiasCalibrator("prior").fit(z, seen_classes=seen).gamma_)
    assert np.isfinite(LogitBiasCalibrator("oracle").fit(z, y, seen).gamma_)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_pos_inf_stay_errors(bad):
    z = np.zeros((3, 4))
    z[1, 2] = bad
    with pytest.raises(ValueError, match=r"logits has 1 non-finite value.*sample 1, class 2"):
        accuracy_report(z, [0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=[0], num_classes=4).transform(
            torch.from_numpy(z)
        )


def test_rows_of_only_neg_inf_and_alg_on_neg_inf_are_refused():
    z = np.zeros((3, 4))
    z[2] = -np.inf
    with pytest.raises(ValueError, match="sample 2 has -inf in every column"):
        accuracy_report(z, [0, 1, 2], [0, 1])
    z = np.zeros((3, 4))
    z[:, 3] = -np.inf
    with pytest.raises(ValueError, match="ALG averages logits, but column 3 holds -inf"):
        LogitBiasCalibrator("alg").fit(z, [0, 1, 0], [0, 1])


# ----------------------------------------------------------------------------- silent inputs


def test_strings_complex_and_oversized_topk():
    z, y = np.random.default_rng(0).normal(size=(8, 6)), np.arange(8) % 6
    with pytest.raises(ValueError, match="gamma must be a real number, got '3'"):
        accuracy_report(z, y, [0, 1, 2], gamma="3")
    with pytest.raises(ValueError, match="gamma must be a real number, got '2.5'"):
        LogitBiasCalibrator("fixed", gamma="2.5").fit(seen_classes=[0], num_classes=6)
    with pytest.raises(TypeError, match="logits must be real, got complex dtype complex128"):
        accuracy_report(z + 1j, y, [0, 1, 2])
    with pytest.raises(TypeError, match="complex"):
        LogitBiasCalibrator("prior").fit(torch.from_numpy(z + 1j), seen_classes=[0])
    with pytest.warns(RuntimeWarning, match="k=50 exceeds the 6 columns"):
        accuracy_report(z, y, [0, 1, 2], topk=(1, 50))
    with pytest.raises(ValueError, match="beyond 2\\*\\*53"):
        accuracy_report(np.array([[2**60, 0]]), [0], [0])


def test_probabilities_for_logits_warn():
    z = torch.randn(50, 6).softmax(1).numpy()
    with pytest.warns(UserWarning, match="look like probabilities"):
        LogitBiasCalibrator("prior").fit(z, seen_classes=[0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LogitBiasCalibrator("prior").fit(np.log(z), seen_classes=[0, 1, 2])  # log-probs: fine
        accuracy_report(np.eye(3), [0, 1, 2], [0, 1], topk=(1,))  # one-hot rows: no warning


def test_pcv_split_must_shift_the_real_absent_classes():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(30, 6)), rng.integers(0, 3, 30)
    with pytest.raises(ValueError, match=r"leave out the real absent classes \[3, 4, 5\].*U too"):
        select_pcv([PseudoSplit(z, y, [0, 1], [2])], [0, 1, 2], [3, 4, 5])
    gamma, _ = select_pcv([PseudoSplit(z, y, [0, 1], [2, 3, 4, 5])], [0, 1, 2], [3, 4, 5])
    assert math.isfinite(gamma)


# ----------------------------------------------------------------------------- messages


def test_out_of_range_values_are_shown_as_given():
    z = np.zeros((1, 4))
    with pytest.raises(ValueError, match="e.g. 9223372036854775809"):
        accuracy_report(z, np.array([2**63 + 1], dtype=np.uint64), [0])
    with pytest.raises(ValueError, match=r"e.g. 1e\+20"):
        accuracy_report(z, np.array([1e20]), [0])
    with pytest.raises(ValueError, match=r"seen_classes out of range: \[1e\+20\]"):
        accuracy_report(z, [0], [0.0, 1e20])


def test_classes_as_any_iterable_of_ints():
    z, y = np.random.default_rng(0).normal(size=(10, 5)), np.arange(10) % 5
    want = accuracy_report(z, y, [0, 1], [3, 4])
    assert accuracy_report(z, y, (c for c in [0, 1]), {3: "a", 4: "b"}.keys()) == want
    assert accuracy_report(z, y, torch.tensor([0, 1]), range(3, 5)) == want


def test_selector_parameters_and_pseudo_splits_are_named():
    z = np.random.default_rng(0).normal(size=(10, 5))
    with pytest.raises(ValueError, match="prior must be a real number, got 'abc'"):
        LogitBiasCalibrator("prior", prior="abc").fit(z, seen_classes=[0, 1])
    split = PseudoSplit(z, np.zeros(10, int), [0], [1, 2, 3, 4])
    for bad, match in [
        ([], "pseudo_splits is empty"),
        ([{"logits": z}], r"pseudo_splits\[0\] must be a PseudoSplit, got dict"),
        (split, "got a single PseudoSplit: pass \\[split\\]"),
    ]:
        with pytest.raises((TypeError, ValueError), match=match):
            LogitBiasCalibrator("pcv").fit(seen_classes=[0, 1], pseudo_splits=bad)


def test_save_errors_name_the_destination(tmp_path):
    cal = LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=[0], num_classes=3)
    with pytest.raises(OSError, match="cannot save calibrator to /proc/calib.json"):
        cal.save("/proc/calib.json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file is a file, not a folder"):
        cal.save(tmp_path / "file" / "cal.json")


def test_calibrate_casts_inputs_to_the_model_dtype_and_refuses_meta():
    model = nn.Linear(4, 6).double()
    data = TensorDataset(torch.randn(20, 4), torch.randint(0, 3, (20,)))
    wrapped = calibrate(model, DataLoader(data, batch_size=8), [0, 1, 2], progress=False)
    assert math.isfinite(wrapped.calibrator.gamma_)
    with pytest.raises(ValueError, match="device='meta' holds no data"):
        calibrate(model, DataLoader(data, batch_size=8), [0, 1, 2], device="meta", progress=False)


def test_corrupt_state_and_files_are_refused(tmp_path):
    wrapped = CalibratedClassifier(nn.Linear(3, 4), 1.0, [2, 3], 4)
    state = wrapped.state_dict()
    state["gamma"] = torch.tensor(float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="gamma must be one finite number"):
        wrapped.load_state_dict(state)
    state = wrapped.state_dict()
    state["absent_mask"] = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="marks 4 of 4 columns"):
        wrapped.load_state_dict(state)
    assert float(wrapped.gamma) == 1.0
    cal = LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=[0], num_classes=3)
    path = tmp_path / "cal.json"
    cal.save(path)
    path.write_text(path.read_text().replace('"method": "fixed"', '"method": "bogus"'))
    with pytest.raises(ValueError, match="corrupt calibrator file.*unknown selector 'bogus'"):
        LogitBiasCalibrator.load(path)
    cal.save(path)
    path.write_text(
        path.read_text().replace('"gamma": 1.0,\n    "method"', '"gamma": "x",\n    "method"')
    )
    with pytest.raises(ValueError, match="corrupt calibrator file.*gamma must be a real number"):
        LogitBiasCalibrator.load(path)
