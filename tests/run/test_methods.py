"""Every fine-tuning method runs through the harness, with every selector after it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import calib
from calib.methods import METHODS
from calib.run import ConfigError, build_plan
from calib.run.identity import diff_leaves, flatten
from tests.helpers_run import tiny_config

# one epoch of fine-tuning, no PCV, no history: the method is what is tested
QUICK = ["calibration=default", "calibration.pcv=null", "eval.every_epochs=0"]
HAVE_PEFT = importlib.util.find_spec("peft") is not None


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_runs_with_every_selector(method, tmp_path):
    if method == "lora" and not HAVE_PEFT:
        pytest.skip("finetune.method=lora needs the optional extra calib[lora] (peft)")
    plan = build_plan(tiny_config([*QUICK, f"finetune.method={method}"]), run_dir=tmp_path)
    results = plan.run()
    meta = results["meta"]
    assert meta["method"] == method
    assert meta["uses_absent_data"] == (method == "oracle_all")
    assert list(results["calibrated"]) == ["alg", "prior", "oracle"]
    test = torch.load(tmp_path / "extract" / "finetuned_test.pt", weights_only=True)
    logits, labels = test["logits"].numpy(), test["labels"].numpy()
    for name, metrics in results["calibrated"].items():
        report = calib.accuracy_report(logits, labels, plan.split.seen, gamma=metrics["gamma"])
        assert metrics["acc_all"] == pytest.approx(report["acc_all"], abs=1e-12), name
    stages = json.loads((tmp_path / "stages.json").read_text())["stages"]
    assert stages["finetune"]["identity"]["method"]["name"] == method


def test_methods_key_their_stages(demo_run, tmp_path):
    plan, _, _ = demo_run
    other = build_plan(tiny_config(["finetune.method=frozen_head"]), run_dir=tmp_path)
    sa, sb = plan.stages(), other.stages()
    a, b = sa.keys(), sb.keys()
    changed = diff_leaves(flatten(sa.pretrained.identity), flatten(sb.pretrained.identity))
    assert a["source"] == b["source"], changed
    assert a["finetune"] != b["finetune"]
    assert a["extract/pretrained_test"] == b["extract/pretrained_test"]  # same starting model
    cosine = build_plan(
        tiny_config(["+finetune.method_options.head=cosine"]), run_dir=tmp_path / "c"
    )
    assert cosine.stages().keys()["extract/pretrained_test"] != a["extract/pretrained_test"]


def test_wise_ft_reports_its_alpha_tradeoff(tmp_path):
    cfg = tiny_config(
        [
            *QUICK,
            "finetune.method=wise_ft",
            "+finetune.method_options.alpha_grid=[0,0.5,1]",
            "eval.figures=true",  # alpha_tradeoff.png
        ]
    )
    results = build_plan(cfg, run_dir=tmp_path).run()
    curve = results["alpha_tradeoff"]
    assert curve["alpha"] == [0.0, 0.5, 1.0]
    for i, alpha in enumerate(curve["alpha"]):
        ex = torch.load(tmp_path / "extract" / f"alpha_{alpha:.4g}_test.pt", weights_only=True)
        report = calib.accuracy_report(ex["logits"].numpy(), ex["labels"].numpy(), [0, 1, 2, 3, 4])
        assert curve["acc_seen"][i] == pytest.approx(report["acc_seen"], abs=1e-12)
    # α = 0.5 (the default alpha) is the reported fine-tuned model
    half = torch.load(tmp_path / "extract" / "alpha_0.5_test.pt", weights_only=True)
    ft = torch.load(tmp_path / "extract" / "finetuned_test.pt", weights_only=True)
    assert torch.equal(half["logits"], ft["logits"])
    x, y = np.asarray(curve["acc_seen"]), np.asarray(curve["acc_absent"])
    assert curve["area"] == pytest.approx(abs(np.trapezoid(y, x)), abs=1e-12)
    assert (tmp_path / "alpha_tradeoff.png").read_bytes()[:4] == b"\x89PNG"


def test_pcv_pseudo_runs_use_the_method(tmp_path):
    cfg = tiny_config(["eval.every_epochs=0", "finetune.method=linear_probe"])
    build_plan(cfg, run_dir=tmp_path).run()
    stages = json.loads((tmp_path / "stages.json").read_text())["stages"]
    assert stages["pcv/split_0"]["identity"]["split"]["method"]["name"] == "linear_probe"
    # a linear probe leaves the backbone as pre-trained: so does each pseudo run
    source = stages["source"]
    entry = Path(source["cache"]) / "source" / source["key"] / "checkpoints" / "final.pt"
    pre = torch.load(entry, weights_only=True)
    pseudo = torch.load(
        tmp_path / "pcv" / "split_0" / "checkpoints" / "final.pt", weights_only=True
    )
    backbone = [k for k in pre if k.startswith("backbone.")]
    assert backbone and all(torch.equal(pre[k], pseudo[k]) for k in backbone)
    assert not torch.equal(pre["head.weight"], pseudo["head.weight"])


def test_oracle_all_without_absent_training_data_is_refused(demo_run):
    """The dry run refuses a method that declares S ∪ U data when the target has no U sample."""
    from torch.utils.data import Subset

    from calib.data import dataset_targets
    from calib.run.plan import _method
    from calib.run.settings import MethodConfig

    plan, _, _ = demo_run
    labels = dataset_targets(plan.target.train)
    only_seen = Subset(plan.target.train, np.flatnonzero(np.isin(labels, plan.split.seen)).tolist())
    fake = SimpleNamespace(
        method=MethodConfig("oracle_all"),
        target=SimpleNamespace(train=only_seen, name="digits (S only)"),
        split=plan.split,
        initial_model=plan.make_model,
    )
    with pytest.raises(ConfigError, match="no training sample of the absent classes U"):
        _method(fake)
    fake.target.train = plan.target.train
    _method(fake)  # with U samples: accepted


def test_a_method_whose_module_is_missing_is_refused_before_any_work(tmp_path):
    """A method declares the optional modules it imports (lora: peft); a missing one stops the
    run at plan time with the install hint, whatever the method is called."""
    from calib.methods import register_method

    @register_method("x_needs_missing_module", trains="all", requires={"no_such_mod": "x[y]"})
    def _needs_missing_module(ctx):
        raise AssertionError("never trained")

    try:
        cfg = tiny_config(["finetune.method=x_needs_missing_module"])
        with pytest.raises(ConfigError, match=r"needs no_such_mod.*pip install 'x\[y\]'"):
            build_plan(cfg, run_dir=tmp_path / "run")
        assert not (tmp_path / "run").exists()
    finally:
        METHODS.unregister("x_needs_missing_module")
    assert METHODS.get("lora").requires == {"peft": "calib[lora]"}
