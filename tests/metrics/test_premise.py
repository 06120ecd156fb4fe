"""The premise check (calib.metrics.premise): U/U against its paired noise bound, both ways,
the bound against a hand computation and a simulation, bad input, and its place in a run's
results and printed table."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch

from calib.data import ClassSplit
from calib.extract import Extracted
from calib.metrics import PremiseCheck, accuracy_report, paired_drop_bound, premise_check
from calib.run.report_metrics import premise_results
from calib.run.results import format_table

SEEN, ABSENT, C = [0, 1, 2], [3, 4, 5], 6


def _logits(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A pre-trained model that ranks ~80 % of samples right (labels uniform over 6 classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    z = rng.normal(size=(n, C))
    right = rng.random(n) < 0.8
    z[np.flatnonzero(right), y[right]] += 4.0
    return z, y


def _brute_uu(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per U-test sample: is its label the argmax over the U columns? (a plain loop)"""
    hits = []
    for row, label in zip(z, y, strict=True):
        if label in ABSENT:
            best = max(ABSENT, key=lambda c: (row[c], -c))  # ties → lowest column
            hits.append(best == label)
    return np.array(hits)


def test_features_kept_premise_holds():
    # Fine-tuning on S only inflates S: U/Y collapses but U/U, and so AUSUC, stay.
    pre, y = _logits()
    ft = pre.copy()
    ft[:, SEEN] += 6.0
    assert accuracy_report(ft, y, SEEN)["acc_absent"] < 0.1  # what γ is for
    check = premise_check(pre, ft, y, SEEN, selector_gamma={"alg": 6.0, "oracle": 5.5})
    assert isinstance(check, PremiseCheck) and check.holds
    assert check.drop == 0 and check.n_lost == check.n_gained == 0 and check.bound == 0
    assert check.acc_absent_absent_pretrained == check.acc_absent_absent_finetuned
    assert check.message.startswith("premise holds: U/U")
    assert check.gamma_spread == pytest.approx(0.5)
    assert check.selector_acc_all["alg"] == accuracy_report(ft, y, SEEN, gamma=6.0)["acc_all"]


def test_features_improved_premise_holds():
    pre, y = _logits()
    ft = pre.copy()
    u = np.flatnonzero(np.isin(y, ABSENT))
    ft[u, y[u]] += 10.0  # every U sample now ranked right within U
    check = premise_check(pre, ft, y, SEEN)
    assert check.holds and check.drop < 0 and check.n_lost == 0 and check.n_gained > 0
    assert check.acc_absent_absent_finetuned == 1.0


def test_features_lost_premise_fails():
    pre, y = _logits()
    ft = pre.copy()
    u = np.flatnonzero(np.isin(y, ABSENT))
    ft[u, y[u]] -= 10.0  # the U columns no longer rank U right: no γ can fix that
    check = premise_check(pre, ft, y, SEEN, selector_gamma={"alg": 0.5, "pcv": 19.3})
    assert not check.holds
    assert check.acc_absent_absent_finetuned == 0.0
    assert check.drop == pytest.approx(check.acc_absent_absent_pretrained)
    assert check.drop > 5 * check.bound  # far beyond the noise, not at its edge
    assert check.message.startswith("premise fails: U/U")
    assert "no γ can restore it" in check.message and "+19.30" in check.message
    assert check.ausuc_finetuned < check.ausuc_pretrained


def test_counts_match_a_brute_force_loop():
    pre, y = _logits(seed=1)
    rng = np.random.default_rng(2)
    ft = pre + rng.normal(scale=2.0, size=pre.shape)  # some lost, some gained
    check = premise_check(pre, ft, y, SEEN, ABSENT)
    a, b = _brute_uu(pre, y), _brute_uu(ft, y)
    assert check.n_absent == a.size
    assert (check.n_lost, check.n_gained) == (int((a & ~b).sum()), int((~a & b).sum()))
    assert check.n_lost > 0 and check.n_gained > 0
    assert check.acc_absent_absent_pretrained == a.mean()
    assert check.acc_absent_absent_finetuned == b.mean()
    assert check.bound == 3.0 * math.sqrt(check.n_lost + check.n_gained) / check.n_absent


def test_bound_by_hand():
    # 30 lost, 10 gained of 400: drop 5 pts; SE = sqrt(40) / 400 = 1.58 pts; 2 SE = 3.16 pts.
    assert paired_drop_bound(30, 10, 400, z=2.0) == pytest.approx(0.0316228, abs=1e-7)
    assert paired_drop_bound(0, 0, 10) == 0.0


