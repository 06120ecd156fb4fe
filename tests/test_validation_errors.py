"""every bad input gets a clear error that names it (the remaining holes).

Each test is one case found by trying: what a user got before (a raw IndexError, a silent NaN,
a traceback after fine-tuning) and what they see now.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from calib import LogitBiasCalibrator
from calib.methods import METHODS, register_method
from calib.metrics.probability import probability_report, shifted_probabilities
from calib.rules.torch_ops import softmax_rows_torch
from calib.selectors import SELECTORS, register_selector

SEEN, ABSENT = [0, 1, 2], [3]
F64_MAX = np.finfo(np.float64).max


def _data(n=40, c=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)), rng.integers(0, c, n)


@pytest.fixture
def registered():
    """Names registered by a test, unregistered after it (also when it fails)."""
    names: list[tuple[object, str]] = []
    yield names
    for registry, name in names:
        if name in registry:
            registry.unregister(name)


# ----------------------------------------------------------------------------- 1. ALG overflow


def test_alg_on_finite_logits_whose_sums_overflow_gives_gamma():
    # two S columns at 1.7e308: their row sum overflows float64, the mean gap does not
    z = np.zeros((4, 4))
    z[:, 0] = z[:, 1] = 1.7e308
    y = np.array([0, 1, 0, 1])
    cal = LogitBiasCalibrator("alg").fit(z, y, SEEN, ABSENT)
    # every term is (1.7e308 + 0) / 2 − 0; the power-of-two scaling is exact, but the mean
    # may round once: a relative float64 tolerance of a few units
    assert cal.gamma_ == pytest.approx(8.5e307, rel=4 * np.finfo(np.float64).eps)
    assert cal.info_["gap_std"] == 0.0


def test_alg_whose_gamma_overflows_names_the_logits():
    z = np.zeros((4, 4))
    z[:, 1] = 1.7e308  # the other S logit of the samples labelled 0
    z[:, 3] = -1.7e308  # U: the gap is 1.7e308 / 2 + 1.7e308, beyond float64
    y = np.array([0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"logits too large for ALG.*1\.7e\+308.*overflows"):
        LogitBiasCalibrator("alg").fit(z, y, SEEN, ABSENT)


# ----------------------------------------------------------------------------- 2. array pairs


@pytest.mark.parametrize(
    "pair", [np.array([0.8, 2.0]), torch.tensor([0.8, 2.0], dtype=torch.float64)]
)
def test_a_temperature_pair_as_an_array_is_a_pair(pair):
    z, y = _data()
    cal = LogitBiasCalibrator("alg", temperature=pair).fit(z, y % 3, SEEN, ABSENT)
    assert cal.temperature_ == (0.8, 2.0)
    as_tuple = LogitBiasCalibrator("alg", temperature=(0.8, 2.0)).fit(z, y % 3, SEEN, ABSENT)
    # the same float64 computation on the same inputs: equal to the bit
    np.testing.assert_array_equal(cal.predict_proba(z), as_tuple.predict_proba(z))
    np.testing.assert_array_equal(
        shifted_probabilities(z, ABSENT, 0.5, pair), shifted_probabilities(z, ABSENT, 0.5, (0.8, 2))
    )
    report = probability_report(z, y, SEEN, ABSENT, gamma=0.5, temperature=pair)
    assert report == probability_report(z, y, SEEN, ABSENT, gamma=0.5, temperature=(0.8, 2.0))


@pytest.mark.parametrize(
    "pair", [np.array([0.8, 2.0]), torch.tensor([0.8, 2.0], dtype=torch.float64)]
)
def test_the_wrapper_takes_a_temperature_pair_as_an_array(pair):
    import calib

    model = torch.nn.Linear(3, 4, dtype=torch.float64)
    kwargs = {"gamma": 1.0, "absent_classes": [2, 3], "num_classes": 4}
    wrapped = calib.CalibratedClassifier(model, temperature=pair, **kwargs)
    assert wrapped.temperature.tolist() == [0.8, 2.0]  # a pair, never T_S alone
    as_tuple = calib.CalibratedClassifier(model, temperature=(0.8, 2.0), **kwargs)
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(wrapped.forward_proba(x), as_tuple.forward_proba(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([0.8, 2.0, 3.0]), r"one number or a pair \(T_S, T_U\), got 3 values"),
        (np.ones((2, 2)), r"one number or a pair \(T_S, T_U\), got an array of shape \(2, 2\)"),
        (np.array([0.8, -1.0]), r"temperature T_U must be finite and > 0, got -1.0"),
    ],
)
def test_a_bad_temperature_array_is_named(bad, message):
    z, _ = _data()
    with pytest.raises(ValueError, match=message):
        shifted_probabilities(z, ABSENT, 0.0, bad)


def test_a_one_element_temperature_array_stays_one_temperature():
    z, y = _data()
    cal = LogitBiasCalibrator("alg", temperature=np.array([2.0])).fit(z, y % 3, SEEN, ABSENT)
    assert cal.temperature_ == 2.0


# ----------------------------------------------------------------------------- 3. stable softmax


def test_predict_proba_of_huge_finite_logits_at_a_small_temperature():
    z, y = _data()
    cal = LogitBiasCalibrator("alg", temperature=1e-3).fit(z, y % 3, SEEN, ABSENT)
    big = z * 1e306  # finite; big / T overflows, big − max(big) does not
    p = cal.predict_proba(big)
    pred = cal.predict(big)
    # the gaps are ≥ 1e290 logits, divided by T: every other column is exp(-huge) = 0 exactly
    np.testing.assert_array_equal(p, np.eye(z.shape[1])[pred])
    pair = cal.set_params(temperature=(1e-3, 5.0)).fit(z, y % 3, SEEN, ABSENT)
    np.testing.assert_array_equal(pair.predict_proba(big), np.eye(z.shape[1])[pred])


def test_probabilities_where_z_plus_gamma_overflows():
    z = np.array([[1.7e308, 0.0, 1.6e308, 0.0], [0.0, 1.0, 2.0, 3.0]])
    # row 0: 1.6e308 + 1e308 is +inf in float64, but the prediction (column 2) is finite
    p = shifted_probabilities(z, [2, 3], gamma=1e308)
    assert np.isfinite(p).all()
    np.testing.assert_array_equal(p[0], [0.0, 0.0, 1.0, 0.0])
    # row 1 is an ordinary row: the softmax of z + γ·1_U, up to float64 rounding (a few ulps)
    s = z[1] + np.array([0, 0, 1e308, 1e308])
    np.testing.assert_allclose(p[1], np.exp(s - s.max()) / np.exp(s - s.max()).sum(), rtol=1e-15)


def test_torch_probabilities_of_huge_logits_at_a_small_temperature():
    z = torch.tensor([[1e306, -1e306, 5e305], [0.0, 2e306, 1e306]], dtype=torch.float64)
    mask = torch.tensor([False, False, True])
    p = softmax_rows_torch(z, mask, torch.tensor(1e-3, dtype=torch.float64))
    torch.testing.assert_close(p, torch.eye(3, dtype=torch.float64)[[0, 1]], rtol=0, atol=0)


# ----------------------------------------------------------------------------- 4. sample_weight


@pytest.mark.parametrize(
    "weight, message",
    [
        ([1.0, 2.0], r"sample_weight has 2 entries but logits have 40 rows"),
        (np.full(40, np.nan), r"sample_weight has 40 non-finite value\(s\), first at sample 0"),
        (np.r_[1.0, -1.0, np.ones(38)], r"sample_weight must be ≥ 0, got -1.0 at sample 1"),
        (np.zeros(40), r"sample_weight is 0 for every sample"),
        (np.ones((40, 1)), r"sample_weight must be 1-D .* shape \(40, 1\)"),
        (np.array(["a"] * 40), r"sample_weight must hold real numbers, got dtype <U1"),
    ],
)
def test_score_names_a_bad_sample_weight(weight, message):
    z, y = _data()
    cal = LogitBiasCalibrator("alg").fit(z, y % 3, SEEN, ABSENT)
    with pytest.raises(ValueError, match=message):
        cal.score(z, y, sample_weight=weight)


def test_score_with_sample_weight_is_the_weighted_accuracy():
    z, y = _data()
    cal = LogitBiasCalibrator("alg").fit(z, y % 3, SEEN, ABSENT)
    w = np.arange(40, dtype=np.float64)
    hits = cal.predict(z) == y
    # two summation orders of the same 40 terms: a float64 tolerance
    assert cal.score(z, y, sample_weight=torch.tensor(w)) == pytest.approx(
        (w * hits).sum() / w.sum(), rel=1e-14
    )


# ----------------------------------------------------------------------------- 5. registration


def test_a_selector_of_the_wrong_signature_is_refused_at_registration(registered):
    def too_few(logits, seen_classes):
        return 0.0, {}

    with pytest.raises(TypeError) as err:
        register_selector("x_too_few", data="target_unlabelled")(too_few)
    message = str(err.value)
    assert "selector 'x_too_few'" in message and "too_few(logits, seen_classes)" in message
    assert "['absent_classes', 'num_classes']" in message
    assert "x_too_few" not in SELECTORS

    def undeclared(logits, seen_classes, absent_classes, num_classes, q):
        return 0.0, {}

    with pytest.raises(TypeError, match=r"needs parameter\(s\) \['q'\] that are never passed"):
        register_selector("x_undeclared", data="target_unlabelled")(undeclared)

    # keywords by **kwargs, or a parameter declared in params=, are fine
    register_selector("x_kwargs", data="target_unlabelled")(lambda **kw: (0.0, {}))
    registered.append((SELECTORS, "x_kwargs"))
    register_selector("x_declared", data="target_unlabelled", params={"q": 0.5})(undeclared)
    registered.append((SELECTORS, "x_declared"))


@pytest.mark.parametrize(
    "returned, error, message",
    [
        (0.5, TypeError, r"selector 'x_returns' returned float 0.5; a selector must return "),
        ((0.5,), TypeError, r"selector 'x_returns' returned tuple \(0.5,\)"),
        (("0.5", {}), TypeError, r"returned γ = '0.5' \(str\)"),
        ((0.5, None), TypeError, r"returned info = None \(NoneType\)"),
        ((float("nan"), {}), ValueError, r"selector 'x_returns' returned a non-finite γ: nan"),
    ],
)
def test_a_selector_return_value_is_checked_by_name(registered, returned, error, message):
    register_selector("x_returns", data="target_unlabelled")(lambda **kw: returned)
    registered.append((SELECTORS, "x_returns"))
    z, _ = _data()
    with pytest.raises(error, match=message):
        LogitBiasCalibrator("x_returns").fit(z, seen_classes=SEEN)


def test_a_selector_may_return_numpy_gamma(registered):
    register_selector("x_numpy", data="target_unlabelled")(lambda **kw: (np.float32(0.5), {}))
    registered.append((SELECTORS, "x_numpy"))
    z, _ = _data()
    cal = LogitBiasCalibrator("x_numpy").fit(z, seen_classes=SEEN)
    assert cal.gamma_ == 0.5 and type(cal.gamma_) is float


def test_a_taken_selector_name_says_so():
    with pytest.raises(ValueError, match=r"selector 'alg' is already registered .*override=True"):
        register_selector("alg", data="finetune_train")(lambda **kw: (0.0, {}))


def test_a_method_of_the_wrong_signature_is_refused_at_registration():
    def two_args(ctx, params):
        return ctx.model

    with pytest.raises(TypeError) as err:
        register_method("x_two_args", trains="all")(two_args)
    message = str(err.value)
    assert "method 'x_two_args'" in message and "two_args(ctx, params)" in message
    assert "missing a required argument: 'params'" in message and "fn(ctx)" in message
    assert "x_two_args" not in METHODS
    with pytest.raises(TypeError, match=r"<lambda>\(\) cannot be called as fn\(ctx\)"):
        register_method("x_no_args", trains="all")(lambda: None)


def test_a_taken_method_name_says_so():
    built_in = METHODS.get("full")
    with pytest.raises(ValueError, match=r"method 'full' is already registered .*another name"):
        register_method("full", trains="all")(lambda ctx: ctx.model)
    assert METHODS.get("full") is built_in


# ----------------------------------------------------------------------------- 6. plugins


SELECTOR_PLUGIN = """
from calib.selectors import register_selector


