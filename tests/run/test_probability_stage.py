"""calib.run.probability_stage on the tiny demo run: every number recomputed from the saved files.

The references below read ``extract/*.pt`` with torch.load and γ from ``calibrators/*.json``
with json, and compute probabilities with scipy, bins with a loop over samples, T with scipy's
bounded optimiser, and PCV's class sets from the plan that made the run: no calib metric or
temperature code.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.estimator.temperature import T_BRACKET, fit_temperature
from calib.extract import Extracted
from calib.io import json_safe
from calib.metrics.probability import probability_report
from calib.run.probability_stage import (
    format_probability_table,
    probability_results,
    write_reliability_figure,
)
from calib.run.saved_run import load_saved_run
from calib.run.selector_data import fit_selector
from calib.selectors import SELECTORS, register_selector
from calib.selectors.data_kinds import NO_DATA, PSEUDO_SPLITS
from tests.brute import predict as brute_predict

N_BINS = 15
GROUPS = ("", "_seen", "_absent")


# ----------------------------------------------------------------------------- references


def saved_logits(run_dir, tag):
    data = torch.load(run_dir / "extract" / f"{tag}.pt", map_location="cpu", weights_only=True)
    return data["logits"].numpy(), data["labels"].numpy()


def saved_calibrator(run_dir, name):
    return json.loads((run_dir / "calibrators" / f"{name}.json").read_text())["fitted"]


def brute_log_p(z, absent, gamma, t):
    s = np.asarray(z, dtype=np.float64).copy()
    s[:, list(absent)] += gamma
    return log_softmax(s / t, axis=1)


def brute_ece(conf, correct, adaptive):
    n = len(conf)
    if adaptive:
        ordered = sorted(conf)
        edges = [0.0] + [ordered[math.ceil(Fraction(m * n, N_BINS)) - 1] for m in range(1, N_BINS)]
    else:
        edges = [m / N_BINS for m in range(N_BINS)]
    members = [[] for _ in range(N_BINS)]
    for i, c in enumerate(conf):  # bin m holds edges[m] < c <= edges[m + 1]; the last is open
        m = max([j for j in range(N_BINS) if j == 0 or c > edges[j]])
        members[m].append(i)
    total = 0.0
    for idx in members:
        if idx:
            gap = sum(correct[i] for i in idx) / len(idx) - sum(conf[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(gap)
    return total


def brute_report(z, y, seen, absent, gamma, t):
    log_p = brute_log_p(z, absent, gamma, t)
    pred = brute_predict(z, absent, gamma)
    out = {}
    for suffix, rows in (
        ("", range(len(y))),
        ("_seen", [i for i in range(len(y)) if y[i] in seen]),
        ("_absent", [i for i in range(len(y)) if y[i] in absent]),
    ):
        conf = [math.exp(log_p[i, pred[i]]) for i in rows]
        correct = [pred[i] == y[i] for i in rows]
        onehot = [np.eye(z.shape[1])[y[i]] for i in rows]
        out["ece" + suffix] = brute_ece(conf, correct, adaptive=False)
        out["ece_adaptive" + suffix] = brute_ece(conf, correct, adaptive=True)
        out["nll" + suffix] = float(np.mean([-log_p[i, y[i]] for i in rows]))
        out["brier" + suffix] = float(
            np.mean([((np.exp(log_p[i]) - oh) ** 2).sum() for i, oh in zip(rows, onehot)])
        )
        out["confidence" + suffix] = float(np.mean(conf))
    return out


def scipy_temperature(blocks):
    """argmin over T of the mean over blocks of each block's mean NLL; blocks: (z, y, U, γ)."""

    def nll(u):
        t = math.exp(u)
        return np.mean(
            [
                -brute_log_p(z, absent, gamma, t)[np.arange(len(y)), y].mean()
                for z, y, absent, gamma in blocks
            ]
        )

    lo, hi = (math.log(v) for v in T_BRACKET)
    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-11})
    return math.exp(res.x)


def assert_report(got, want):
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def saved(demo_run):
    return load_saved_run(demo_run[2])


@pytest.fixture(scope="module")
def prob(saved):
    return probability_results(saved.ex, saved.split, saved.calibrators, saved.pseudo_splits)


# ----------------------------------------------------------------------------- the numbers


