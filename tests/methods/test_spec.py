"""The method registry: declarations, parameter checks, the data guard, the head option."""

from __future__ import annotations

import re

import pytest
import torch

from calib.methods import (
    METHODS,
    TRAINING_DATA,
    CosineHead,
    FinetuneContext,
    MethodSpec,
    register_method,
)
from calib.methods.params import integer
from tests.helpers_methods import SPLIT, dataset, make_context, pretrained
from tests.helpers_train import make_model

PAPER_KEYS = {
    "full",
    "frozen_head",
    "linear_probe",
    "lp_ft",
    "wise_ft",
    "distill_absent",
    "lora",
    "oracle_all",
}


def test_every_row_of_the_comparison_is_registered_and_declared():
    assert PAPER_KEYS <= set(METHODS.names())
    for key in PAPER_KEYS:
        spec = METHODS.get(key)
        assert isinstance(spec, MethodSpec) and spec.name == key
        assert spec.trains and spec.reference and spec.summary
        assert spec.data in TRAINING_DATA
        assert spec.uses_absent_data == (spec.data == "seen+absent")
        assert {"head", "head_scale", "head_scale_learnable"} <= set(spec.params)
        assert set(spec.checks) == set(spec.params)
        assert spec.check_params() == spec.check_params(dict(spec.params))
    # only the oracle touches U data
    assert [k for k in PAPER_KEYS if METHODS.get(k).uses_absent_data] == ["oracle_all"]
    assert METHODS.get("oracle_all").data == "seen+absent"
    assert METHODS.get("wise_ft").params["alpha"] == 0.5
    assert METHODS.get("linear_probe").trains == "head"
    assert METHODS.get("frozen_head").trains == "backbone"


def test_training_params_leave_out_what_is_applied_after_training(tmp_path):
    spec = METHODS.get("wise_ft")
    key = spec.training_params({"alpha": 0.2})
    assert "alpha" not in key and "alpha_grid" not in key and key["head"] == "linear"
    assert key == spec.training_params({"alpha": 0.9, "alpha_grid": [0, 1]})
    # and indeed: two α share one fine-tuning (the second run only loads it)
    calls = []
    spec.run(make_context(tmp_path, {"alpha": 0.2}, calls=calls))
    spec.run(make_context(tmp_path, {"alpha": 0.9}, calls=calls))
    done = tmp_path / "finetune" / "checkpoints" / "done"
    assert done.exists() and [t for t, _ in calls] == ["finetune", "finetune"]
    lora = METHODS.get("lora")  # no post-training parameter: the key is every parameter
    assert lora.training_params({"rank": 4}) == lora.check_params({"rank": 4})


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="fine-tuning method 'wise-fft'.*Did you mean 'wise_ft'"):
        METHODS.get("wise-fft")


@pytest.mark.parametrize(
    "key, params, names",
    [
        ("wise_ft", {"alpha": 1.5}, ("'alpha'", "1.5", r"\[0, 1\]")),
        ("wise_ft", {"alpha": True}, ("'alpha'", "True")),
        ("wise_ft", {"alpha_grid": [0.5, 0.2]}, ("'alpha_grid'", r"\[0.5, 0.2\]", "ascending")),
        ("wise_ft", {"alpah": 0.3}, ("no parameter 'alpah'", "0.3", "Did you mean 'alpha'")),
        ("lp_ft", {"probe_epochs": -1}, ("'probe_epochs'", "-1", ">= 0")),
        ("lp_ft", {"probe_epochs": 2.0}, ("'probe_epochs'", "2.0")),
        ("distill_absent", {"temperature": 0}, ("'temperature'", "got 0", "> 0")),
        ("distill_absent", {"weight": float("nan")}, ("'weight'", "nan")),
        ("lora", {"rank": 0}, ("'rank'", "got 0")),
        ("lora", {"dropout": 1.0}, ("'dropout'", "1.0")),
        ("lora", {"target_modules": "fc"}, ("'target_modules'", "'fc'")),
        ("lora", {"train_head": "false"}, ("'train_head'", "'false'")),
        ("full", {"head": "cos"}, ("'head'", "'cos'", "'cosine'")),
        ("full", {"head_scale": -2.0}, ("'head_scale'", "-2.0")),
    ],
)
def test_bad_parameters_are_named_with_their_value(key, params, names):
    with pytest.raises(ValueError, match=f"fine-tuning method '{key}'") as info:
        METHODS.get(key).check_params(params)
    for fragment in names:
        assert re.search(fragment, str(info.value)), (fragment, str(info.value))


def test_check_params_normalises_values():
    p = METHODS.get("wise_ft").check_params({"alpha": 1, "alpha_grid": [0, 0.5, 1]})
    assert p["alpha"] == 1.0 and isinstance(p["alpha"], float)
    assert p["alpha_grid"] == (0.0, 0.5, 1.0)
    p = METHODS.get("lora").check_params({"target_modules": ["backbone.0"]})
    assert p["target_modules"] == ("backbone.0",)
    assert METHODS.get("lp_ft").check_params({"probe_epochs": 0})["probe_epochs"] == 0


