"""calib.models: the Classifier contract, the factory, and weight files."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from calib.models import (
    MODELS,
    Classifier,
    IncompatibleWeightsError,
    create_model,
    list_models,
    load_weights,
    make_data_config,
    read_state_dict,
    save_weights,
)

TIMM_NAME = "test_resnet"  # timm's tiny test architecture: classifier "fc", 96 features


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(model: Classifier, n: int = 3, size: int | None = None) -> torch.Tensor:
    c, h, w = model.data_config["input_size"]
    return torch.randn(n, c, size or h, size or w)


# --- Classifier contract, for every way of building one ---------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "size"),
    [
        ("digits_cnn", {}, None),
        ("digits_cnn", {"in_chans": 3}, None),
        ("efficientnet_lite0", {}, 32),
        (
            "clip_zero_shot",
            {"class_names": ["a", "b", "c", "d", "e"], "clip_model": "tiny-clip"},
            None,
        ),
        (TIMM_NAME, {}, 32),
    ],
)
def test_every_model_gives_features_and_logits_of_all_classes(name, kwargs, size):
    model = create_model(name, 5, **kwargs).eval()
    x = _images(model, size=size)
    with torch.no_grad():
        features, logits = model.forward_features_logits(x)
        assert features.shape == (3, model.num_features)
        assert logits.shape == (3, 5) == (3, model.num_classes)
        assert model.head.weight.shape == (5, model.num_features)
        torch.testing.assert_close(model.forward_features(x), features)
        torch.testing.assert_close(model(x), logits)
        torch.testing.assert_close(model.head(features), logits)
    assert torch.isfinite(logits).all()
    assert model.data_config["input_size"][0] == x.shape[1]
    assert len(model.data_config["mean"]) == len(model.data_config["std"]) == x.shape[1]


def test_registered_keys():
    assert {"digits_cnn", "efficientnet_lite0", "clip_zero_shot"} <= set(list_models())
    assert list_models() == MODELS.names()


def test_digits_cnn_defaults_to_one_channel_16px_and_has_no_pretrained_weights():
    model = create_model("digits_cnn", 10)
    assert model.data_config["input_size"] == (1, 16, 16)
    assert model.num_features == 128
    with pytest.raises(ValueError, match="no pre-trained weights"):
        create_model("digits_cnn", 10, pretrained=True)


def test_timm_fallthrough_gray_input_averages_the_rgb_normalisation():
    model = create_model(TIMM_NAME, 4, in_chans=1)
    rgb = create_model(TIMM_NAME, 4)
    assert model.data_config["input_size"][0] == 1
    assert model.data_config["mean"] == pytest.approx((sum(rgb.data_config["mean"]) / 3,))
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_unknown_model_and_bad_num_classes():
    with pytest.raises(KeyError, match="digits_cnn"):
        create_model("no_such_model_xyz", 3)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_classes"):
            create_model("digits_cnn", bad)


def test_param_groups_split_backbone_and_head():
    model = create_model("digits_cnn", 10)
    groups = model.param_groups(lr_backbone=1e-4, lr_head=1e-3, weight_decay=5e-4)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("backbone", 1e-4, 5e-4),
        ("head", 1e-3, 5e-4),
    ]
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert ids[0].isdisjoint(ids[1])
    assert ids[0] | ids[1] == {id(p) for p in model.parameters()}
    assert ids[1] == {id(model.head.weight), id(model.head.bias)}
    torch.optim.SGD(groups, lr=0.1)  # accepted by an optimizer as is

    for p in model.backbone_parameters():
        p.requires_grad_(False)
    assert [g["name"] for g in model.param_groups(1e-4, 1e-3)] == ["head"]


def test_classifier_rejects_a_non_linear_head_and_incomplete_data_config():
    cfg = make_data_config((1, 8, 8), (0.5,), (0.5,))
    with pytest.raises(TypeError, match="nn.Linear"):
        Classifier(nn.Flatten(), nn.Identity(), cfg)
    with pytest.raises(ValueError, match="std"):
        Classifier(nn.Flatten(), nn.Linear(64, 2), {"input_size": (1, 8, 8), "mean": (0.5,)})


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (((3, 8), (0.5,) * 3, (0.5,) * 3), {}, "input_size"),
        (((3, 8, 8), (0.5,), (0.5,) * 3), {}, "one value per channel"),
        (((1, 8, 8), (0.5,), (0.0,)), {}, "std must be positive"),
        (((1, 8, 8), (0.5,), (0.5,)), {"interpolation": "cubic"}, "interpolation"),
        (((1, 8, 8), (0.5,), (0.5,)), {"crop_pct": 1.5}, "crop_pct"),
    ],
)
def test_make_data_config_validates(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_data_config(*args, **kwargs)


# --- weights ---------------------------------------------------------------------------------


def test_saved_classifier_round_trips_through_weights(tmp_path):
    model = create_model("digits_cnn", 10)
    with torch.no_grad():  # move BN statistics away from their defaults so they must be loaded
        model.train()(torch.randn(8, 1, 16, 16))
    path = tmp_path / "ft.pth"
    save_weights(model, path)
    loaded = create_model("digits_cnn", 10, weights=path)
    x = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_missing_weights_file_is_named(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        create_model("digits_cnn", 10, weights=path)


def test_wrong_head_shape_names_the_key_and_both_shapes(tmp_path):
    path = tmp_path / "ten.pth"
    save_weights(create_model("digits_cnn", 10), path)
    with pytest.raises(IncompatibleWeightsError) as err:
        create_model("digits_cnn", 12, weights=path)
    message = str(err.value)
    assert str(path) in message
    assert "head.weight: file (10, 128) vs model (12, 128)" in message


def test_foreign_state_dict_names_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "digits.pth"
    save_weights(create_model("digits_cnn", 5), path)
    with pytest.raises(IncompatibleWeightsError) as err:
        create_model(TIMM_NAME, 5, weights=path)
    message = str(err.value)
    assert str(path) in message
    assert "missing from the file (backbone.conv1.0.weight" in message
    assert "unexpected keys (backbone.conv.0.weight" in message


def test_timm_backbone_file_with_matching_classifier_fills_the_head(tmp_path):
    import timm

    reference = timm.create_model(TIMM_NAME, num_classes=7).eval()
    path = tmp_path / "timm.pth"
    torch.save(reference.state_dict(), path)

    model = create_model(TIMM_NAME, 7, weights=path).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_timm_backbone_file_with_other_classifier_keeps_a_fresh_head(tmp_path):
    import timm

    reference = timm.create_model(TIMM_NAME, num_classes=7).eval()
    path = tmp_path / "timm.pth"
    torch.save(reference.state_dict(), path)

    fresh = create_model(TIMM_NAME, 3)
    head_before = fresh.head.weight.detach().clone()
    assert load_weights(fresh, path) is False
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
        torch.testing.assert_close(fresh.forward_features(x), expected)
    torch.testing.assert_close(fresh.head.weight, head_before)


def test_backbone_file_with_wrong_shape_names_the_key(tmp_path):
    import timm

    state = timm.create_model(TIMM_NAME, num_classes=7).state_dict()
    state["conv1.0.weight"] = state["conv1.0.weight"][:, :1]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(
        IncompatibleWeightsError,
        match=r"conv1\.0\.weight: file \(\d+, 1, 3, 3\) vs model \(\d+, 3, 3, 3\)",
    ):
        create_model(TIMM_NAME, 7, weights=path)


def test_wrapped_checkpoints_and_data_parallel_prefixes_are_unwrapped(tmp_path):
    model = create_model("digits_cnn", 4)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    assert read_state_dict(path).keys() == model.state_dict().keys()
    assert load_weights(create_model("digits_cnn", 4), path) is True

    torch.save({"epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}}, path)
    with pytest.raises(IncompatibleWeightsError, match="not a state dict"):
        read_state_dict(path)


def test_old_batchnorm_files_without_counters_load(tmp_path):
    model = create_model("digits_cnn", 4)
    state = {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    create_model("digits_cnn", 4, weights=path)


def test_state_dict_in_memory_is_accepted():
    source = create_model("digits_cnn", 4)
    target = create_model("digits_cnn", 4)
    load_weights(target, source.state_dict())
    torch.testing.assert_close(target.head.weight, source.head.weight)


def test_timm_pretrained_keeps_the_hub_classifier_when_it_fits(monkeypatch):
    import timm

    made = {}
    real_create = timm.create_model

    def offline_create(name, pretrained=False, **kwargs):  # stands in for the hub download
        model = real_create(name, pretrained=False, **kwargs)
        made.update(pretrained=pretrained, model=model, fc=model.get_classifier().weight.clone())
        return model

    monkeypatch.setattr(timm, "create_model", offline_create)
    model = create_model(TIMM_NAME, 1000, pretrained=True).eval()
    assert made["pretrained"] is True
    torch.testing.assert_close(model.head.weight, made["fc"])
    assert model.backbone is made["model"] and "fc.weight" not in model.backbone.state_dict()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), made["model"](x) @ made["fc"].T + model.head.bias)

    other = create_model(TIMM_NAME, 10, pretrained=True)  # another task: a fresh head
    assert other.head.weight.shape == (10, 96)