def test_every_number_equals_a_recomputation_from_the_saved_files(demo_run, prob):
    plan, _, run_dir = demo_run
    names = list(plan.calibration.selectors)
    assert list(prob["calibrated"]) == names == ["alg", "pcv", "prior", "oracle"]
    fitted = {n: saved_calibrator(run_dir, n) for n in names}
    seen, absent = set(fitted["alg"]["seen_classes"]), set(fitted["alg"]["absent_classes"])
    z, y = saved_logits(run_dir, "finetuned_test")
    z_pre, y_pre = saved_logits(run_dir, "pretrained_test")
    assert_report(prob["pretrained"], brute_report(z_pre, y_pre, seen, absent, 0.0, 1.0))
    assert_report(prob["finetuned"], brute_report(z, y, seen, absent, 0.0, 1.0))
    z_tr, y_tr = saved_logits(run_dir, "finetuned_train")
    in_s = np.isin(y_tr, list(seen))
    pcv_blocks = []
    for j, sub in enumerate(plan.stages().pcv_subsets):
        z_h, y_h = saved_logits(run_dir, f"pcv_split_{j}_heldout")
        pcv_blocks.append((z_h, y_h, set(sub.pseudo_absent.tolist()) | absent))
    expected_t = {
        "alg": lambda g: scipy_temperature([(z_tr[in_s], y_tr[in_s], absent, g)]),
        "pcv": lambda g: scipy_temperature([(a, b, c, g) for a, b, c in pcv_blocks]),
        "prior": lambda g: 1.0,
        "oracle": lambda g: scipy_temperature([(z, y, absent, g)]),
    }
    for name in names:
        entry, gamma = prob["calibrated"][name], fitted[name]["gamma"]
        assert entry["gamma"] == gamma
        assert entry["temperature"] == fitted[name]["temperature"]  # the saved calibrator's T
        assert entry["temperature"] == pytest.approx(expected_t[name](gamma), rel=1e-6), name
        assert_report(entry["gamma_only"], brute_report(z, y, seen, absent, gamma, 1.0))
        want = brute_report(z, y, seen, absent, gamma, entry["temperature"])
        assert_report(entry["gamma_and_T"], want)
        assert entry["gamma_and_T"]["temperature_seen"] == entry["temperature"]
    assert prob["calibrated"]["alg"]["temperature_samples"] == int(in_s.sum())
    assert prob["calibrated"]["pcv"]["temperature_samples"] == sum(len(b[1]) for b in pcv_blocks)


def test_the_result_is_json(prob):
    text = json.dumps(json_safe(prob), allow_nan=False)
    assert (
        json.loads(text)["calibrated"]["pcv"]["temperature_data"] == PSEUDO_SPLITS.temperature_data
    )


def _with_train_rows(saved, rows, rng):
    """ex with the finetuned_train logits of ``rows`` replaced by random ones."""
    train = saved.ex["finetuned_train"]
    logits = train.logits.clone()
    logits[torch.as_tensor(rows)] = torch.from_numpy(
        rng.normal(scale=20.0, size=(len(rows), logits.shape[1])).astype(np.float32)
    )
    return saved.ex | {"finetuned_train": replace(train, logits=logits)}


def test_alg_temperature_never_sees_the_absent_rows(saved):
    labels = saved.ex["finetuned_train"].labels.numpy()
    u_rows = np.flatnonzero(np.isin(labels, saved.split.absent))
    s_rows = np.flatnonzero(np.isin(labels, saved.split.seen))
    assert u_rows.size and s_rows.size  # the train extraction holds both groups
    rng = np.random.default_rng(0)

    def t_alg(ex):  # the run's own fit: γ and T of the calibrator it saves and reports
        cal = fit_selector("alg", {}, saved.split, ex, None)
        return probability_results(ex, saved.split, {"alg": cal}, None)["calibrated"]["alg"][
            "temperature"
        ]

    base = t_alg(saved.ex)
    assert base == saved.calibrators["alg"].temperature_
    assert t_alg(_with_train_rows(saved, u_rows, rng)) == base
    assert t_alg(_with_train_rows(saved, s_rows[:50], rng)) != base  # the check can fail


def test_prior_is_label_free_and_keeps_t_one(prob):
    entry = prob["calibrated"]["prior"]
    assert entry["temperature"] == 1.0 and entry["temperature_samples"] == 0
    assert "label-free" in entry["temperature_data"]
    assert entry["gamma_and_T"] == entry["gamma_only"]


