"""calib.estimator.temperature: the fitted T against an independent optimiser, synthetic ground truth, invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

import calib.estimator.temperature as temperature_module
from calib import SELECTORS
from calib.estimator.temperature import T_BRACKET, fit_temperature, fit_temperature_pseudo_splits
from calib.metrics.probability import shifted_probabilities
from calib.selectors import PseudoSplit


def brute_nll(logits, labels, absent, gamma, t):
    """Mean −log softmax((z + γ·1_U)/T)_y, written out with scipy (no calib code)."""
    s = np.asarray(logits, dtype=np.float64).copy()
    if absent is not None:
        s[:, list(absent)] += gamma
    lp = log_softmax(s / t, axis=1)
    return float(-lp[np.arange(len(labels)), labels].mean())


def scipy_temperature(nll_of_t):
    """An independent 1-D optimiser: bounded Brent on log T."""
    res = minimize_scalar(
        lambda u: nll_of_t(math.exp(u)),
        bounds=(math.log(T_BRACKET[0]), math.log(T_BRACKET[1])),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return math.exp(res.x)


def sample(seed, t_true, n=20000, c=8, gamma=0.0, absent=()):
    """Logits and labels drawn from softmax((z + γ·1_U)/T*)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 3.0
    s = z.copy()
    s[:, list(absent)] += gamma
    p = np.exp(log_softmax(s / t_true, axis=1))
    labels = (rng.random(n)[:, None] > p.cumsum(axis=1)).sum(axis=1).clip(max=c - 1)
    return z, labels


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_recovers_the_temperature_of_the_data(t_true):
    z, y = sample(0, t_true)
    assert fit_temperature(z, y) == pytest.approx(t_true, rel=0.04)


def test_recovers_the_temperature_after_gamma():
    z, y = sample(1, 1.8, gamma=3.0, absent=(5, 6, 7))
    t = fit_temperature(z, y, [5, 6, 7], gamma=3.0)
    assert t == pytest.approx(1.8, rel=0.04)
    # ignoring γ fits another (worse) model: the NLL is higher at its own optimum
    t0 = fit_temperature(z, y)
    assert brute_nll(z, y, [5, 6, 7], 3.0, t) < brute_nll(z, y, None, 0.0, t0)


@pytest.mark.parametrize("seed,gamma", [(2, 0.0), (3, 2.0), (4, -1.5)])
def test_fitted_t_is_the_minimum(seed, gamma):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(500, 6)) * 4
    y = rng.integers(0, 6, size=500)
    y[:300] = z[:300].argmax(axis=1)  # a classifier that is right more often than chance
    absent = [3, 4, 5]
    t = fit_temperature(z, y, absent, gamma)
    nll = brute_nll(z, y, absent, gamma, t)
    for f in (1 - 1e-3, 1 + 1e-3):
        assert nll <= brute_nll(z, y, absent, gamma, t * f)
    assert t == pytest.approx(
        scipy_temperature(lambda tt: brute_nll(z, y, absent, gamma, tt)), rel=1e-6
    )


def test_per_group_fits_each_predicted_group_on_its_own():
    z, y = sample(5, 1.5, n=4000, gamma=2.0, absent=(5, 6, 7))
    absent = [5, 6, 7]
    t_s, t_u = fit_temperature(z, y, absent, 2.0, per_group=True)
    shifted = z.copy()
    shifted[:, absent] += 2.0
    in_u = np.isin(shifted.argmax(axis=1), absent)
    for t, rows in ((t_s, ~in_u), (t_u, in_u)):
        ref = scipy_temperature(lambda tt, r=rows: brute_nll(z[r], y[r], absent, 2.0, tt))
        assert t == pytest.approx(ref, rel=1e-6)
    # the pair never moves a prediction
    p = shifted_probabilities(z, absent, 2.0, (t_s, t_u))
    np.testing.assert_array_equal(p.argmax(axis=1), shifted.argmax(axis=1))


def test_seen_classes_define_the_absent_columns():
    z, y = sample(6, 1.2, n=2000, gamma=1.0, absent=(4, 5, 6, 7))
    a = fit_temperature(z, y, gamma=1.0, seen_classes=[0, 1, 2, 3])
    b = fit_temperature(z, y, [4, 5, 6, 7], gamma=1.0)
    assert a == b


@pytest.mark.parametrize("t", [0.4, 3.0])
def test_argmax_unchanged_by_the_temperature(t):
    z, _ = sample(7, 1.0, n=300)
    base = shifted_probabilities(z, [5, 6, 7], 1.5).argmax(axis=1)
    np.testing.assert_array_equal(shifted_probabilities(z, [5, 6, 7], 1.5, t).argmax(axis=1), base)


