"""SeenAbsentState: streamed batches against the whole-matrix metrics (bit for bit) and brute force.

The state's per-sample values come from the same scan as :func:`calib.seen_absent_curve` and
:func:`calib.accuracy_report`, so their curves, areas and top-1 reports must be *equal*, not
close; that equality is the claim under test. Independent checks: tests/brute.py (plain Python
over each sample's shifted logits) and, for weights, repeating a sample w times.
"""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.brute as brute
from calib.metrics import accuracy_report, seen_absent_curve
from calib.metrics import streaming as streaming_module
from calib.metrics.streaming import SeenAbsentState
from calib.selectors import select_alg

SETTINGS = settings(deadline=None, max_examples=60)
CURVE_KEYS = ("gamma", "acc_seen", "acc_absent", "acc_all")


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def streamed(z, y, seen, absent, cuts, weights=None, **kwargs) -> SeenAbsentState:
    """A state fed ``z`` in the batches that ``cuts`` (sorted row positions) delimit."""
    state = SeenAbsentState(z.shape[1], seen, absent, **kwargs)
    edges = [0, *sorted(c for c in cuts if 0 < c < len(z)), len(z)]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b > a:
            w = None if weights is None else weights[a:b]
            state.update(z[a:b], None if y is None else y[a:b], sample_weight=w)
    return state


def assert_same_curve(a, b):
    for key in CURVE_KEYS:
        np.testing.assert_array_equal(np.asarray(getattr(a, key)), np.asarray(getattr(b, key)))
    assert (a.n_seen, a.n_absent) == (b.n_seen, b.n_absent)
    assert a.ausuc == b.ausuc or (math.isnan(a.ausuc) and math.isnan(b.ausuc))


def assert_same_report(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), key


cuts = st.lists(st.integers(0, 10), max_size=4)


# ---------------------------------------------------------------------------- bit for bit