def test_bound_matches_simulation_under_no_change():
    # Two equally good models on the same n samples: each sample is lost with probability p,
    # gained with probability p, else agreed on. The drop's spread should be what the bound's
    # standard error says, and a z = 2 bound is exceeded about 2.3 % of the time (one-sided).
    rng = np.random.default_rng(0)
    n, p, sims = 500, 0.05, 40_000
    counts = rng.multinomial(n, [p, p, 1 - 2 * p], size=sims)
    lost, gained = counts[:, 0], counts[:, 1]
    drop = (lost - gained) / n
    se = np.sqrt(lost + gained) / n
    # Monte Carlo tolerance: the sample std of 40,000 draws is off by ~1/sqrt(2 * sims) = 0.4 %.
    assert drop.std() == pytest.approx(math.sqrt(2 * p * n) / n, rel=0.02)
    assert np.mean(se**2) == pytest.approx(drop.var(), rel=0.03)
    exceed = np.mean([drop[i] > paired_drop_bound(lost[i], gained[i], n, 2.0) for i in range(sims)])
    # The normal approximation's 2.28 %, within a few MC standard errors (sqrt(.023/40000) = .08 %)
    # and the discreteness of the counts.
    assert 0.015 < exceed < 0.03


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda z, y: premise_check(z, z[:, :5], y, SEEN), r"shapes \(600, 6\) and \(600, 5\)"),
        (lambda z, y: premise_check(z, z[:-1], y, SEEN), "shapes"),
        (lambda z, y: premise_check(z, z, y[:-1], SEEN), "labels has 599 entries"),
        (lambda z, y: premise_check(z, z, np.where(y > 2, 0, y), SEEN), "no test sample has"),
        (lambda z, y: premise_check(z, z, y, SEEN, z=0), "z must be positive, got 0"),
        (lambda z, y: premise_check(z, z, y, SEEN, selector_gamma={"alg": "x"}), "alg"),
        (lambda z, y: premise_check(z, z, y, SEEN, ncm_absent_absent=0.5), "pair of accuracies"),
        (lambda z, y: premise_check(z, z, y, SEEN, ncm_absent_absent=(0.5, 2)), r"\[1\]"),
        (lambda z, y: paired_drop_bound(3, 2, 4), "exceeds n = 4"),
        (lambda z, y: paired_drop_bound(1, 0, 0), "n must be positive"),
        (lambda z, y: paired_drop_bound(-1, 0, 5), "n_lost must be a non-negative integer, got -1"),
    ],
)
def test_bad_input_is_refused_clearly(call, match):
    z, y = _logits()
    with pytest.raises((ValueError, TypeError), match=match):
        call(z, y)


# --- the run's side: results["premise"], the log, the line under the table -----------------


def _results(pre: np.ndarray, ft: np.ndarray, y: np.ndarray) -> dict:
    def row(z):
        return accuracy_report(z, y, SEEN) | {"ncm_acc_absent_absent": 0.7}

    return {
        "pretrained": row(pre),
        "finetuned": row(ft),
        "calibrated": {"alg": {"gamma": 0.5}, "pcv": {"gamma": 19.3}},
    }


def _ex(z, y) -> Extracted:
    return Extracted(logits=torch.from_numpy(z).float(), labels=torch.from_numpy(y))


def test_run_side_fails_warns_and_prints(caplog):
    pre, y = _logits()
    ft = pre.copy()
    u = np.flatnonzero(np.isin(y, ABSENT))
    ft[u, y[u]] -= 10.0
    results = _results(pre, ft, y)
    split = ClassSplit(seen=tuple(SEEN), absent=tuple(ABSENT), num_classes=C)
    with caplog.at_level(logging.WARNING, logger="calib.run.report_metrics"):
        premise = premise_results(results, _ex(pre, y), _ex(ft, y), split)
    expected = premise_check(
        pre.astype(np.float32),
        ft.astype(np.float32),
        y,
        SEEN,
        ABSENT,
        selector_gamma={"alg": 0.5, "pcv": 19.3},
        ncm_absent_absent=(0.7, 0.7),
    )
    assert premise == expected.to_dict() and premise["holds"] is False
    assert [r.getMessage() for r in caplog.records] == [premise["message"]]
    table = format_table({**results, "premise": premise})
    assert table.endswith("\n\n" + premise["message"])
    assert "NCM U/U 70.0 → 70.0 %" in premise["message"]
    assert premise["message"] not in format_table(results)  # no premise, no line


