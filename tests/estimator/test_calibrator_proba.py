"""The calibrator's temperature and predict_proba, the wrapper's forward_proba.

References are independent: a plain float64 softmax of (z + γ·1_U) / T per row, the row's T
chosen from brute.predict (T_U where the brute-force prediction is absent), and
calib.estimator.temperature's fits called directly on the data each selector was given.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tests.brute as brute
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.estimator.temperature import fit_temperature, fit_temperature_pseudo_splits
from calib.selectors import PseudoSplit
from calib.wrapper import CalibratedClassifier, calibrate

SEEN = [0, 1, 2, 3]
ABSENT = [4, 5, 6, 7, 8, 9]
# U before S in column order: an exact tie between the groups then differs from "lowest index"
LOW_U, HIGH_S = [0, 1, 2], [3, 4, 5]


def softmax_reference(z, absent, gamma, temperature):
    """Row by row: s = z + γ·1_U in float64, p = exp(s/T − max) / Σ, T by the brute prediction."""
    z = np.asarray(z, dtype=np.float64)
    t_seen, t_absent = temperature if isinstance(temperature, tuple) else (temperature,) * 2
    pred = brute.predict(z, absent, gamma)
    out = np.empty_like(z)
    for i, row in enumerate(z):
        s = np.array(brute.shifted_row(row, set(absent), gamma))
        s /= t_absent if pred[i] in absent else t_seen
        e = np.exp(s - s.max())
        out[i] = e / e.sum()
    return out


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 10)) * 2
    z[:, SEEN] += 1.5
    y = rng.integers(0, 10, size=60)
    z[np.arange(60), y] += 2.5  # informative logits: a fitted T lies inside its bracket
    return z, y


def fixed(gamma=0.8, temperature=None, seen=SEEN, width=10):
    return LogitBiasCalibrator("fixed", gamma=gamma, temperature=temperature).fit(
        seen_classes=seen, num_classes=width
    )


# ----------------------------------------------------------------------------- predict_proba


@pytest.mark.parametrize("temperature", [None, 0.37, 2.5, (0.5, 3.0), (4.0, 0.25)])
def test_predict_proba_is_the_softmax_of_the_shifted_logits_over_t(data, temperature):
    z, _ = data
    cal = fixed(1.1, temperature)
    p = cal.predict_proba(z)
    want = softmax_reference(z, ABSENT, 1.1, 1.0 if temperature is None else temperature)
    assert p.dtype == np.float64 and p.shape == z.shape
    np.testing.assert_allclose(p, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(p.argmax(axis=1), cal.predict(z))
    if isinstance(temperature, tuple):  # both temperatures are in use on this data
        in_u = np.isin(cal.predict(z), ABSENT)
        assert in_u.any() and (~in_u).any()


def test_predict_proba_of_a_tensor_is_a_float64_tensor(data):
    z, _ = data
    cal = fixed(0.4, 1.7)
    p = cal.predict_proba(torch.from_numpy(z).float())
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float64
    np.testing.assert_allclose(p.numpy(), cal.predict_proba(z.astype(np.float32)), atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [1.0, 3.0, (0.2, 5.0)])
def test_argmax_of_predict_proba_is_predict_in_every_dtype(dtype, temperature):
    rng = np.random.default_rng(3)
    # integer logits and an integer γ: many exact ties between a U column and a later S
    # column, which the rule sends to S while "first maximum" would pick U
    ties = torch.from_numpy(rng.integers(-3, 3, size=(400, 6)).astype(np.float64))
    tiny = torch.from_numpy(rng.normal(size=(400, 6)) * 1e-3)  # rounding-scale differences
    cal = fixed(1.0, temperature, seen=HIGH_S, width=6)
    for z in (ties.to(dtype), tiny.to(dtype)):
        p = cal.predict_proba(z)
        assert torch.equal(p.argmax(dim=1), cal.predict(z))
        want = softmax_reference(z.double().numpy(), LOW_U, 1.0, temperature)
        np.testing.assert_allclose(p.numpy(), want, rtol=0, atol=1e-12)
    exact = (ties[:, LOW_U] + 1.0).max(1).values == ties[:, HIGH_S].max(1).values
    assert exact.sum() > 20  # the tie case is exercised


def test_predict_proba_errors(data):
    z, _ = data
    with pytest.raises(Exception, match="not fitted"):
        LogitBiasCalibrator("fixed", gamma=1.0).predict_proba(z)
    with pytest.raises(ValueError, match="columns"):
        fixed().predict_proba(z[:, :5])


# ----------------------------------------------------------------------------- temperature="fit"


def test_alg_fits_t_on_the_given_s_rows(data):
    z, y = data
    s_rows = np.isin(y, SEEN)
    cal = LogitBiasCalibrator("alg", temperature="fit").fit(z[s_rows], y[s_rows], SEEN)
    want = fit_temperature(z[s_rows], y[s_rows], ABSENT, cal.gamma_)
    assert cal.temperature_ == want and 0.05 < want < 20
    assert cal.info_["temperature"] == want
    assert cal.info_["temperature_data"] == "finetune_train"
    assert cal.info_["temperature_samples"] == int(s_rows.sum())
    assert cal.gamma_ == LogitBiasCalibrator("alg").fit(z[s_rows], y[s_rows], SEEN).gamma_
    with pytest.raises(ValueError, match="absent"):  # U labels never reach alg, nor its T
        LogitBiasCalibrator("alg", temperature="fit").fit(z, y, SEEN)


def test_pcv_fits_t_on_the_pseudo_splits(data):
    z, _ = data
    rng = np.random.default_rng(1)
    splits = [
        PseudoSplit(z[:30], rng.choice(SEEN, 30), [0, 1], [2, 3, *ABSENT]),
        PseudoSplit(z[30:], rng.choice(SEEN, 30), [2, 3], [0, 1, *ABSENT]),
    ]
    cal = LogitBiasCalibrator("pcv", temperature="fit").fit(pseudo_splits=splits, seen_classes=SEEN)
    assert cal.temperature_ == fit_temperature_pseudo_splits(splits, cal.gamma_)
    assert cal.info_["temperature_data"] == "pseudo_splits"
    assert cal.info_["temperature_samples"] == 60


def test_oracle_fits_t_on_the_labelled_target_data_and_says_upper_bound(data):
    z, y = data
    cal = LogitBiasCalibrator("oracle", temperature="fit").fit(z, y, SEEN)
    assert cal.temperature_ == fit_temperature(z, y, ABSENT, cal.gamma_)
    assert cal.info_["temperature_data"] == "target_labelled"
    assert "upper bound" in cal.info_["temperature_note"]


def test_fit_per_group_fits_the_pair_on_the_same_data(data):
    z, y = data
    cal = LogitBiasCalibrator("oracle", temperature="fit_per_group").fit(z, y, SEEN)
    want = fit_temperature(z, y, ABSENT, cal.gamma_, per_group=True)
    assert cal.temperature_ == want and want[0] != want[1]
    assert cal.info_["temperature"] == list(want)
    p = cal.predict_proba(z)
    np.testing.assert_allclose(p, softmax_reference(z, ABSENT, cal.gamma_, want), atol=1e-12)


def test_fit_is_refused_without_labelled_data(data):
    z, _ = data
    with pytest.raises(ValueError, match="temperature='fit'.*'prior'.*label-free.*labels"):
        LogitBiasCalibrator("prior", temperature="fit").fit(z, seen_classes=SEEN)
    with pytest.raises(ValueError, match="'fit_per_group'.*'prior'.*label-free"):
        LogitBiasCalibrator("prior", temperature="fit_per_group").fit(z, seen_classes=SEEN)
    with pytest.raises(ValueError, match="temperature='fit'.*'fixed'.*no data"):
        LogitBiasCalibrator("fixed", gamma=1.0, temperature="fit").fit(
            seen_classes=SEEN, num_classes=10
        )


@pytest.mark.parametrize(
    "bad, match",
    [
        (0.0, "temperature must be finite and > 0, got 0.0"),
        (-2, "> 0, got -2"),
        (math.nan, "finite"),
        ("fitted", "'fit_per_group', got 'fitted'"),
        ((1.0, 2.0, 3.0), "pair"),
        ((1.0, math.inf), "T_U must be finite"),
        (True, "real number"),
    ],
)
def test_bad_temperatures_are_refused_naming_the_value(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fixed(temperature=bad)


def test_sklearn_clone_and_params_keep_the_temperature():
    for t in ("fit", 2.0, (0.5, 2.0), None):
        cal = LogitBiasCalibrator("pcv", temperature=t)
        twin = clone(cal)
        assert twin.get_params()["temperature"] == t and twin.get_params() == cal.get_params()
    assert "temperature=(0.5, 2.0)" in repr(LogitBiasCalibrator(temperature=(0.5, 2.0)))


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("temperature", ["fit", 0.3, (0.5, 3.0)])
def test_save_load_round_trip_is_exact(data, tmp_path, temperature):
    z, y = data
    cal = LogitBiasCalibrator("oracle", temperature=temperature).fit(z, y, SEEN)
    cal.save(tmp_path / "c.json")
    back = LogitBiasCalibrator.load(tmp_path / "c.json")
    assert back.temperature_ == cal.temperature_
    assert type(back.temperature_) is type(cal.temperature_)
    assert back.get_params() == cal.get_params()
    np.testing.assert_array_equal(back.predict_proba(z), cal.predict_proba(z))


def test_a_version_1_file_loads_with_t_1_and_a_bad_t_is_refused(data, tmp_path):
    z, _ = data
    cal = fixed(0.9, 2.0)
    cal.save(tmp_path / "c.json")
    payload = json.loads((tmp_path / "c.json").read_text())
    old = {**payload, "version": 1, "params": dict(payload["params"])}
    del old["params"]["temperature"]
    old["fitted"] = {k: v for k, v in payload["fitted"].items() if k != "temperature"}
    (tmp_path / "v1.json").write_text(json.dumps(old))
    back = LogitBiasCalibrator.load(tmp_path / "v1.json")
    assert back.temperature_ == 1.0
    np.testing.assert_array_equal(back.predict_proba(z), fixed(0.9).predict_proba(z))
    for bad in (0, -1.0, [1.0], "2", None):
        broken = {**payload, "fitted": {**payload["fitted"], "temperature": bad}}
        (tmp_path / "bad.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match="bad.json is a corrupt.*temperature"):
            LogitBiasCalibrator.load(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- the wrapper


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = nn.Linear(5, 10)
    with torch.no_grad():
        net.bias[SEEN] += 2.0
    return net.eval()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.6, (0.5, 3.0)])
def test_forward_proba_equals_predict_proba_of_the_calibrator(model, dtype, temperature):
    model.to(dtype)
    x = torch.randn(50, 5, dtype=dtype)
    cal = fixed(1.3, temperature)
    wrapped = CalibratedClassifier.from_calibrator(model, cal)
    want_t = torch.tensor(temperature, dtype=torch.float64)
    assert torch.equal(wrapped.temperature, want_t)
    with torch.no_grad():
        logits, p = model(x), wrapped.forward_proba(x)
        assert p.dtype == torch.float64
        assert torch.equal(p.argmax(dim=1), wrapped(x).argmax(dim=1))
        assert torch.equal(p.argmax(dim=1), cal.predict(logits))
        torch.testing.assert_close(p, cal.predict_proba(logits), rtol=0, atol=1e-14)
        scripted = torch.jit.script(wrapped)
        assert torch.equal(scripted.forward_proba(x), p)


def test_forward_proba_keeps_the_rule_on_exact_ties():
    head = nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(6))
    z = torch.from_numpy(np.random.default_rng(4).integers(-3, 3, size=(300, 6))).double()
    cal = fixed(1.0, (0.5, 2.0), seen=HIGH_S, width=6)
    wrapped = CalibratedClassifier.from_calibrator(head.double(), cal)
    with torch.no_grad():
        p = wrapped.forward_proba(z)
    assert torch.equal(p.argmax(dim=1), cal.predict(z))
    torch.testing.assert_close(p, cal.predict_proba(z), rtol=0, atol=1e-14)


def test_export_of_forward_proba(model):
    class Proba(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_proba(x)

    wrapped = CalibratedClassifier(model, 0.7, ABSENT, 10, temperature=(0.5, 2.0))
    x = torch.randn(8, 5)
    program = torch.export.export(Proba(wrapped), (x,))
    with torch.no_grad():
        assert torch.equal(program.module()(x), wrapped.forward_proba(x))


def test_state_dict_and_files_keep_t(model, tmp_path):
    wrapped = CalibratedClassifier(model, 0.5, ABSENT, 10, temperature=(0.5, 3.0))
    fresh = CalibratedClassifier(nn.Linear(5, 10), 0.0, [9], 10)  # a 0-d T of 1
    fresh.load_state_dict(wrapped.state_dict())
    assert torch.equal(fresh.temperature, torch.tensor([0.5, 3.0], dtype=torch.float64))
    back_to_scalar = CalibratedClassifier(nn.Linear(5, 10), 0.0, [9], 10, temperature=2.0)
    fresh.load_state_dict(back_to_scalar.state_dict())
    assert fresh.temperature.shape == () and float(fresh.temperature) == 2.0
    x = torch.randn(6, 5)
    wrapped.save(tmp_path / "w.pt")
    torch.load(tmp_path / "w.pt", weights_only=True)
    back = CalibratedClassifier.load(tmp_path / "w.pt", nn.Linear(5, 10))
    assert torch.equal(back.temperature, wrapped.temperature)
    with torch.no_grad():
        assert torch.equal(back.forward_proba(x), wrapped.forward_proba(x))
    old = torch.load(tmp_path / "w.pt", weights_only=True)
    del old["temperature"]
    old["version"] = 1
    torch.save(old, tmp_path / "v1.pt")
    assert float(CalibratedClassifier.load(tmp_path / "v1.pt", nn.Linear(5, 10)).temperature) == 1


@pytest.mark.parametrize(
    "bad", [torch.tensor(math.nan), torch.tensor(0.0), torch.tensor([1.0, -1.0]), torch.ones(3)]
)
def test_a_bad_t_in_a_state_dict_is_refused(model, bad):
    wrapped = CalibratedClassifier(model, 0.5, ABSENT, 10)
    state = {**wrapped.state_dict(), "temperature": bad}
    with pytest.raises(ValueError, match="temperature must be one number > 0"):
        wrapped.load_state_dict(state)
    assert float(wrapped.temperature) == 1.0
    with pytest.raises(ValueError, match="temperature"):
        CalibratedClassifier(model, 0.5, ABSENT, 10, temperature=-1.0)


def test_calibrate_fits_t_with_gamma_and_refuses_fit_for_prior(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    with torch.no_grad():
        y = model(x)[:, SEEN].argmax(dim=1)  # mostly right, a few labels redrawn at random
    y[::4] = torch.as_tensor(np.random.default_rng(0).choice(SEEN, 10))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    wrapped = calibrate(model, loader, SEEN, method="alg", temperature="fit", progress=False)
    cal = wrapped.calibrator
    with torch.no_grad():
        want = fit_temperature(model(x), y, ABSENT, cal.gamma_)
    # calibrate() extracts the float32 logits in batches of 16, model(x) in one matmul of 40
    # rows: BLAS kernels (MKL on AVX-512) may round them 1 ulp apart, and T moves with them.
    # T is a smooth function of the logits here (well inside its bracket, Newton to 1e-12 in
    # log T), so a few float32 ulps of relative change in T bound the difference.
    assert cal.temperature_ == pytest.approx(want, rel=16 * torch.finfo(torch.float32).eps)
    assert float(wrapped.temperature) == cal.temperature_  # the same float, stored twice
    assert 1e-3 < want < 1e3  # inside the bracket: a real fit
    with pytest.raises(ValueError, match="label-free"):
        calibrate(model, None, SEEN, method="prior", temperature="fit", progress=False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_probabilities_stay_on_the_device(model):
    cal = fixed(1.3, (0.5, 3.0))
    wrapped = CalibratedClassifier.from_calibrator(model, cal).cuda()
    x = torch.randn(64, 5)
    with torch.no_grad():
        p = wrapped.forward_proba(x.cuda())
        logits = model.cpu()(x)
    q = cal.predict_proba(logits.cuda())
    assert p.is_cuda and q.is_cuda
    assert torch.equal(q.cpu(), cal.predict_proba(logits))
    torch.testing.assert_close(p.cpu(), q.cpu(), rtol=0, atol=1e-14)
    assert torch.equal(p.argmax(dim=1).cpu(), cal.predict(logits))