@SETTINGS
@given(
    problem=brute.problems(),
    cuts=cuts,
    noise=st.lists(st.floats(-1, 1, width=32), min_size=70, max_size=70),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_curve_and_top1_reports_equal_the_whole_matrix_bit_for_bit(problem, cuts, noise, dtype):
    n, c = problem.logits.shape
    z = (problem.logits + np.resize(np.array(noise), (n, c))).astype(dtype)
    y, s, u = problem.labels, problem.seen, problem.absent
    state = streamed(z, y, s, u, cuts)
    whole = quiet(seen_absent_curve, z, y, s, u)
    assert_same_curve(quiet(state.curve), whole)
    assert len(state) == n and state.gaps.shape == (n,)
    probes = list(whole.gamma) + [float(whole.gamma[0]) - 1.0, -math.inf]
    probes += [(a + b) / 2 for a, b in zip(whole.gamma[:-2], whole.gamma[1:-1], strict=True)]
    for gamma in probes:
        assert_same_report(
            quiet(state.report, float(gamma), topk=()),
            quiet(accuracy_report, z, y, s, u, gamma=float(gamma), topk=(1,)),
        )


@SETTINGS
@given(problem=brute.problems(), cuts=cuts, gammas=st.lists(st.integers(-4, 4), min_size=1))
def test_topk_at_the_declared_gammas_equals_the_whole_matrix_and_brute_force(problem, cuts, gammas):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    state = quiet(streamed, z, y, s, u, cuts, topk=(1, 2, 3), gammas=[g / 2 for g in gammas])
    for gamma in state.gammas:
        got = quiet(state.report, gamma)
        assert_same_report(got, quiet(accuracy_report, z, y, s, u, gamma=gamma, topk=(1, 2, 3)))
        for k in (1, 2, 3):
            want = brute.accuracies(z, y, s, u, gamma, k=k)
            suffix = "" if k == 1 else f"_top{k}"
            for key, value in want.items():
                assert math.isclose(got[key + suffix], value, abs_tol=1e-12) or (
                    math.isnan(value) and math.isnan(got[key + suffix])
                ), (key, k, gamma)


@SETTINGS
@given(problem=brute.problems(), cuts=cuts)
def test_ausuc_is_brute_forces_rank_statistic(problem, cuts):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    area = quiet(streamed(z, y, s, u, cuts).ausuc)
    if not (np.isin(y, s).any() and np.isin(y, u).any()):
        assert math.isnan(area)
    else:
        assert math.isclose(area, brute.ausuc_rank_statistic(z, y, s, u), abs_tol=1e-12)


def test_hand_worked_curve_from_two_batches():
    # the hand-worked example of tests/metrics/test_curve.py, in batches of 3 and 2
    z = np.array([[4, 1, 2, 0], [0, 3, 2, 2], [1, 0, 3, 0], [2, 0, 0, 1], [0, 1, 0, 1]], float)
    y = np.array([0, 1, 2, 3, 2])
    state = SeenAbsentState(4, [0, 1]).update(z[:3], y[:3]).update(z[3:], y[3:])
    curve = state.curve()
    np.testing.assert_array_equal(curve.gamma, [-2, 1, 2, math.inf])
    np.testing.assert_allclose(curve.acc_seen, [1, 1, 0.5, 0])
    np.testing.assert_allclose(curve.acc_absent, [0, 1 / 3, 2 / 3, 2 / 3])
    assert curve.ausuc == pytest.approx(7 / 12)


# ---------------------------------------------------------------------------- weights


def brute_weighted(z, y, s, u, gamma, w):
    """Weighted top-1 Acc Y/Y, S/Y, U/Y by brute force (plain loops)."""
    pred = brute.predict(z, u, gamma)
    out = {}
    for key, group in (("acc_all", None), ("acc_seen", s), ("acc_absent", u)):
        rows = [i for i in range(len(y)) if group is None or int(y[i]) in group]
        total = sum(w[i] for i in rows)
        hits = sum(w[i] for i in rows if pred[i] == int(y[i]))
        out[key] = hits / total if total > 0 else float("nan")
    return out


@SETTINGS
@given(
    problem=brute.problems(),
    cuts=cuts,
    weights=st.lists(st.integers(0, 3), min_size=10, max_size=10),
)
def test_weighted_curve_and_report_match_brute_force(problem, cuts, weights):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    w = np.array(weights[: len(y)], dtype=float)
    if not w.any():
        w[0] = 1.0
    state = streamed(z, y, s, u, cuts, weights=w)
    curve = quiet(state.curve)
    g = curve.gamma
    for k in range(len(g)):
        gamma = float(g[k]) if math.isfinite(g[k]) else max(brute.gaps(z, u)) + 1.0
        want = brute_weighted(z, y, s, u, gamma, w)
        report = quiet(state.report, gamma, topk=())
        for key, value in want.items():
            for got in (float(getattr(curve, key)[k]), report[key]):
                assert (math.isnan(value) and math.isnan(got)) or math.isclose(
                    got, value, abs_tol=1e-12
                ), (key, k)


@SETTINGS
@given(
    problem=brute.problems(),
    cuts=cuts,
    weights=st.lists(st.floats(0, 3), min_size=10, max_size=10),
    average=st.sampled_from(["micro", "macro"]),
)
def test_weighted_and_macro_equal_the_whole_matrix_bit_for_bit(problem, cuts, weights, average):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    w = np.array(weights[: len(y)])
    if not w.any():
        w[0] = 1.0
    state = streamed(z, y, s, u, cuts, weights=w)
    whole = quiet(seen_absent_curve, z, y, s, u, sample_weight=w, average=average)
    assert_same_curve(quiet(state.curve, average), whole)
    for gamma in list(whole.gamma) + [-math.inf]:
        assert_same_report(
            quiet(state.report, float(gamma), topk=(), average=average),
            quiet(
                accuracy_report,
                z,
                y,
                s,
                u,
                gamma=float(gamma),
                topk=(1,),
                sample_weight=w,
                average=average,
            ),
        )
    if average == "macro":  # without weights too: each class weighs 1
        plain = streamed(z, y, s, u, cuts)
        assert_same_curve(
            quiet(plain.curve, "macro"), quiet(seen_absent_curve, z, y, s, u, average="macro")
        )


@SETTINGS
@given(
    problem=brute.problems(),
    weights=st.lists(st.integers(1, 3), min_size=10, max_size=10),
)
def test_integer_weights_equal_repeated_samples(problem, weights):
    z, y, s, u = problem.logits, problem.labels, problem.seen, problem.absent
    w = np.array(weights[: len(y)])
    weighted = quiet(streamed(z, y, s, u, [], weights=w.astype(float)).curve)
    repeated = quiet(streamed(np.repeat(z, w, axis=0), np.repeat(y, w), s, u, []).curve)
    for key in CURVE_KEYS:
        np.testing.assert_allclose(getattr(weighted, key), getattr(repeated, key), atol=1e-12)
    assert (math.isnan(weighted.ausuc) and math.isnan(repeated.ausuc)) or math.isclose(
        weighted.ausuc, repeated.ausuc, abs_tol=1e-12
    )


def test_unit_weights_give_the_unweighted_numbers_and_a_zero_weight_batch_is_allowed():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 12)).astype(np.float32)
    y = rng.integers(0, 12, 300)
    plain = streamed(z, y, [0, 1, 2, 3], None, [100, 200])
    ones = streamed(z, y, [0, 1, 2, 3], None, [100, 200], weights=np.ones(300))
    assert_same_curve(plain.curve(), ones.curve())
    assert_same_report(plain.report(0.3), ones.report(0.3))
    # a batch whose weights are all 0 (padding) counts nothing, like leaving it out
    padded = streamed(z, y, [0, 1, 2, 3], None, [200], weights=np.r_[np.ones(200), np.zeros(100)])
    first = streamed(z[:200], y[:200], [0, 1, 2, 3], None, [])
    np.testing.assert_allclose(padded.curve().acc_all[-1], first.curve().acc_all[-1])
    assert padded.report(0.3)["acc_seen"] == pytest.approx(first.report(0.3)["acc_seen"])


