"""The paper-style table: per setting, one block of rows per fine-tuning method (meta.method),
pre-trained once, U-label rows marked, seeds averaged, the average over settings."""

from __future__ import annotations

import numpy as np
import pytest

from calib.run.paper_table import PAPER_METRICS, paper_rows, paper_table, run_method

SETTINGS = ("office_home_ar_cl", "office_home_rw_pr")
METHODS = ("lora", "full")  # given out of the paper's order


def _metrics(rng, gamma=0.0):
    keys = ("acc_seen", "acc_absent", "acc_all", "hmean", "ausuc", "ncm_acc_all")
    return {"gamma": gamma, **{k: float(rng.uniform(0.1, 0.9)) for k in keys}}


def _run(rng, setting, method, seed=0, pretrained=None, optimizer="sgd"):
    return {
        "pretrained": dict(pretrained) if pretrained is not None else _metrics(rng),
        "finetuned": _metrics(rng),
        "calibrated": {
            s: _metrics(rng, float(rng.normal(5))) for s in ("alg", "pcv", "prior", "oracle")
        },
        "meta": {
            "method": method,
            "config": {
                "name": setting,
                "seed": seed,
                "optimizer": {"name": optimizer},
                "finetune": {"method": method},
                "device": f"cuda:{seed}",
            },  # fmt: skip
            "selectors": {"oracle": {"uses_absent_labels": True}, "alg": {}},
        },
    }


@pytest.fixture()
def runs():
    rng = np.random.default_rng(1)
    out = {}
    for setting in SETTINGS:
        pre = _metrics(rng)  # the same source model for every method of a setting
        for method in METHODS:
            out[f"{setting}/{method}"] = _run(rng, setting, method, pretrained=pre)
    return out


def test_blocks_per_method_and_pretrained_once(runs):
    per_setting, average = paper_rows(runs)
    rows = [r for r in per_setting if r["setting"] == SETTINGS[0]]
    assert [r["model"] for r in rows] == [
        "pre-trained",
        "full", "full + γ ALG", "full + γ PCV", "full + γ oracle †",
        "lora", "lora + γ ALG", "lora + γ PCV", "lora + γ oracle †",
    ]  # fmt: skip
    assert [r["uses_absent_labels"] for r in rows] == [False] * 4 + [True] + [False] * 3 + [True]
    lora = runs[f"{SETTINGS[0]}/lora"]
    pcv = next(r for r in rows if r["model"] == "lora + γ PCV")
    for metric in PAPER_METRICS:
        assert pcv[metric] == lora["calibrated"]["pcv"][metric]
    assert pcv["method"] == "lora" and pcv["n_runs"] == 1
    # the average over the two settings, per row, γ not averaged
    by_model = {r["model"]: r for r in average}
    assert len(average) == 9 and by_model["lora + γ ALG"]["n"] == 2
    want = np.mean([runs[f"{s}/lora"]["calibrated"]["alg"]["ausuc"] for s in SETTINGS])
    assert by_model["lora + γ ALG"]["ausuc"] == pytest.approx(want)
    assert by_model["lora + γ ALG"]["gamma"] is None


def test_markdown_table_and_footnote(runs):
    text = paper_table(runs, title="two settings")
    assert text.startswith("## two settings")
    assert text.count("| pre-trained ") == 2 + 1  # per setting, and in the average
    assert "**Average over 2 settings**" in text
    assert text.rstrip().splitlines()[-1].startswith("† uses labels of the absent classes U")
    line = next(x for x in text.splitlines() if x.startswith("| lora + γ oracle †"))
    gamma = runs[f"{SETTINGS[0]}/lora"]["calibrated"]["oracle"]["gamma"]
    assert f"{gamma:+.3f}" in line


