"""benchmarks/probability_demo.py on the tiny demo run: it prints and saves the stage's numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from calib import accuracy_report
from calib.io import json_safe
from calib.run.probability_stage import probability_results
from calib.run.saved_run import load_saved_run

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "probability_demo.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("probability_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prints_and_saves_the_stage_numbers(demo, demo_run, tmp_path, capsys):
    run_dir = demo_run[2]
    out = tmp_path / "prob.json"
    prob = demo.main([str(run_dir), "--n-bins", "10", "--per-group", "--json", str(out)])
    saved = load_saved_run(run_dir)
    want = probability_results(
        saved.ex, saved.split, saved.calibrators, saved.pseudo_splits, n_bins=10, per_group=True
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(json_safe(want)))
    assert prob["calibrated"]["pcv"]["gamma_and_T"] == want["calibrated"]["pcv"]["gamma_and_T"]
    text = capsys.readouterr().out
    assert "| + γ + T (pcv)" in text and "| + γ + T_S/T_U (oracle)" in text
    z, y = saved.ex["finetuned_test"].logits, saved.ex["finetuned_test"].labels
    gamma = want["calibrated"]["alg"]["gamma"]
    acc = accuracy_report(z, y, saved.split.seen, saved.split.absent, gamma)
    # the last "+ γ (alg)" row is the confidence table's: conf/acc per group
    conf_rows = [r for r in text.splitlines() if r.startswith("| + γ (alg)")]
    conf_cells = [c.strip() for c in conf_rows[-1].strip("|").split("|")]
    assert conf_cells[2] == f"{100 * acc['acc_all']:.1f}"
    assert conf_cells[6] == f"{100 * acc['acc_absent']:.1f}"


def test_wrong_pcv_settings_are_caught(demo, demo_copy):
    run_dir = demo_copy[2]
    record = json.loads((run_dir / "run.json").read_text())
    record["config"]["calibration"]["pcv"]["seed"] = 5
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="redrawn PCV splits"):
        demo.main([str(run_dir)])


@pytest.mark.slow
def test_figure(demo, demo_run, tmp_path):
    path = tmp_path / "rel.png"
    demo.main([str(demo_run[2]), "--figure", str(path), "--figure-selector", "oracle"])
    assert path.stat().st_size > 20_000
    with pytest.raises(ValueError, match="selector='nope'"):
        demo.main([str(demo_run[2]), "--figure", str(path), "--figure-selector", "nope"])