def test_invariances():
    z, y = sample(8, 2.0, n=3000)
    t = fit_temperature(z, y, [6, 7], 0.5)
    shift = np.random.default_rng(0).normal(size=(3000, 1)) * 100
    assert fit_temperature(z + shift, y, [6, 7], 0.5) == pytest.approx(t, rel=1e-9)
    # scaling logits and γ by c scales T by c
    assert fit_temperature(3 * z, y, [6, 7], 1.5) == pytest.approx(3 * t, rel=1e-9)


def test_torch_input(device):
    z, y = sample(9, 1.3, n=1000)
    t_np = fit_temperature(z.astype(np.float32), y, [6, 7], 1.0)
    t_t = fit_temperature(
        torch.from_numpy(z).float().to(device), torch.from_numpy(y).to(device), [6, 7], 1.0
    )
    assert t_t == t_np


def test_edge_cases_clip_with_a_warning():
    # every sample right by a wide margin: NLL falls as T -> 0
    z = np.eye(4) * 10
    with pytest.warns(RuntimeWarning, match="T shrinks"):
        assert fit_temperature(z, np.arange(4)) == T_BRACKET[0]
    # every label the worst class: NLL falls as T -> infinity
    with pytest.warns(RuntimeWarning, match="T grows"):
        assert fit_temperature(z, (np.arange(4) + 1) % 4) == T_BRACKET[1]
    # constant rows: the NLL does not depend on T
    with pytest.warns(RuntimeWarning, match="does not depend on T"):
        assert fit_temperature(np.ones((5, 3)), [0, 1, 2, 0, 1]) == 1.0


def test_per_group_without_a_predicted_absent_row_falls_back():
    z, y = sample(10, 1.0, n=500)
    with pytest.warns(RuntimeWarning, match="T_U cannot be fitted"):
        t_s, t_u = fit_temperature(z, y, [7], gamma=-30.0, per_group=True)
    assert t_s == t_u == pytest.approx(fit_temperature(z, y, [7], gamma=-30.0))


def test_pseudo_splits_pool_each_split_with_its_own_absent_classes():
    rng = np.random.default_rng(11)
    splits = []
    for n, absent in ((300, [2, 3, 6, 7]), (120, [0, 4, 6, 7])):
        z = rng.normal(size=(n, 8)) * 3
        y = rng.choice([c for c in range(6)], size=n)
        y[: n // 2] = np.where(
            z[: n // 2, :6].argmax(axis=1) < 6, z[: n // 2, :6].argmax(axis=1), 0
        )
        seen = sorted(set(range(8)) - set(absent))
        splits.append(PseudoSplit(logits=z, labels=y, seen_classes=seen, absent_classes=absent))
    gamma = 1.25
    t = fit_temperature_pseudo_splits(splits, gamma)

    def mean_of_means(tt):
        return np.mean([brute_nll(s.logits, s.labels, s.absent_classes, gamma, tt) for s in splits])

    assert t == pytest.approx(scipy_temperature(mean_of_means), rel=1e-6)
    one = fit_temperature_pseudo_splits(splits[:1], gamma)
    assert one == pytest.approx(
        fit_temperature(splits[0].logits, splits[0].labels, splits[0].absent_classes, gamma),
        rel=1e-12,
    )
    t_s, t_u = fit_temperature_pseudo_splits(splits, gamma, per_group=True)
    assert t_s > 0 and t_u > 0 and (t_s, t_u) != (t, t)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda z, y: fit_temperature(z, y, gamma=1.0), ValueError, "need the absent columns"),
        (lambda z, y: fit_temperature(z, y, per_group=True), ValueError, "need the absent"),
        (lambda z, y: fit_temperature(z, y, [1], gamma=float("nan")), ValueError, "gamma .* nan"),
        (lambda z, y: fit_temperature(z, y, [1], per_group="yes"), TypeError, "per_group"),
        (lambda z, y: fit_temperature(z, y[:3], [1]), ValueError, "labels has 3 entries"),
        (lambda z, y: fit_temperature(z, y, [1], seen_classes=[1]), ValueError, "overlap"),
        (lambda z, y: fit_temperature_pseudo_splits([], 1.0), ValueError, "pseudo_splits is empty"),
        (lambda z, y: fit_temperature_pseudo_splits([z], 1.0), TypeError, r"pseudo_splits\[0\]"),
        (lambda z, y: fit_temperature_pseudo_splits("abc", 1.0), TypeError, "sequence"),
        (
            lambda z, y: fit_temperature_pseudo_splits([PseudoSplit(z, y, [0], [0])], 1.0),
            ValueError,
            r"pseudo_splits\[0\]: seen_classes and absent_classes overlap",
        ),
    ],
)
def test_bad_input(call, exc, match):
    z, y = sample(12, 1.0, n=20, c=3)
    with pytest.raises(exc, match=match):
        call(z, y)


def test_the_data_table_covers_every_selector():
    doc = temperature_module.__doc__
    for name in SELECTORS.names() if hasattr(SELECTORS, "names") else SELECTORS:
        assert f"``{name}``" in doc, name
