"""``eval.average``: the run's report class-balanced (macro) or per sample (micro), recomputed
from the cached stages (it keys no stage; calib.run.identity.REPORT_KEYS)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import calib
from calib.run import build_plan
from tests.helpers_run import tiny_config


@pytest.mark.slow
def test_a_macro_run_reports_class_balanced_accuracies_from_the_same_stages(tmp_path):
    run_dir = tmp_path / "run"
    macro = build_plan(tiny_config(["eval.average=macro"]), run_dir=run_dir).run()
    seen = macro["meta"]["seen_classes"]
    test = torch.load(run_dir / "extract" / "finetuned_test.pt", weights_only=True)
    z, y = test["logits"].numpy(), test["labels"].numpy()
    want = calib.accuracy_report(z, y, seen, average="macro")
    assert macro["meta"]["average"] == "macro"
    for key in ("acc_all", "acc_seen", "acc_absent"):
        assert macro["finetuned"][key] == pytest.approx(want[key], rel=1e-12), key
    # class-balanced is another number than per sample on this (unbalanced) test set
    assert macro["finetuned"]["acc_all"] != pytest.approx(
        calib.accuracy_report(z, y, seen)["acc_all"], rel=1e-9
    )
    assert "class-balanced accuracies" in (run_dir / "results.md").read_text()
    checkpoint = run_dir / "finetune" / "checkpoints" / "final.pt"
    trained_at = checkpoint.stat().st_mtime_ns

    micro = build_plan(tiny_config(["eval.average=micro"]), run_dir=run_dir).run()
    assert checkpoint.stat().st_mtime_ns == trained_at  # nothing retrained: no stage changed
    assert micro["meta"]["average"] == "micro"
    assert micro["finetuned"]["acc_all"] == pytest.approx(
        calib.accuracy_report(z, y, seen)["acc_all"], rel=1e-12
    )
    gamma = micro["calibrated"]["alg"]["gamma"]
    assert gamma == macro["calibrated"]["alg"]["gamma"]  # the same fitted selector
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["meta"]["average"] == "micro" and np.isfinite(gamma)
