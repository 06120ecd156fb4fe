"""The run's T is the saved calibrator's T: calibrators/*.json reload to results.json's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.io import json_safe
from calib.metrics.probability import probability_report
from calib.run.saved_run import load_saved_run
from calib.run.selector_data import run_temperature


def _reported(run_dir):
    return json.loads((run_dir / "results.json").read_text())["probability"]


def test_saved_calibrators_reload_to_the_reported_probabilities(demo_run):
    _, _, run_dir = demo_run
    prob = _reported(run_dir)
    saved = load_saved_run(run_dir)  # the run's extractions, read back
    z = saved.ex["finetuned_test"].logits.numpy()
    y = saved.ex["finetuned_test"].labels.numpy()
    n_bins = prob["finetuned"]["n_bins"]
    assert set(prob["calibrated"]) == {"alg", "pcv", "prior", "oracle"}
    for name, entry in prob["calibrated"].items():
        cal = LogitBiasCalibrator.load(run_dir / "calibrators" / f"{name}.json")
        assert cal.temperature == run_temperature(name)
        assert (cal.gamma_, cal.temperature_) == (entry["gamma"], entry["temperature"])
        if name != "prior":  # a kind with labels: T was fitted, not left at 1
            assert cal.temperature == "fit" and cal.temperature_ != 1.0, name
        # the same computation on the same float64 data: equal, through the JSON round trip
        again = probability_report(
            z, y, cal.seen_classes_, cal.absent_classes_, cal.gamma_, cal.temperature_, n_bins
        )
        assert json.loads(json.dumps(json_safe(again))) == entry["gamma_and_T"], name
        # predict_proba is those probabilities; break_ties may raise a tied predicted
        # column by one ulp, so its mean confidence agrees to float64 rounding only
        p = cal.predict_proba(z)
        confidence = p[np.arange(len(y)), cal.predict(z)].mean()
        assert confidence == pytest.approx(entry["gamma_and_T"]["confidence"], rel=1e-14)


def test_a_folder_whose_calibrators_lack_the_run_temperature_is_refused(demo_copy):
    _, _, run_dir = demo_copy
    path = run_dir / "calibrators" / "alg.json"
    record = json.loads(path.read_text())
    record["params"]["temperature"] = None  # as an older calib saved it: T = 1, refit later
    record["fitted"]["temperature"] = 1.0
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"alg.json: the calibrator was saved with temperature="):
        load_saved_run(run_dir)


def test_the_selector_stage_key_holds_the_temperature_setting(demo_run):
    plan, _, run_dir = demo_run
    records = json.loads((run_dir / "stages.json").read_text())["stages"]
    for name in plan.calibration.selectors:
        identity = records[f"selector/{name}"]["identity"]
        assert identity["temperature"] == run_temperature(name), name