# ---------------------------------------------------------------------------- ALG terms


def test_alg_terms_are_brute_forces_and_an_alg_only_state_reads_each_batch_once():
    rng = np.random.default_rng(2)
    n, c, seen = 700, 40, np.arange(15)
    z = rng.normal(size=(n, c)).astype(np.float32)
    y = rng.integers(0, 15, n)
    state = streamed(z, y, seen, None, [100, 333, 600], alg=True)
    z64 = z.astype(np.float64)
    terms = [
        (sum(z64[i, seen]) - z64[i, y[i]]) / (seen.size - 1) - sum(z64[i, 15:]) / (c - 15)
        for i in range(n)
    ]
    np.testing.assert_allclose(state.columns()["alg"], terms, rtol=1e-9, atol=1e-12)
    assert not state.columns()["alg_flag"].any()
    light = streamed(z, y, seen, None, [100, 333, 600], alg=True, keep_gaps=False)
    assert sorted(light.columns()) == ["alg", "alg_flag", "label"]
    np.testing.assert_array_equal(light.columns()["alg"], state.columns()["alg"])


# ---------------------------------------------------------------------------- merge, pickle


def test_merge_and_pickle_give_the_state_of_all_batches():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(500, 30))
    y = rng.integers(0, 30, 500)
    w = rng.uniform(0, 1, 500)
    kw = dict(topk=(1, 5), gammas=(0.0, 1.0), alg=False)
    whole = streamed(z, y, range(10), None, [250], weights=w, **kw)
    a = streamed(z[:170], y[:170], range(10), None, [50], weights=w[:170], **kw)
    b = streamed(z[170:], y[170:], range(10), None, [], weights=w[170:], **kw)
    merged = a.merge(b)
    for key, value in whole.columns().items():
        np.testing.assert_array_equal(merged.columns()[key], value)
    assert_same_report(merged.report(1.0), whole.report(1.0))
    back = pickle.loads(pickle.dumps(merged))
    assert_same_curve(back.curve(), whole.curve())
    assert back.merge(SeenAbsentState(30, range(10), **kw)).n_samples == 500  # empty: no-op
    assert len(whole.reset()) == 0