def test_seeds_are_averaged_and_other_swept_keys_split_a_method(runs):
    rng = np.random.default_rng(2)
    pre = runs[f"{SETTINGS[0]}/full"]["pretrained"]
    more = {"a/full": runs[f"{SETTINGS[0]}/full"]}
    more["b/full1"] = _run(rng, SETTINGS[0], "full", seed=1, pretrained=pre)
    more["c/full_adam"] = _run(rng, SETTINGS[0], "full", optimizer="adam", pretrained=pre)
    per_setting, _ = paper_rows(more)
    models = [r["model"] for r in per_setting]
    assert models[0] == "pre-trained" and "full (optimizer=sgd)" in models
    assert "full (optimizer=adam) + γ ALG" in models  # never averaged with sgd
    sgd = next(r for r in per_setting if r["model"] == "full (optimizer=sgd)")
    want = np.mean([more[n]["finetuned"]["acc_absent"] for n in ("a/full", "b/full1")])
    assert sgd["n_runs"] == 2 and sgd["acc_absent"] == pytest.approx(want)
    assert "runs = seeds averaged" in paper_table(more)


def test_oracle_all_and_a_different_pretrained_model():
    rng = np.random.default_rng(3)
    runs = {"s/full": _run(rng, "s", "full")}
    runs["s/oracle_all"] = _run(rng, "s", {"name": "oracle_all", "uses_absent_data": True},
                                pretrained=runs["s/full"]["pretrained"])  # fmt: skip
    runs["s/cos"] = _run(rng, "s", "full_cosine")  # another head: another pre-trained row
    per_setting, _ = paper_rows(runs)
    models = [r["model"] for r in per_setting]
    assert models[:2] == ["pre-trained", "full"]
    assert "oracle_all † + γ PCV" in models and "oracle_all † + γ oracle" in models
    assert models.index("full_cosine pre-trained") > models.index("oracle_all † + γ oracle")
    assert all(r["uses_absent_labels"] for r in per_setting if r["method"] == "oracle_all")
    assert run_method({"meta": {}}) == ("full", False)
    assert run_method({"meta": {"method": "oracle_all"}}) == ("oracle_all", True)


def _with_corrections(runs, rng, keys=("wa", "bic", "gla")):
    out = {}
    for name, results in runs.items():
        corrected = {k: {m: v for m, v in _metrics(rng).items() if m != "gamma"} for k in keys}
        out[name] = {**results, "corrected": corrected}
    return out


def test_corrections_follow_the_gamma_rows_without_a_gamma(runs):
    rng = np.random.default_rng(7)
    runs = _with_corrections(runs, rng)
    per_setting, average = paper_rows(runs)
    rows = [r for r in per_setting if r["setting"] == SETTINGS[0] and r["method"] == "full"]
    assert [r["model"] for r in rows] == [
        "pre-trained", "full", "full + γ ALG", "full + γ PCV", "full + γ oracle †",
        "full + WA", "full + BiC", "full + GLA",
    ]  # fmt: skip
    by_label = {r["model"]: r for r in rows}
    source = runs[f"{SETTINGS[0]}/full"]["corrected"]
    for key, label in (("wa", "full + WA"), ("bic", "full + BiC"), ("gla", "full + GLA")):
        row = by_label[label]
        assert row["gamma"] is None and row["uses_absent_labels"] is False
        assert row["acc_all"] == pytest.approx(source[key]["acc_all"], rel=1e-12)
    avg = {r["model"]: r for r in average}["full + BiC"]
    mean = np.mean([runs[f"{s}/full"]["corrected"]["bic"]["hmean"] for s in SETTINGS])
    assert avg["hmean"] == pytest.approx(mean, rel=1e-12) and avg["n"] == 2
    text = paper_table(runs)
    gla_line = next(line for line in text.splitlines() if line.startswith("| full + GLA"))
    assert gla_line.split("|")[2].strip() == "—"  # no γ
    # a run that fitted only some corrections gets only those rows; none at all: none
    only = _with_corrections(
        {k: {kk: vv for kk, vv in v.items() if kk != "corrected"} for k, v in runs.items()},
        rng,
        keys=("wa",),
    )
    labels = [r["model"] for r in paper_rows(only)[0]]
    assert "full + WA" in labels and "full + BiC" not in labels
    assert paper_rows(runs, corrections=())[0] == [
        r for r in per_setting if not r["model"].endswith(("WA", "BiC", "GLA"))
    ]
