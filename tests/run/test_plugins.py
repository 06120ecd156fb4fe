"""A selector registered in a test file runs end to end through calib-run, fed by its declaration."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from calib.run import ConfigError, build_plan
from tests.helpers_paper import CONF
from tests.helpers_run import TINY, tiny_config

PLUGIN = str(CONF.parent / "tests" / "plugin_selector.py")


@pytest.fixture(autouse=True)
def _unregister_plugin_selectors():
    """The plugin registers selectors in-process: take them out again for the other tests."""
    from calib.selectors import SELECTORS

    yield
    for name in ("median_gap", "needs_splits"):
        if name in SELECTORS:
            SELECTORS.unregister(name)


@pytest.mark.slow
def test_user_selector_runs_through_calib_run(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        *TINY,
        "finetune.iters_per_epoch=4",  # what is tested is the selector's way through calib-run
        "calibration=default",
        f"imports=[{PLUGIN}]",
        "calibration.selectors=[alg,median_gap]",
        "+calibration.options.median_gap.quantile=0.9",
        f"run_dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        cmd, cwd=CONF.parent, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert "fine-tuned + γ (median_gap)" in done.stdout
    # recomputed from the fine-tuning training logits of S, the data it declared
    train = torch.load(run_dir / "extract" / "finetuned_train.pt", weights_only=True)
    z, y = train["logits"].numpy().astype(np.float64), train["labels"].numpy()
    seen = results["meta"]["seen_classes"]
    absent = results["meta"]["absent_classes"]
    z = z[np.isin(y, seen)]
    want = np.quantile(z[:, seen].max(axis=1) - z[:, absent].max(axis=1), 0.9)
    assert results["calibrated"]["median_gap"]["gamma"] == pytest.approx(want, abs=1e-9)
    assert results["meta"]["selectors"]["median_gap"] == {
        "data": "finetune_train",
        "uses_absent_labels": False,
    }


def test_user_selector_whose_data_cannot_be_provided_is_refused(tmp_path):
    cfg = tiny_config(
        [
            "calibration=default",
            "calibration.pcv=null",  # (TINY sets calibration.pcv.num_splits)
            f"imports=[{PLUGIN}]",
            "calibration.selectors=[needs_splits]",
        ]
    )
    with pytest.raises(ConfigError, match="takes pseudo splits, but calibration.pcv is not set"):
        build_plan(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_user_selector_bad_parameter_is_refused(tmp_path):
    cfg = tiny_config(
        [
            "calibration=default",
            f"imports=[{PLUGIN}]",
            "calibration.selectors=[median_gap]",
            "+calibration.options.median_gap.quantile=2",
        ]
    )
    with pytest.raises(ConfigError, match=r"quantile must be a number in \[0, 1\], got 2"):
        build_plan(cfg, run_dir=tmp_path / "run")
