"""The run's corrections (calib.run.correction_stage) on the tiny demo's own extractions, pseudo
splits and fine-tuned head, captured from the pipeline; and the checks made before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from calib.run import build_plan, pipeline
from calib.run.correction_stage import (
    CORRECTIONS,
    check_corrections,
    correction_results,
    fit_corrections,
    linear_head,
)
from tests.helpers_run import tiny_config


@pytest.fixture(scope="module")
def captured(tmp_path_factory, request):
    """(plan, extractions, pseudo splits, fine-tuned model) of the tiny demo, as the pipeline
    hands them to its selectors (the session's finished demo folder: nothing is trained)."""
    plan, _, run_dir = request.getfixturevalue("demo_run")
    copy = tmp_path_factory.mktemp("corr") / "run"
    import shutil

    shutil.copytree(run_dir, copy)
    plan = build_plan(tiny_config(["eval.figures=true"]), run_dir=copy)
    seen: dict = {}
    mp = pytest.MonkeyPatch()
    fit_selectors, finetuned = pipeline._fit_selectors, pipeline._finetuned

    def spy_fit(runner, plan_, stages, ex, pseudo):
        seen["ex"], seen["pseudo"] = ex, pseudo
        return fit_selectors(runner, plan_, stages, ex, pseudo)

    def spy_ft(*args, **kwargs):
        seen["model"] = finetuned(*args, **kwargs)
        return seen["model"]

    mp.setattr(pipeline, "_fit_selectors", spy_fit)
    mp.setattr(pipeline, "_finetuned", spy_ft)
    try:
        plan.run()
    finally:
        mp.undo()
    return plan, seen["ex"], seen["pseudo"], seen["model"]


def test_every_correction_fits_from_its_declared_data(captured):
    plan, ex, pseudo, model = captured
    split = plan.split
    fitted = fit_corrections(list(CORRECTIONS), split, ex, pseudo, model)
    # wa: the ratio of the fine-tuned head's mean row norms, computed plainly
    w = model.head.weight.detach().double().numpy()
    norms = np.sqrt((w**2).sum(axis=1))
    expected = norms[list(split.seen)].mean() / norms[list(split.absent)].mean()
    assert fitted["wa"].ratio_ == pytest.approx(expected, rel=1e-12)
    # bic: fitted on the pseudo splits, whose rows hold no U label
    for s in pseudo:
        assert not np.isin(s.labels, split.absent).any()
    assert fitted["bic"].info_["n_samples"] == sum(len(s.labels) for s in pseudo)
    # gla: the prior of the pre-trained test logits (no labels)
    pre = ex["pretrained_test"].logits.double()
    prior = torch.softmax(pre, dim=1).mean(dim=0).numpy()
    np.testing.assert_allclose(np.exp(fitted["gla"].log_prior_), prior, rtol=1e-9)


def test_results_rows_are_the_accuracies_of_the_corrected_logits(captured):
    plan, ex, pseudo, model = captured
    split = plan.split
    fitted = fit_corrections(["wa", "bic", "gla"], split, ex, pseudo, model)
    rows = correction_results(fitted, ex, split)
    z = ex["finetuned_test"].logits.double().numpy()
    y = ex["finetuned_test"].labels.numpy()
    zp = ex["pretrained_test"].logits.double().numpy()
    u = list(split.absent)
    manual = {
        "wa": z.copy(),
        "bic": z.copy(),
        "gla": z + zp - fitted["gla"].log_prior_,
    }
    b = model.head.bias.detach().double().numpy()[u]
    manual["wa"][:, u] = fitted["wa"].ratio_ * (z[:, u] - b) + b
    manual["bic"][:, u] = fitted["bic"].alpha_ * z[:, u] + fitted["bic"].beta_
    is_seen = np.isin(y, split.seen)
    for name, corrected in manual.items():
        hit = corrected.argmax(axis=1) == y
        assert rows[name]["acc_all"] == pytest.approx(hit.mean(), abs=1e-12)
        assert rows[name]["acc_seen"] == pytest.approx(hit[is_seen].mean(), abs=1e-12)
        assert rows[name]["acc_absent"] == pytest.approx(hit[~is_seen].mean(), abs=1e-12)
        assert 0.0 <= rows[name]["ece"] <= 1.0 and 0.0 <= rows[name]["ausuc"] <= 1.0
        assert rows[name]["data"] == CORRECTIONS[name].data
    assert rows["gla"]["inference_cost"] == "second forward pass"
    assert rows["bic"]["temperature"] == fitted["bic"].temperature_ != 1.0


def test_checks_before_training():
    assert check_corrections(["wa", "gla"], has_pcv=False) == ("wa", "gla")
    with pytest.raises(ValueError, match="unknown correction 'wise'"):
        check_corrections(["wise"], has_pcv=True)
    with pytest.raises(ValueError, match="lists a correction twice"):
        check_corrections(["wa", "wa"], has_pcv=True)
    with pytest.raises(
        ValueError, match="'bic' is fitted on the PCV pseudo splits.*pcv is not set"
    ):
        check_corrections(["bic"], has_pcv=False)
    with pytest.raises(ValueError, match="must be a list of keys"):
        check_corrections("wa", has_pcv=True)


class _CosineHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, 2))

    def forward(self, x):
        return x @ self.weight.T


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = _CosineHead()


def test_a_model_without_linear_head_is_refused_naming_what_was_searched():
    with pytest.raises(
        ValueError,
        match=r"wa \(head\): no linear head in the model: searched _Model.head \(_CosineHead\)",
    ):
        check_corrections(["wa"], has_pcv=False, model=_Model())
    lin = nn.Linear(2, 3)
    holder = nn.Module()
    holder.get_classifier = lambda: lin
    assert linear_head(holder) is lin


def test_wa_refuses_a_method_with_another_head():
    with pytest.raises(
        ValueError, match=r"wa \(head\): the fine-tuning method replaces .* 'cosine'"
    ):
        check_corrections(["wa"], has_pcv=False, head="cosine")
    assert check_corrections(["bic"], has_pcv=True, head="cosine") == ("bic",)


def _hook_applied() -> bool:
    from calib.run.settings import CalibrationConfig

    return hasattr(CalibrationConfig(), "corrections")


@pytest.mark.skipif(not _hook_applied(), reason="request /tmp/requests/HD-1.md not applied yet")
def test_every_name_through_the_run(tmp_path):
    """calib-run's path: the tiny demo with calibration.corrections=[wa,bic,gla]."""
    import json

    cfg = tiny_config(["calibration.corrections=[wa,bic,gla]"])
    results = build_plan(cfg, run_dir=tmp_path / "run").run()
    assert set(results["corrected"]) == {"wa", "bic", "gla"}
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["corrected"]["bic"]["data"] == "pseudo_splits"
    table = (tmp_path / "run" / "results.md").read_text()
    assert all(f"fine-tuned + {name} (correction)" in table for name in ("wa", "bic", "gla"))
    for name, cls in (("wa", "WeightAligning"), ("bic", "BiasCorrection")):
        assert (
            json.loads((tmp_path / "run" / "corrections" / f"{name}.json").read_text())["format"]
            == f"calib.{cls}"
        )
    with pytest.raises(Exception, match="'bic' is fitted on the PCV pseudo splits"):
        build_plan(
            tiny_config(["calibration.corrections=[bic]", "calibration.pcv=null",
                         "calibration.selectors=[alg]"]),
            run_dir=tmp_path / "run2",
        )  # fmt: skip