@register_selector("x_plugin_sel", data="finetune_train")
def bad(logits, labels, seen_classes):
    return 0.0, {}
"""

METHOD_PLUGIN = """
from calib.methods import register_method


@register_method("x_plugin_method", trains="all")
def bad(ctx, extra):
    return ctx.model
"""

BUILT_IN_PLUGIN = """
from calib.methods import register_method


@register_method("full", trains="all")
def full(ctx):
    return ctx.model
"""


@pytest.mark.parametrize(
    "source, overrides, message",
    [
        (
            SELECTOR_PLUGIN,
            ["calibration.selectors=[alg,x_plugin_sel]"],
            r"\(line 5\) failed: TypeError: selector 'x_plugin_sel': bad\(logits, labels, "
            r"seen_classes\) does not take the keyword argument\(s\) \['absent_classes', "
            r"'num_classes'\]",
        ),
        (
            METHOD_PLUGIN,
            ["finetune.method=x_plugin_method"],
            r"\(line 5\) failed: TypeError: method 'x_plugin_method': bad\(ctx, extra\) cannot "
            r"be called as fn\(ctx\)",
        ),
        (
            BUILT_IN_PLUGIN,
            [],
            r"\(line 5\) failed: ValueError: fine-tuning method 'full' is already registered",
        ),
    ],
    ids=["selector-signature", "method-signature", "built-in-name"],
)
def test_a_bad_plugin_stops_the_plan_with_one_line(tmp_path, source, overrides, message):
    from calib.run import ConfigError, build_plan
    from tests.helpers_run import tiny_config

    built_in = METHODS.get("full")
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(source)
    cfg = tiny_config([f"imports=[{plugin}]", *overrides])
    try:
        with pytest.raises(ConfigError) as err:
            build_plan(cfg, run_dir=tmp_path / "run")
    finally:
        sys.modules.pop("calib_plugin_my_plugin", None)
        for registry, name in ((SELECTORS, "x_plugin_sel"), (METHODS, "x_plugin_method")):
            if name in registry:
                registry.unregister(name)
    text = str(err.value)
    assert text.startswith(f"imports: {str(plugin)!r}") and "\n" not in text
    assert err.match(message)
    assert not (tmp_path / "run").exists()  # before any work
    assert METHODS.get("full") is built_in


# ----------------------------------------------------------------------------- 7. channels


def test_a_channel_mismatch_names_the_keys_to_change(tmp_path):
    from calib.run import ConfigError, build_plan
    from tests.helpers_run import tiny_config

    cfg = tiny_config(["model.kwargs.in_chans=3"])
    with pytest.raises(ConfigError) as err:
        build_plan(cfg, run_dir=tmp_path / "run")
    text = str(err.value)
    assert "model takes 3 input channel(s) (model.kwargs.in_chans=3)" in text
    assert "digits images have 1 (dataset.channels)" in text
    assert "set model.kwargs.in_chans=1, or dataset.channels=3" in text