def test_memory_per_sample_does_not_depend_on_the_number_of_classes():
    rng = np.random.default_rng(6)
    sizes = []
    for c in (10, 2000):
        z = rng.normal(size=(400, c)).astype(np.float32)
        state = streamed(z, rng.integers(0, c, 400), [0, 1], None, [200], alg=True)
        sizes.append(sum(a.nbytes for a in state.columns().values()))
    assert sizes[0] == sizes[1] <= 400 * 40  # gap, label, 3 flags, the ALG term and its flag


# ---------------------------------------------------------------------------- tensors, devices


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_tensor_batches_of_any_float_dtype_equal_the_whole_tensor(dtype):
    g = torch.Generator().manual_seed(7)
    z = (torch.randn(600, 25, generator=g) * 3).to(dtype)
    y = torch.randint(0, 25, (600,), generator=g)
    state = SeenAbsentState(25, range(9), topk=(1, 3), gammas=(0.0, 0.5))
    for i in range(0, 600, 128):
        state.update(z[i : i + 128], y[i : i + 128])
    assert_same_curve(state.curve(), seen_absent_curve(z, y, range(9)))
    assert_same_report(state.report(0.5), accuracy_report(z, y, range(9), gamma=0.5, topk=(1, 3)))


def test_the_device_path_equals_the_host_path(monkeypatch):
    # The reduction where the logits are (torch scan, torch ALG sums), exercised on the CPU:
    # check_logits is made to keep the tensor as a GPU tensor would be kept.
    g = torch.Generator().manual_seed(8)
    z = torch.randn(500, 30, generator=g)
    y = torch.randint(0, 12, (500,), generator=g)
    kw = dict(topk=(1, 2), gammas=(-0.5, 0.25), alg=True)
    host = SeenAbsentState(30, range(12), **kw)
    for i in range(0, 500, 100):
        host.update(z[i : i + 100], y[i : i + 100])
    real = streaming_module.check_logits
    monkeypatch.setattr(
        streaming_module, "check_logits", lambda t, **k: t if torch.is_tensor(t) else real(t, **k)
    )
    device = SeenAbsentState(30, range(12), **kw)
    for i in range(0, 500, 100):
        device.update(z[i : i + 100], y[i : i + 100])
    for key in ("gap", "hit_other", "hit_absent", "hit_seen", "label", "rank", "rank_seen"):
        np.testing.assert_array_equal(device.columns()[key], host.columns()[key])
    np.testing.assert_allclose(device.columns()["alg"], host.columns()["alg"], rtol=1e-12)
    assert select_alg(device, None, range(12))[0] == pytest.approx(
        select_alg(host, None, range(12))[0], rel=1e-12
    )
    # the ALG terms alone: the values are checked in their own pass on the device
    light = SeenAbsentState(30, range(12), alg=True, keep_gaps=False).update(z, y)
    np.testing.assert_allclose(light.columns()["alg"], host.columns()["alg"], rtol=1e-12)
    with pytest.raises(ValueError, match=r"non-finite value\(s\), NaN or \+inf"):
        light.update(z.masked_fill(z > 2.5, float("nan")), y)
    with pytest.raises(ValueError, match="has -inf in every column"):
        light.update(torch.full((2, 30), float("-inf")), y[:2])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_the_host_state():
    g = torch.Generator().manual_seed(9)
    z = torch.randn(2000, 300, generator=g)
    y = torch.randint(0, 100, (2000,), generator=g)
    kw = dict(topk=(1, 5), gammas=(0.0, 1.0), alg=True)
    host = SeenAbsentState(300, range(100), **kw)
    cuda = SeenAbsentState(300, range(100), **kw)
    for i in range(0, 2000, 512):
        host.update(z[i : i + 512], y[i : i + 512])
        cuda.update(z[i : i + 512].cuda(), y[i : i + 512].cuda())
    assert_same_curve(cuda.curve(), host.curve())
    assert_same_report(cuda.report(1.0), host.report(1.0))
    assert select_alg(cuda, None, range(100))[0] == pytest.approx(
        select_alg(host, None, range(100))[0], rel=1e-12
    )
