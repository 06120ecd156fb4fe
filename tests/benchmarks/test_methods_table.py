"""benchmarks/methods_table.py on synthetic run folders: rows, U marks, areas and --check."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calib import LogitBiasCalibrator, accuracy_report, ausuc

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "methods_table.py"
SEEN, ABSENT = [0, 1, 2], [3, 4, 5]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("methods_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(z, y, gamma):
    rep = accuracy_report(z, y, SEEN, ABSENT, gamma=gamma, topk=(1,))
    keep = ("acc_seen", "acc_absent", "acc_all", "hmean")
    return {**{k: float(rep[k]) for k in keep}, "ausuc": ausuc(z, y, SEEN, ABSENT)}


def _run(root: Path, method: str, seed: int, uses_u: bool = False, alpha=None) -> Path:
    """A run folder as the harness writes it: results.json, extract/, calibrators/."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, size=60)
    z = rng.normal(size=(60, 6)).astype(np.float32)
    z[np.arange(60), y] += 1.5
    z[:, SEEN] += 1.0
    run = root / f"finetune.method={method}"
    (run / "extract").mkdir(parents=True)
    (run / "calibrators").mkdir()
    torch.save(
        {"logits": torch.from_numpy(z), "labels": torch.from_numpy(y)},
        run / "extract" / "finetuned_test.pt",
    )
    calibrated = {}
    for name, gamma in (("alg", 0.5), ("oracle", 1.25)):
        cal = LogitBiasCalibrator(method="fixed", gamma=gamma)
        cal.fit(num_classes=6, seen_classes=SEEN, absent_classes=ABSENT)
        cal.save(run / "calibrators" / f"{name}.json")
        calibrated[name] = {**_metrics(z, y, gamma), "gamma": gamma, "ncm_acc_all": 0.5}
    results = {
        "pretrained": {**_metrics(z, y, 2.0), "ncm_acc_all": 0.5},
        "finetuned": {**_metrics(z, y, 0.0), "ncm_acc_all": 0.5},
        "calibrated": calibrated,
        "meta": {
            "method": method,
            "method_params": {"head": "linear"},
            "uses_absent_data": uses_u,
            "seen_classes": SEEN,
            "absent_classes": ABSENT,
            "selectors": {
                "alg": {"uses_absent_labels": False},
                "oracle": {"uses_absent_labels": True},
            },
        },
    }
    if alpha is not None:
        results["alpha_tradeoff"] = alpha
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run


def test_rows_in_method_order_with_u_marks(table, tmp_path, capsys):
    _run(tmp_path, "oracle_all", 1, uses_u=True)
    _run(tmp_path, "full", 2)
    table.main([str(tmp_path), "--selectors", "alg,oracle"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = [[c.strip() for c in line.strip("|").split("|")][:2] for line in lines[1:]]
    starts = [r for r in rows if r[0] == "pre-trained"]
    # the two runs start from different synthetic models: one pre-trained row each
    assert starts == [
        ["pre-trained", "start of full"],
        ["pre-trained", "start of oracle_all (uses U data)"],
    ]
    assert [r for r in rows if r[0] != "pre-trained"] == [
        ["full", "method"],
        ["full", "+ γ ALG"],
        ["full", "+ γ oracle (U labels)"],
        ["oracle_all (uses U data)", "method"],
        ["oracle_all (uses U data)", "+ γ ALG"],
        ["oracle_all (uses U data)", "+ γ oracle (U labels)"],
    ]


def test_check_recomputes_and_reports_a_tampered_value(table, tmp_path):
    run = _run(tmp_path, "full", 3)
    results = json.loads((run / "results.json").read_text())
    assert table.check_run(run, results, ["alg", "oracle"]) == []
    results["calibrated"]["oracle"]["acc_absent"] += 1e-6
    problems = table.check_run(run, results, ["alg", "oracle"])
    assert len(problems) == 1 and "oracle: acc_absent" in problems[0]


def test_alpha_area_is_the_trapezoid_rule_in_alpha_order(table, tmp_path, capsys):
    rng = np.random.default_rng(4)
    x, y = np.sort(rng.uniform(size=7)), np.sort(rng.uniform(size=7))[::-1]
    assert table.trapezoid_area(list(x), list(y)) == pytest.approx(np.trapezoid(y, x), abs=1e-15)
    back = table.trapezoid_area(list(x[::-1]), list(y[::-1]))  # traversed the other way
    assert back == pytest.approx(-np.trapezoid(y, x), abs=1e-15)
    alpha = {
        "alpha": list(np.linspace(0, 1, 7)),
        "acc_seen": list(x),
        "acc_absent": list(y),
        "acc_all": list((x + y) / 2),
        "area": float(np.trapezoid(y, x)),
        "gamma_area_on_alpha_range": 0.123,
    }
    _run(tmp_path, "wise_ft", 5, alpha=alpha)
    table.main([str(tmp_path)])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| wise_ft | 0..1 (7)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == cells[4] == f"{100 * np.trapezoid(y, x):.2f}"
    assert cells[5] == "12.30"
