"""benchmarks/probability_demo.py on a small synthetic run folder: it reads, fits and prints."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calib.calibrator import LogitBiasCalibrator
from calib.probability import probability_report
from calib.temperature import fit_temperature

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "probability_demo.py"
SEEN, ABSENT = np.array([0, 1, 2]), np.array([3, 4, 5])


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("probability_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logits(rng, labels, seen_boost):
    z = rng.normal(size=(labels.size, 6))
    z[np.arange(labels.size), labels] += 2.5
    z[:, SEEN] += seen_boost  # inflated seen logits, as after fine-tuning
    return z


def _save(run: Path, name: str, z: np.ndarray, y: np.ndarray) -> None:
    torch.save(
        {"logits": torch.from_numpy(z), "labels": torch.from_numpy(y)},
        run / "extract" / f"{name}.pt",
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, demo):
    run = tmp_path_factory.mktemp("run")
    (run / "extract").mkdir()
    (run / "calibrators").mkdir()
    rng = np.random.default_rng(0)
    y_train = rng.choice(SEEN, size=150)
    y_test = rng.integers(0, 6, size=200)
    _save(run, "finetuned_train", _logits(rng, y_train, 2.0), y_train)
    _save(run, "finetuned_test", z_test := _logits(rng, y_test, 2.0), y_test)
    _save(run, "pretrained_test", _logits(rng, y_test, 0.0), y_test)
    for j in range(2):
        y = rng.choice(SEEN, size=60)
        _save(run, f"pcv_split_{j}_heldout", _logits(rng, y, 1.0), y)
    common = dict(seen_classes=SEEN, absent_classes=ABSENT, num_classes=6)
    LogitBiasCalibrator(method="oracle").fit(z_test, y_test, **common).save(
        run / "calibrators" / "oracle.json"
    )
    LogitBiasCalibrator(method="prior").fit(z_test, None, **common).save(
        run / "calibrators" / "prior.json"
    )
    # PCV's γ comes from the splits as the script redraws them (seed 0, fraction 0.5)
    splits = demo.redraw_pseudo_splits(run, SEEN, ABSENT, y_train, 0, 0.5)
    LogitBiasCalibrator(method="pcv", criterion="hmean").fit(pseudo_splits=splits, **common).save(
        run / "calibrators" / "pcv.json"
    )
    return run


def _args(**kw):
    base = dict(n_bins=10, pcv_seed=0, pcv_absent_fraction=0.5, figure=None, figure_selector="pcv")
    return argparse.Namespace(**(base | kw))


def test_table_rows_are_the_library_numbers(demo, run_dir):
    table = {r["model"]: r for r in demo.rows(run_dir, _args())}
    assert list(table)[:3] == ["pre-trained", "fine-tuned", "fine-tuned + T"]
    for name in ("pcv", "prior", "oracle"):
        assert f"+ γ ({name})" in table and f"+ γ + T ({name})" in table
    z = torch.load(run_dir / "extract" / "finetuned_test.pt")
    z, y = z["logits"].numpy(), z["labels"].numpy()
    oracle = LogitBiasCalibrator.load(run_dir / "calibrators" / "oracle.json")
    t = fit_temperature(z, y, ABSENT, oracle.gamma_, seen_classes=SEEN)
    want = probability_report(z, y, SEEN, ABSENT, oracle.gamma_, t, 10)
    got = table["+ γ + T (oracle)"]
    for key in ("ece", "nll_absent", "brier_seen", "ece_adaptive_absent"):
        assert got[key] == want[key]
    assert table["+ γ + T (prior)"]["nll"] == table["+ γ (prior)"]["nll"]  # label-free: T = 1
    text = demo.markdown(list(table.values()))
    assert "| + γ + T (oracle) |" in text and "conf U" in text


def test_wrong_pcv_seed_is_caught(demo, run_dir):
    with pytest.raises(SystemExit, match="redrawn PCV splits"):
        demo.rows(run_dir, _args(pcv_seed=5))


@pytest.mark.slow
def test_figure_and_json(demo, run_dir, tmp_path):
    table = demo.rows(run_dir, _args())
    with pytest.raises(SystemExit, match="no such selector"):
        demo.figure(run_dir, table, _args(figure=tmp_path / "x.png", figure_selector="alg"))
    demo.figure(run_dir, table, _args(figure=tmp_path / "rel.png"))
    assert (tmp_path / "rel.png").stat().st_size > 10_000
    json.dumps(table)  # the --json output is plain numbers and strings