def test_run_validates_the_params_of_the_context(tmp_path):
    ctx = make_context(tmp_path, {"alpha": 2.0})
    with pytest.raises(ValueError, match="'alpha' must be a number in \\[0, 1\\], got 2.0"):
        METHODS.get("wise_ft").run(ctx)
    with pytest.raises(TypeError, match="FinetuneContext"):
        METHODS.get("full").run({"model": None})


def test_register_method_refuses_inconsistent_declarations():
    with pytest.raises(ValueError, match="data must be one of"):
        register_method("x_bad_data", trains="all", data="all")
    with pytest.raises(ValueError, match="contradicts"):
        register_method("x_bad_flag", trains="all", data="seen+absent")
    with pytest.raises(ValueError, match="every parameter needs one check"):
        register_method("x_no_check", trains="all", params={"k": 1})
    with pytest.raises(ValueError, match="shared head options"):
        register_method("x_head", trains="all", params={"head": 1}, checks={"head": integer()})
    with pytest.raises(ValueError, match="'k' must be an int >= 2, got 1"):
        register_method("x_bad_default", trains="all", params={"k": 1}, checks={"k": integer(2)})(
            lambda ctx: ctx.model
        )
    assert "x_bad_default" not in METHODS


def test_a_seen_method_refuses_absent_class_data(tmp_path):
    ctx = make_context(tmp_path, data=dataset(SPLIT.seen + SPLIT.absent))
    with pytest.raises(ValueError, match=r"'full' trains on the seen classes S only.*\[3, 4\]"):
        METHODS.get("full").run(ctx)
    assert not (tmp_path / "finetune").exists()  # refused before any training


def test_oracle_all_refuses_a_dataset_without_absent_samples(tmp_path):
    ctx = make_context(tmp_path, data=dataset(SPLIT.seen))
    with pytest.raises(ValueError, match="'oracle_all'.*no sample of the absent classes U"):
        METHODS.get("oracle_all").run(ctx)
    assert not (tmp_path / "finetune").exists()


def test_oracle_all_needs_readable_labels(tmp_path):
    class NoLabels(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(8), 0

    ctx = make_context(tmp_path, data=NoLabels())
    with pytest.raises(TypeError, match="'oracle_all'.*exposes no labels"):
        METHODS.get("oracle_all").run(ctx)


def test_oracle_all_trains_on_seen_and_absent_data(tmp_path):
    data = dataset(SPLIT.seen + SPLIT.absent)
    assert set(data.targets.tolist()) == {0, 1, 2, 3, 4}
    model = METHODS.get("oracle_all").run(make_context(tmp_path, data=data))
    assert isinstance(model, torch.nn.Module)


def test_cosine_head_option_applies_to_the_model_and_the_pretrained_reference(tmp_path):
    spec = METHODS.get("full")
    params = {"head": "cosine", "head_scale": 5.0, "head_scale_learnable": False}
    pre = pretrained()
    reference = spec.prepare(pretrained(), params)  # what the harness uses for the pre-trained row
    assert isinstance(reference.head, CosineHead) and float(reference.head.scale) == 5.0
    ctx = make_context(tmp_path, params, model=pre)
    prepared = spec.prepare_context(ctx)
    assert isinstance(prepared.model.head, CosineHead)
    assert isinstance(prepared.make_model().head, CosineHead)
    # the prepared pre-trained weights are those of the converted pre-trained model
    assert prepared.pretrained_state.keys() == reference.state_dict().keys()
    for k, v in reference.state_dict().items():
        assert torch.equal(prepared.pretrained_state[k], v), k
    # the harness may hand the converted weights as well
    ctx2 = make_context(tmp_path, params, model=spec.prepare(pretrained(), params))
    ctx2.pretrained_state = {k: v.clone() for k, v in reference.state_dict().items()}
    again = spec.prepare_context(ctx2)
    for k, v in reference.state_dict().items():
        assert torch.equal(again.pretrained_state[k], v), k


def test_run_thaws_what_a_method_froze(tmp_path):
    model = METHODS.get("linear_probe").run(make_context(tmp_path))
    assert all(p.requires_grad for p in model.parameters())
    frozen = make_model()
    frozen.backbone[0].bias.requires_grad_(False)  # frozen by the user: stays so
    model = METHODS.get("frozen_head").run(make_context(tmp_path / "b", model=frozen))
    assert not model.backbone[0].bias.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "backbone.0.bias")


def test_context_pretrained_model_is_a_fresh_copy(tmp_path):
    ctx = make_context(tmp_path)
    assert isinstance(ctx, FinetuneContext)
    ref = ctx.pretrained_model()
    assert ref is not ctx.model and not ref.training
    for k, v in ctx.model.state_dict().items():
        assert torch.equal(ref.state_dict()[k], v)