def test_run_side_holds_without_warning(caplog):
    pre, y = _logits()
    ft = pre.copy()
    ft[:, SEEN] += 6.0
    results = _results(pre, ft, y)
    results["finetuned"]["ncm_acc_absent_absent"] = math.nan  # no NCM sample: not reported
    split = ClassSplit(seen=tuple(SEEN), absent=tuple(ABSENT), num_classes=C)
    with caplog.at_level(logging.WARNING, logger="calib.run.report_metrics"):
        premise = premise_results(results, _ex(pre, y), _ex(ft, y), split)
    assert premise["holds"] is True and not caplog.records
    assert premise["ncm_absent_absent_pretrained"] is None


def test_run_side_refuses_different_test_samples():
    pre, y = _logits()
    split = ClassSplit(seen=tuple(SEEN), absent=tuple(ABSENT), num_classes=C)
    other = _ex(pre, (y + 1) % C)
    with pytest.raises(ValueError, match="same test samples"):
        premise_results(_results(pre, pre, y), _ex(pre, y), other, split)


def test_demo_premise_is_consistent_with_the_function(demo_run):
    from calib.run.saved_run import load_saved_run

    _, results, run_dir = demo_run
    saved = load_saved_run(run_dir)
    pre, ft = saved.ex["pretrained_test"], saved.ex["finetuned_test"]
    premise = premise_results(results, pre, ft, saved.split)
    direct = premise_check(
        pre.logits,
        ft.logits,
        ft.labels,
        saved.split.seen,
        saved.split.absent,
        selector_gamma={n: m["gamma"] for n, m in results["calibrated"].items()},
    )
    # The run's U/U and AUSUC rows come from the same logits by the same code paths.
    assert premise["acc_absent_absent_finetuned"] == results["finetuned"]["acc_absent_absent"]
    assert premise["ausuc_pretrained"] == results["pretrained"]["ausuc"]
    for key in ("holds", "n_absent", "n_lost", "n_gained", "drop", "bound", "gamma_spread"):
        assert premise[key] == getattr(direct, key)
    assert premise["n_absent"] == results["finetuned"]["n_absent"]


def test_demo_results_record_the_premise(demo_run):
    # Needs results["premise"] = premise_results(...) in calib.run.run_outputs.run_results.
    from calib.run.saved_run import load_saved_run

    _, results, run_dir = demo_run
    saved = load_saved_run(run_dir)
    expected = premise_results(
        results, saved.ex["pretrained_test"], saved.ex["finetuned_test"], saved.split
    )
    assert results["premise"] == expected
    on_disk = json.loads((run_dir / "results.json").read_text())["premise"]
    assert on_disk["holds"] == expected["holds"] and on_disk["message"] == expected["message"]
    assert expected["message"] in (run_dir / "results.md").read_text()


def test_states_give_the_verdict_of_the_logits():
    """Two SeenAbsentStates fed the same test batches give every field of the logits' check
    (U/U hits from the states' hit_absent, AUSUC and Acc Y/Y from the states): the harness's
    eval.logits=state path."""
    from calib.metrics.streaming import SeenAbsentState

    pre, y = _logits(seed=5)
    ft = pre.copy()
    ft[:, SEEN] += 2.0
    ft[np.random.default_rng(6).random(len(y)) < 0.2] = np.random.default_rng(7).normal(size=C)
    gammas = {"alg": 1.0, "oracle": 2.5}
    whole = premise_check(pre, ft, y, SEEN, ABSENT, selector_gamma=gammas).to_dict()
    states = [SeenAbsentState(C, SEEN, ABSENT) for _ in range(2)]
    for i in range(0, len(y), 97):  # uneven batches
        states[0].update(pre[i : i + 97], y[i : i + 97])
        states[1].update(ft[i : i + 97], y[i : i + 97])
    streamed = premise_check(*states, None, SEEN, ABSENT, selector_gamma=gammas).to_dict()
    assert streamed.keys() == whole.keys()
    for key, value in whole.items():
        if isinstance(value, float):
            assert math.isclose(streamed[key], value, rel_tol=1e-12, abs_tol=1e-15), key
        elif isinstance(value, dict):
            assert streamed[key].keys() == value.keys()
            for k, v in value.items():
                assert math.isclose(streamed[key][k], v, rel_tol=1e-12), (key, k)
        else:
            assert streamed[key] == value, key
    with pytest.raises(TypeError, match="give two states or two logit matrices"):
        premise_check(states[0], ft, y, SEEN, ABSENT)
    other = SeenAbsentState(C, SEEN, ABSENT).update(pre[:10], y[:10])
    with pytest.raises(ValueError, match="same samples in the same order"):
        premise_check(states[0], other, None, SEEN, ABSENT)