def test_oracle_temperature_is_the_fit_on_the_test_data(saved, prob):
    z, y = saved.ex["finetuned_test"].logits, saved.ex["finetuned_test"].labels
    entry = prob["calibrated"]["oracle"]
    want = fit_temperature(z, y, saved.split.absent, entry["gamma"], seen_classes=saved.split.seen)
    assert entry["temperature"] == want
    assert "upper bound" in entry["temperature_data"]


def test_per_group_temperatures(saved):
    prob = probability_results(
        saved.ex, saved.split, saved.calibrators, saved.pseudo_splits, per_group=True
    )
    oracle = prob["calibrated"]["oracle"]
    z, y = saved.ex["finetuned_test"].logits, saved.ex["finetuned_test"].labels
    pair = fit_temperature(z, y, saved.split.absent, oracle["gamma"], per_group=True)
    assert oracle["temperature_per_group"] == list(pair)
    assert oracle["gamma_and_group_T"]["temperature_absent"] == pair[1]
    assert "gamma_and_group_T" not in prob["calibrated"]["prior"]  # T = 1 by rule
    assert "+ γ + T_S/T_U (oracle)" in format_probability_table(prob)


@pytest.fixture
def user_selectors():
    names = {"_prob_unlabelled": "target_unlabelled", "_prob_labelled": "target_labelled"}
    for name, kind in names.items():
        register_selector(name, data=kind)(lambda **kw: (1.5, {}))
    yield list(names)
    for name in names:
        SELECTORS.unregister(name)


def test_user_selectors_follow_their_declared_data(saved, user_selectors):
    common = dict(seen_classes=saved.split.seen, absent_classes=saved.split.absent)
    z, y = saved.ex["finetuned_test"].logits.numpy(), saved.ex["finetuned_test"].labels.numpy()
    labelled = LogitBiasCalibrator("_prob_labelled", temperature="fit").fit(z, y, **common)
    cals = {
        "_prob_unlabelled": LogitBiasCalibrator("_prob_unlabelled").fit(z, **common),
        "_prob_labelled": labelled,
        "fixed": LogitBiasCalibrator("fixed", gamma=1.5).fit(num_classes=z.shape[1], **common),
    }
    prob = probability_results(saved.ex, saved.split, cals, None)["calibrated"]
    assert prob["_prob_unlabelled"]["temperature"] == 1.0
    assert prob["fixed"]["temperature"] == 1.0
    assert prob["fixed"]["temperature_data"] == NO_DATA.temperature_data
    want = fit_temperature(z, y, saved.split.absent, 1.5)
    assert prob["_prob_labelled"]["temperature"] == want == labelled.temperature_
    assert prob["_prob_labelled"]["temperature_samples"] == len(y)


def test_a_given_temperature_is_reported_as_given(saved):
    z = saved.ex["finetuned_test"].logits.numpy()
    common = dict(seen_classes=saved.split.seen, absent_classes=saved.split.absent)
    cals = {
        "fixed": LogitBiasCalibrator("fixed", gamma=1.5, temperature=2.0).fit(
            num_classes=z.shape[1], **common
        ),
        "prior": LogitBiasCalibrator("prior", temperature=(0.5, 3.0)).fit(z, **common),
    }
    full = probability_results(saved.ex, saved.split, cals, None, per_group=True)
    prob = full["calibrated"]
    assert prob["fixed"]["temperature"] == 2.0
    assert prob["fixed"]["temperature_data"].startswith("given: T = 2.0")
    assert prob["fixed"]["gamma_and_T"]["temperature_seen"] == 2.0
    assert prob["prior"]["temperature"] == [0.5, 3.0]
    assert prob["prior"]["gamma_and_T"]["temperature_absent"] == 3.0
    assert "gamma_and_group_T" not in prob["fixed"]  # no data to fit a pair on
    assert "| 0.500/3.000 |" in format_probability_table(full)


def test_bad_input_names_the_parameter(saved):
    args = (saved.split, saved.calibrators)
    ex = {k: v for k, v in saved.ex.items() if k != "pretrained_train"}
    with pytest.raises(ValueError, match="ex lacks the extraction.*pretrained_train"):
        probability_results(ex, *args, saved.pseudo_splits)
    with pytest.raises(ValueError, match="selector 'pcv' takes pseudo splits"):
        probability_results(saved.ex, *args, None, per_group=True)  # the pair refits T
    bad = saved.ex | {"finetuned_test": Extracted(torch.zeros(3, 4), torch.zeros(3).long())}
    with pytest.raises(ValueError, match=r"ex\['finetuned_test'\].logits has shape \(3, 4\)"):
        probability_results(bad, *args, saved.pseudo_splits)
    with pytest.raises(TypeError, match=r"calibrators\['alg'\] must be a fitted"):
        probability_results(saved.ex, saved.split, {"alg": LogitBiasCalibrator()}, None)


