"""results.json / CSV / table writing and the collation of many runs."""

from __future__ import annotations

import json

import pytest

from calib.io import json_safe
from calib.run.collate import collate_dir, find_runs, long_rows
from calib.run.results import flatten_results, format_table, write_results


def fake_results(acc_all: float, gamma: float = 1.5) -> dict:
    base = {
        "acc_all": acc_all,
        "acc_seen": 0.9,
        "acc_absent": float("nan"),
        "hmean": 0.0,
        "ausuc": 0.5,
    }
    return {
        "pretrained": dict(base),
        "finetuned": dict(base),
        "calibrated": {"alg": {**base, "gamma": gamma}},
        "meta": {"seen_classes": [0, 1]},
    }


def test_json_safe_turns_nan_and_inf_into_null():
    import numpy as np

    out = json_safe({"a": float("nan"), "b": [float("inf"), np.float32(0.5)], "c": np.int64(3)})
    assert out == {"a": None, "b": [None, 0.5], "c": 3}
    json.dumps(out, allow_nan=False)


def test_write_results_files(tmp_path):
    paths = write_results(fake_results(0.25), tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["finetuned"]["acc_absent"] is None  # NaN stored as null, never 0
    header, row = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert header.split(",")[0] == "pretrained.acc_all" and row.split(",")[0] == "0.25"
    assert set(paths) == {"json", "csv", "markdown"}
    assert not list(tmp_path.glob("*.tmp"))


def test_format_table_shows_percentages_and_gamma():
    text = format_table(fake_results(0.25), title="t")
    lines = text.splitlines()
    assert lines[0].startswith("**t**")
    alg = next(line for line in lines if "(alg)" in line)
    cells = [c.strip() for c in alg.strip("|").split("|")]
    assert cells[1] == "+1.500" and cells[2] == "25.0" and cells[4] == "—"


def test_flatten_results():
    flat = flatten_results(fake_results(0.5))
    assert flat["calibrated.alg.gamma"] == 1.5 and flat["meta.seen_classes"] == "0 1"


def test_collate_long_rows_without_configs(tmp_path):
    """Results without meta.config (older runs): every run is its own group, named by folder."""
    for name, acc in (("optimizer=sgd", 0.2), ("optimizer=adam", 0.6)):
        write_results(fake_results(acc), tmp_path / name)
    runs = find_runs(tmp_path)
    assert list(runs) == ["optimizer=adam", "optimizer=sgd"]
    rows = long_rows(runs, ["acc_all", "acc_absent"])
    assert len(rows) == 6 and rows[0]["run"] == rows[0]["folder"] == "optimizer=adam"
    text = collate_dir(tmp_path, figures=False)
    assert "Mean over runs" not in text and "2 group(s)" in text
    grouped = text.split("group(s)")[1]
    assert "| optimizer=adam | pre-trained" in grouped and "60.0" in grouped
    assert "40.0" not in text  # never the mean across the two optimizers
    for suffix in (".csv", "_groups.csv", "_wide.csv", ".md"):
        assert (tmp_path / f"collated{suffix}").is_file()
    assert not (tmp_path / "figures").exists()


def test_collate_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        find_runs(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        find_runs(tmp_path / "missing")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="cannot read"):
        find_runs(tmp_path)
    (tmp_path / "run" / "results.json").write_text(json.dumps({"other": 1}))
    with pytest.raises(ValueError, match="not a calib results file"):
        find_runs(tmp_path)


def test_the_table_says_how_its_accuracies_are_averaged(tmp_path):
    for average, words in (("micro", "per-sample"), ("macro", "class-balanced")):
        results = fake_results(0.25)
        results["meta"]["average"] = average
        text = format_table(results, title="t")
        assert f"Accuracies: {words}" in text and f"({average} average" in text
        write_results(results, tmp_path)
        assert f"Accuracies: {words}" in (tmp_path / "results.md").read_text()
    assert "Accuracies:" not in format_table(fake_results(0.25))  # meta says nothing: no line
    results = fake_results(0.25)
    results["meta"]["average"] = "weighted"
    with pytest.raises(ValueError, match="meta.average must be one of .* got 'weighted'"):
        format_table(results)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_model_metrics_average_every_accuracy_alike(average):
    import numpy as np
    import torch

    import tests.brute as brute
    from calib.data import ClassSplit
    from calib.extract import Extracted
    from calib.run.report_metrics import model_metrics

    rng = np.random.default_rng(0)
    z = (rng.integers(-12, 12, size=(90, 6)) / 4.0).astype(np.float32)
    y = rng.integers(0, 6, size=90)
    y[:40] = 0  # a class far larger than the others: micro and macro differ
    f = rng.normal(size=(90, 5)).astype(np.float32)
    test = Extracted(torch.from_numpy(z), torch.from_numpy(y), torch.from_numpy(f))
    split = ClassSplit((0, 1, 2), (3, 4, 5), 6)
    row = model_metrics(test, test, split, gamma=0.5, average=average)
    want = brute.weighted_accuracies(z, y, [0, 1, 2], [3, 4, 5], 0.5, 1, None, average)
    for key in brute.KEYS:
        assert row[key] == pytest.approx(want[key], abs=1e-12), key
    pair = None if average == "micro" else brute.class_balanced_weights(y.tolist())
    area = brute.weighted_ausuc_rank_statistic(z, y, [0, 1, 2], [3, 4, 5], pair or [1.0] * 90)
    assert row["ausuc"] == pytest.approx(area, abs=1e-12)
    assert {"ncm_acc_all", "ncm_acc_seen", "ncm_hmean"} <= set(row)
    other = model_metrics(test, test, split, gamma=0.5, average=_other(average))
    assert row["acc_all"] != pytest.approx(other["acc_all"], abs=1e-6)


def _other(average: str) -> str:
    return "macro" if average == "micro" else "micro"


def test_the_premise_line_says_it_is_per_sample_under_a_macro_table():
    import numpy as np
    import torch

    from calib.data import ClassSplit
    from calib.extract import Extracted
    from calib.run.report_metrics import premise_results

    rng = np.random.default_rng(1)
    y = torch.from_numpy(rng.integers(0, 6, size=120))
    pre = Extracted(torch.from_numpy(rng.normal(size=(120, 6)).astype(np.float32)), y)
    ft = Extracted(torch.from_numpy(rng.normal(size=(120, 6)).astype(np.float32)), y)
    split = ClassSplit((0, 1, 2), (3, 4, 5), 6)
    micro = premise_results({"meta": {"average": "micro"}}, pre, ft, split)
    macro = premise_results({"meta": {"average": "macro"}}, pre, ft, split)
    assert macro["message"] == micro["message"] + " (premise: per-sample accuracies)"
    assert premise_results({}, pre, ft, split)["message"] == micro["message"]
