"""calib.metrics.probability against plain per-sample / per-bin loops, scikit-learn, torchmetrics, netcal."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss

from calib import accuracy_report
from calib.metrics.probability import probability_report, reliability_diagram, shifted_probabilities
from calib.validation import check_logits
from tests.brute import predict as brute_predict

# ----------------------------------------------------------------------------- brute force


def brute_probabilities(logits, absent, gamma, temperature):
    """Per-sample loop: shifted scores, one temperature per row (by predicted group), softmax."""
    absent = set(int(c) for c in absent)
    t_seen, t_absent = temperature if isinstance(temperature, tuple) else (temperature, temperature)
    preds = brute_predict(logits, absent, gamma)
    rows = []
    for row, pred in zip(np.asarray(logits, dtype=np.float64), preds, strict=True):
        t = t_absent if pred in absent else t_seen
        s = [(float(v) + (gamma if c in absent else 0.0)) / t for c, v in enumerate(row)]
        top = max(s)
        lse = top + math.log(sum(math.exp(v - top) for v in s))
        rows.append([v - lse for v in s])  # log-probabilities
    return rows, preds


def brute_bins(conf, correct, n_bins, adaptive):
    """Bins by a loop over samples and bins: bin m holds lo < c <= hi."""
    n = len(conf)
    if adaptive and n:
        ordered = sorted(conf)
        uppers = [ordered[math.ceil(Fraction(m * n, n_bins)) - 1] for m in range(1, n_bins)]
        edges = [0.0, *uppers, 1.0]
    else:
        edges = [m / n_bins for m in range(n_bins + 1)]
    members = [[] for _ in range(n_bins)]
    for i, c in enumerate(conf):
        for m in range(n_bins):
            lo = -math.inf if m == 0 else edges[m]
            if lo < c <= edges[m + 1] or (m == n_bins - 1 and c > edges[m]):
                members[m].append(i)
                break
    return edges, members


def brute_ece(conf, correct, n_bins, adaptive):
    _, members = brute_bins(conf, correct, n_bins, adaptive)
    total = 0.0
    for idx in members:
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            mean_conf = sum(conf[i] for i in idx) / len(idx)
            total += len(idx) / len(conf) * abs(acc - mean_conf)
    return total


def brute_report(logits, labels, seen, absent, gamma, temperature, n_bins):
    log_p, preds = brute_probabilities(logits, absent, gamma, temperature)
    out = {}
    groups = {
        "": range(len(labels)),
        "_seen": [i for i, y in enumerate(labels) if y in set(seen)],
        "_absent": [i for i, y in enumerate(labels) if y in set(absent)],
    }
    for suffix, rows in groups.items():
        conf = [math.exp(log_p[i][preds[i]]) for i in rows]
        correct = [preds[i] == labels[i] for i in rows]
        nll = [-log_p[i][labels[i]] for i in rows]
        brier = [
            sum(
                (math.exp(lp) - (1.0 if c == labels[i] else 0.0)) ** 2
                for c, lp in enumerate(log_p[i])
            )
            for i in rows
        ]
        out["ece" + suffix] = brute_ece(conf, correct, n_bins, adaptive=False)
        out["ece_adaptive" + suffix] = brute_ece(conf, correct, n_bins, adaptive=True)
        out["nll" + suffix] = sum(nll) / len(rows)
        out["brier" + suffix] = sum(brier) / len(rows)
        out["confidence" + suffix] = sum(conf) / len(rows)
    return out


def problem(seed, n=120, c=7, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * scale
    labels = rng.integers(0, c, size=n)
    return logits, labels


# ----------------------------------------------------------------------------- exact checks

CASES = [
    # seed, seen, absent (None = complement), gamma, temperature, n_bins
    (0, [0, 1, 2], None, 0.0, 1.0, 15),
    (1, [0, 1, 2, 3], None, 2.5, 0.7, 10),
    (2, [4, 5, 6], [0, 1], -1.25, 3.0, 7),  # columns 2, 3 in neither S nor U
    (3, [1, 3, 5], None, 4.0, (0.8, 2.2), 15),  # per-group temperature
    (4, [0, 2], [1, 3, 4, 5, 6], 1.0, 1.0, 1),
]


@pytest.mark.parametrize("seed,seen,absent,gamma,temperature,n_bins", CASES)
def test_report_matches_brute_force(seed, seen, absent, gamma, temperature, n_bins):
    logits, labels = problem(seed)
    u = absent if absent is not None else sorted(set(range(7)) - set(seen))
    got = probability_report(logits, labels, seen, absent, gamma, temperature, n_bins)
    want = brute_report(logits, labels.tolist(), seen, u, gamma, temperature, n_bins)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12, rel=1e-12), key
    assert got["n_samples"] == 120
    assert got["n_seen"] == int(np.isin(labels, seen).sum())
    assert got["n_absent"] == int(np.isin(labels, u).sum())


@pytest.mark.parametrize("seed,seen,absent,gamma,temperature,n_bins", CASES)
def test_probabilities_match_brute_force(seed, seen, absent, gamma, temperature, n_bins):
    logits, _ = problem(seed)
    u = absent if absent is not None else sorted(set(range(7)) - set(seen))
    got = shifted_probabilities(logits, u, gamma, temperature)
    log_p, preds = brute_probabilities(logits, u, gamma, temperature)
    assert got.dtype == np.float64 and got.shape == logits.shape
    np.testing.assert_allclose(got, np.exp(np.array(log_p)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # the temperature never moves the argmax: it is the decision rule's prediction at γ
    np.testing.assert_array_equal(got.argmax(axis=1), preds)


@pytest.mark.parametrize("seed,seen,absent,gamma,temperature,n_bins", CASES)
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("group", ["all", "seen", "absent"])
def test_diagram_matches_report_and_brute_bins(
    seed, seen, absent, gamma, temperature, n_bins, adaptive, group
):
    logits, labels = problem(seed)
    u = absent if absent is not None else sorted(set(range(7)) - set(seen))
    d = reliability_diagram(
        logits, labels, seen, absent, gamma, temperature, n_bins, adaptive, group
    )
    report = probability_report(logits, labels, seen, absent, gamma, temperature, n_bins)
    key = ("ece_adaptive" if adaptive else "ece") + ("" if group == "all" else f"_{group}")
    assert d.ece == pytest.approx(report[key], abs=1e-12)
    log_p, preds = brute_probabilities(logits, u, gamma, temperature)
    in_group = {"all": lambda y: True, "seen": lambda y: y in seen, "absent": lambda y: y in u}
    rows = [i for i, y in enumerate(labels.tolist()) if in_group[group](y)]
    conf = [math.exp(log_p[i][preds[i]]) for i in rows]
    correct = [preds[i] == labels[i] for i in rows]
    edges, members = brute_bins(conf, correct, n_bins, adaptive)
    np.testing.assert_allclose(d.edges, edges, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(d.count, [len(m) for m in members])
    for m, idx in enumerate(members):
        if idx:
            assert d.accuracy[m] == pytest.approx(
                sum(correct[i] for i in idx) / len(idx), abs=1e-12
            )
            assert d.confidence[m] == pytest.approx(sum(conf[i] for i in idx) / len(idx), abs=1e-12)
        else:
            assert math.isnan(d.accuracy[m]) and math.isnan(d.confidence[m])


@pytest.mark.parametrize("temperature", [1.0, 0.3, (0.5, 4.0)])
def test_diagram_hits_equal_accuracy_report(temperature):
    logits, labels = problem(5)
    seen = [0, 1, 2]
    acc = accuracy_report(logits, labels, seen, gamma=1.5, topk=(1,))
    for group, key in (("all", "acc_all"), ("seen", "acc_seen"), ("absent", "acc_absent")):
        d = reliability_diagram(
            logits, labels, seen, gamma=1.5, temperature=temperature, group=group
        )
        full = d.count > 0
        hits = float((d.count[full] * d.accuracy[full]).sum())
        assert hits / d.n_samples == pytest.approx(acc[key], abs=1e-12)


def test_plain_softmax_at_gamma_zero_and_unit_temperature():
    logits, _ = problem(6)
    want = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    np.testing.assert_allclose(shifted_probabilities(logits, [5, 6]), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        shifted_probabilities(logits, [5, 6], gamma=2.0),
        torch.softmax(torch.from_numpy(logits + np.r_[np.zeros(5), 2.0, 2.0]), dim=1).numpy(),
        rtol=1e-12,
        atol=1e-15,
    )


def test_row_constant_changes_nothing():
    logits, labels = problem(7)
    shift = np.random.default_rng(0).normal(size=(120, 1)) * 50
    for t in (1.0, 2.0, (0.5, 3.0)):
        np.testing.assert_allclose(
            shifted_probabilities(logits + shift, [4, 5, 6], 1.0, t),
            shifted_probabilities(logits, [4, 5, 6], 1.0, t),
            rtol=1e-9,
            atol=1e-13,
        )


def test_extreme_logits_are_stable():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 790.0]])
    p = shifted_probabilities(logits, [2], gamma=5.0, temperature=0.1)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    r = probability_report(logits, [1, 2], [0, 1], gamma=5.0, temperature=0.1)
    assert math.isfinite(r["nll"]) and r["nll"] > 100  # −log p_y for a confidently wrong row


def test_torch_input_matches_numpy(device):
    logits, labels = problem(8)
    t_logits = torch.from_numpy(logits).float().to(device)
    p = shifted_probabilities(t_logits, [4, 5, 6], 1.0, 2.0)
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float64 and p.device == t_logits.device
    want = shifted_probabilities(logits.astype(np.float32), [4, 5, 6], 1.0, 2.0)
    np.testing.assert_array_equal(p.cpu().numpy(), want)
    r_t = probability_report(t_logits, torch.from_numpy(labels).to(device), [0, 1, 2, 3], gamma=1.0)
    r_n = probability_report(logits.astype(np.float32), labels, [0, 1, 2, 3], gamma=1.0)
    assert r_t == r_n


# ----------------------------------------------------------------------------- edges and ties


def test_confidence_on_an_edge_goes_to_the_lower_bin():
    # two equal logits: confidence exactly 0.5 = the edge between 2 bins; four: 0.25
    d = reliability_diagram(np.zeros((3, 2)), [0, 1, 0], [0], n_bins=2)
    np.testing.assert_array_equal(d.count, [3, 0])
    d = reliability_diagram(np.zeros((2, 4)), [0, 1], [0, 1], n_bins=8)
    np.testing.assert_array_equal(d.count, [0, 2, 0, 0, 0, 0, 0, 0])  # 0.25 ∈ (1/8, 2/8]
    assert d.confidence[1] == 0.25 and d.accuracy[1] == 0.5


def test_adaptive_bins_keep_ties_together_and_handle_few_samples():
    # three samples, five bins: upper edges c(1), c(2), c(2), c(3) -> counts 1, 1, 0, 1, 0
    logits = np.log(np.array([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1]]))
    d = reliability_diagram(logits, [0, 0, 1], [0], n_bins=5, adaptive=True)
    np.testing.assert_array_equal(d.count, [1, 1, 0, 1, 0])
    # identical confidences all share the first bin
    d = reliability_diagram(np.zeros((6, 3)), [0, 1, 2, 0, 1, 2], [0], n_bins=4, adaptive=True)
    np.testing.assert_array_equal(d.count, [6, 0, 0, 0])
    assert d.ece == pytest.approx(0.0, abs=1e-15)  # confidence 1/3, accuracy 2/6


def test_adaptive_bin_sizes_differ_by_at_most_one():
    logits, labels = problem(9, n=103)
    d = reliability_diagram(logits, labels, [0, 1, 2], n_bins=15, adaptive=True)
    assert d.count.sum() == 103 and d.count.max() - d.count.min() <= 1


# ----------------------------------------------------------------------------- groups and errors


def test_empty_group_is_nan_with_warning():
    logits, labels = problem(10)
    labels = labels % 3  # every label in S = {0, 1, 2}
    with pytest.warns(RuntimeWarning, match="absent"):
        r = probability_report(logits, labels, [0, 1, 2])
    for key in ("ece", "ece_adaptive", "nll", "brier", "confidence"):
        assert math.isnan(r[key + "_absent"]) and not math.isnan(r[key + "_seen"])
    assert r["n_absent"] == 0
    with pytest.warns(RuntimeWarning, match="absent"):
        d = reliability_diagram(logits, labels, [0, 1, 2], group="absent")
    assert d.n_samples == 0 and math.isnan(d.ece) and np.isnan(d.accuracy).all()


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"n_bins": 0}, ValueError, "n_bins must be an int >= 1, got 0"),
        ({"n_bins": 2.5}, ValueError, "n_bins .* got 2.5"),
        ({"n_bins": True}, ValueError, "n_bins .* got True"),
        ({"temperature": 0.0}, ValueError, "temperature must be finite and > 0, got 0.0"),
        ({"temperature": -1}, ValueError, "temperature .* got -1"),
        ({"temperature": float("inf")}, ValueError, "temperature .* got inf"),
        ({"temperature": float("nan")}, ValueError, "temperature .* got nan"),
        ({"temperature": (1.0, 0.0)}, ValueError, "temperature T_U .* got 0.0"),
        ({"temperature": (1.0, 2.0, 3.0)}, ValueError, "pair .* 3 values"),
        ({"temperature": "hot"}, TypeError, "temperature must be a real number, got 'hot'"),
        ({"gamma": float("nan")}, ValueError, "gamma must be finite, got nan"),
        ({"gamma": float("inf")}, ValueError, "gamma must be finite, got inf"),
        ({"gamma": "big"}, TypeError, "gamma must be a real number, got 'big'"),
    ],
)
def test_bad_parameters_name_themselves(kwargs, exc, match):
    logits, labels = problem(11)
    with pytest.raises(exc, match=match):
        probability_report(logits, labels, [0, 1], **kwargs)


def test_bad_diagram_arguments():
    logits, labels = problem(12)
    with pytest.raises(ValueError, match="group must be one of .* got 'unseen'"):
        reliability_diagram(logits, labels, [0, 1], group="unseen")
    with pytest.raises(TypeError, match="adaptive must be a bool, got 'yes'"):
        reliability_diagram(logits, labels, [0, 1], adaptive="yes")


@pytest.mark.parametrize(
    "absent,match",
    [
        (None, "absent_classes is required"),
        ([], "absent_classes is empty"),
        ([2, 9], r"absent_classes out of range: \[9\]"),
        ([1, 1], "absent_classes lists a class more than once"),
        (list(range(7)), "absent_classes covers all 7 columns"),
        ([0.5], "absent_classes must hold integer class indices"),
    ],
)
def test_bad_absent_classes(absent, match):
    logits, _ = problem(13)
    with pytest.raises(ValueError, match=match):
        shifted_probabilities(logits, absent)


def test_non_finite_logits_follow_the_core():
    logits = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, -np.inf]])
    try:
        check_logits(logits)
    except ValueError:
        with pytest.raises(ValueError, match="non-finite"):
            shifted_probabilities(logits, [2])
        return
    p = shifted_probabilities(logits, [2], gamma=1.0)  # pragma: no cover - if the core allows -inf
    assert p[0, 1] == 0.0 and p[1, 2] == 0.0 and np.isfinite(p).all()


# ----------------------------------------------------------------------------- libraries


@pytest.mark.parametrize(
    "seed,gamma,temperature", [(20, 0.0, 1.0), (21, 2.0, 1.7), (22, -1.0, 0.6)]
)
def test_nll_and_brier_match_scikit_learn(seed, gamma, temperature):
    logits, labels = problem(seed, n=300)
    seen = [0, 1, 2, 3]
    p = shifted_probabilities(logits, [4, 5, 6], gamma, temperature)
    r = probability_report(logits, labels, seen, gamma=gamma, temperature=temperature)
    for suffix, rows in (
        ("", np.ones(300, bool)),
        ("_seen", np.isin(labels, seen)),
        ("_absent", ~np.isin(labels, seen)),
    ):
        y, q = labels[rows], p[rows]
        assert r["nll" + suffix] == pytest.approx(log_loss(y, q, labels=range(7)), rel=1e-10)
        one_vs_rest = sum(brier_score_loss(y == c, q[:, c]) for c in range(7))
        assert r["brier" + suffix] == pytest.approx(one_vs_rest, rel=1e-10)
        try:
            multi = brier_score_loss(y, q, labels=list(range(7)))
        except TypeError:  # scikit-learn < 1.7: no multiclass Brier
            continue
        assert r["brier" + suffix] == pytest.approx(multi, rel=1e-10)


@pytest.mark.parametrize("seed,gamma,temperature,n_bins", [(30, 0.0, 1.0, 15), (31, 2.0, 1.7, 10)])
def test_ece_matches_torchmetrics(seed, gamma, temperature, n_bins):
    tm = pytest.importorskip("torchmetrics.functional.classification")
    logits, labels = problem(seed, n=400)
    seen = [0, 1, 2, 3]
    p = shifted_probabilities(logits, [4, 5, 6], gamma, temperature)
    r = probability_report(
        logits, labels, seen, gamma=gamma, temperature=temperature, n_bins=n_bins
    )
    for suffix, rows in (
        ("", slice(None)),
        ("_seen", np.isin(labels, seen)),
        ("_absent", labels >= 4),
    ):
        want = tm.multiclass_calibration_error(
            torch.from_numpy(p[rows]), torch.from_numpy(labels[rows]), 7, n_bins=n_bins, norm="l1"
        )
        assert r["ece" + suffix] == pytest.approx(float(want), abs=1e-6)


@pytest.mark.parametrize("seed,gamma,temperature,n_bins", [(40, 0.0, 1.0, 15), (41, 2.0, 1.7, 10)])
def test_ece_matches_netcal(seed, gamma, temperature, n_bins):
    netcal = pytest.importorskip("netcal.metrics")
    logits, labels = problem(seed, n=400)
    seen = [0, 1, 2, 3]
    p = shifted_probabilities(logits, [4, 5, 6], gamma, temperature)
    r = probability_report(
        logits, labels, seen, gamma=gamma, temperature=temperature, n_bins=n_bins
    )
    for suffix, rows in (
        ("", slice(None)),
        ("_seen", np.isin(labels, seen)),
        ("_absent", labels >= 4),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = netcal.ECE(bins=n_bins).measure(p[rows], labels[rows])
        assert r["ece" + suffix] == pytest.approx(float(want), abs=1e-6)