def test_the_class_balanced_average_weighs_each_class_alike(saved):
    macro = probability_results(saved.ex, saved.split, saved.calibrators, None, average="macro")
    assert macro["average"] == "macro"
    z, y = saved.ex["finetuned_test"].logits.numpy(), saved.ex["finetuned_test"].labels.numpy()
    counts = np.bincount(y)
    by_hand = 1.0 / counts[y]  # each class weighs 1 in total
    seen, absent = saved.split.seen, saved.split.absent
    for name, cal in saved.calibrators.items():
        entry = macro["calibrated"][name]
        want = probability_report(
            z, y, seen, absent, cal.gamma_, cal.temperature_, sample_weight=by_hand
        )
        assert_report(entry["gamma_and_T"], want)
    # the class-balanced NLL is the mean over the classes of each class's mean NLL
    with warnings.catch_warnings():  # one class: the other group is empty
        warnings.simplefilter("ignore", RuntimeWarning)
        per_class = [
            probability_report(z[y == c], y[y == c], seen, absent)["nll"] for c in np.unique(y)
        ]
    assert macro["finetuned"]["nll"] == pytest.approx(np.mean(per_class), rel=1e-12)
    assert "Class-balanced (macro)" in format_probability_table(macro)
    with pytest.raises(ValueError, match="average must be one of"):
        probability_results(saved.ex, saved.split, saved.calibrators, None, average="weighted")


# ----------------------------------------------------------------------------- table, figure


def test_table_renders_every_row_and_cell(prob):
    text = format_probability_table(prob, title="tiny demo")
    lines = text.splitlines()
    assert lines[0].startswith("**tiny demo**")
    header = next(line for line in lines if line.startswith("| model"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    want = ["model", "ECE", "ECE S", "ECE U", "NLL", "NLL S", "NLL U", "Brier", "T"]
    assert cells == want
    body = {
        row.strip("|").split("|")[0].strip(): [c.strip() for c in row.strip("|").split("|")[1:]]
        for row in lines
        if row.startswith("| ") and not row.startswith("| model")
    }
    assert list(body)[:2] == ["pre-trained", "fine-tuned"]
    assert len(body) == 2 + 2 * len(prob["calibrated"])
    pcv = prob["calibrated"]["pcv"]
    m = pcv["gamma_and_T"]
    assert body["+ γ + T (pcv)"] == [
        f"{100 * m['ece']:.1f}",
        f"{100 * m['ece_seen']:.1f}",
        f"{100 * m['ece_absent']:.1f}",
        f"{m['nll']:.3f}",
        f"{m['nll_seen']:.3f}",
        f"{m['nll_absent']:.3f}",
        f"{m['brier']:.3f}",
        f"{pcv['temperature']:.3f}",
    ]
    assert body["+ γ (alg)"][-1] == "1.000"
    assert f"- T (pcv): {pcv['temperature_data']}" in text


def test_reliability_figure_renders_headless(saved, prob, tmp_path):
    path = tmp_path / "reliability.png"
    write_reliability_figure(saved.ex, saved.split, saved.calibrators, prob, path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    with pytest.raises(ValueError, match="selector='nope'"):
        write_reliability_figure(saved.ex, saved.split, None, prob, path, selector="nope")
    other = {"pcv": LogitBiasCalibrator("fixed", gamma=0.25).fit(num_classes=10, seen_classes=[0])}
    with pytest.raises(ValueError, match="prob is from other calibrators"):
        write_reliability_figure(saved.ex, saved.split, other, prob, path)


# ----------------------------------------------------------------------------- the run folder


def test_saved_run_refuses_splits_that_do_not_give_the_saved_gamma(demo_copy):
    _, _, run_dir = demo_copy
    record = json.loads((run_dir / "run.json").read_text())
    record["config"]["calibration"]["pcv"]["seed"] = 7
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="redrawn PCV splits give pcv"):
        load_saved_run(run_dir)
