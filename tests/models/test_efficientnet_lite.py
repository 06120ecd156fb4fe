"""The packaged ImageNet EfficientNet-Lite0 weights, renamed onto timm's tf_efficientnet_lite0."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import timm
import timm.data
import torch
from PIL import Image

from calib.models import create_model, efficientnet_lite0_state_dict, save_weights
from calib.models.efficientnet_lite import TIMM_NAME


@pytest.fixture(scope="module")
def timm_state():
    return timm.create_model(TIMM_NAME, pretrained=False).state_dict()


@pytest.fixture(scope="module")
def converted(timm_state):
    return efficientnet_lite0_state_dict(target=timm_state)


@pytest.fixture(scope="module")
def imagenet_model():
    return create_model("efficientnet_lite0", 1000, pretrained=True).eval()


def test_conversion_covers_every_timm_tensor_in_order(converted, timm_state):
    assert list(converted) == list(timm_state)
    for key, tensor in converted.items():
        assert tensor.shape == timm_state[key].shape, key
    assert converted["classifier.weight"].shape == (1000, 1280)
    # real weights, not the fresh initialisation
    assert not torch.equal(converted["conv_stem.weight"], timm_state["conv_stem.weight"])
    assert converted["bn2.running_var"].min() > 0


def test_conversion_refuses_a_different_tensor_count(timm_state):
    shorter = OrderedDict(list(timm_state.items())[:-1])
    with pytest.raises(ValueError, match="296 tensors, but tf_efficientnet_lite0 has 295"):
        efficientnet_lite0_state_dict(target=shorter)


def test_conversion_refuses_a_shape_mismatch_naming_both_keys(timm_state):
    changed = OrderedDict(timm_state)
    changed["conv_head.weight"] = torch.zeros(1280, 321, 1, 1)
    with pytest.raises(ValueError, match=r"'_conv_head\.weight'.*'conv_head\.weight'"):
        efficientnet_lite0_state_dict(target=changed)


def test_conversion_refuses_a_tensor_of_another_kind(timm_state):
    items = list(timm_state.items())
    items[1], items[2] = items[2], items[1]  # bn1.bias where bn1.weight should be
    with pytest.raises(ValueError, match=r"tensor #1 is '_bn0\.weight'.*'bias'"):
        efficientnet_lite0_state_dict(target=OrderedDict(items))


def test_pretrained_model_keeps_the_imagenet_head_and_round_trips(
    imagenet_model, converted, tmp_path
):
    torch.testing.assert_close(imagenet_model.head.weight, converted["classifier.weight"])
    torch.testing.assert_close(imagenet_model.head.bias, converted["classifier.bias"])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        logits = imagenet_model(x)
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()

    path = tmp_path / "lite0.pth"
    save_weights(imagenet_model, path)
    reloaded = create_model("efficientnet_lite0", 1000, weights=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), logits, rtol=0, atol=0)


def test_pretrained_backbone_with_a_new_head(converted):
    model = create_model("efficientnet_lite0", 65, pretrained=True)
    assert model.head.weight.shape == (65, 1280)
    torch.testing.assert_close(model.backbone.conv_stem.weight, converted["conv_stem.weight"])


def _sample_images() -> dict[str, Image.Image]:
    """Photos shipped inside installed dependencies (no download)."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = Image.open(fh).convert("RGB")
    return {
        "grace_hopper": hopper,
        "china": Image.fromarray(load_sample_image("china.jpg")),
        "flower": Image.fromarray(load_sample_image("flower.jpg")),
    }


def test_pretrained_model_recognises_real_photos(imagenet_model):
    # ImageNet classes: 652 military uniform (Grace Hopper's portrait), 698 palace (the
    # Chinese temple), 985 daisy (the flower). Chance of a hit in the top 5 is 0.5% each.
    expected = {"grace_hopper": 652, "china": 698, "flower": 985}
    transform = timm.data.create_transform(**imagenet_model.data_config)
    images = _sample_images()
    x = torch.stack([transform(images[name]) for name in expected])
    with torch.no_grad():
        top5 = imagenet_model(x).topk(5, dim=1).indices.numpy()
    hits = [label in row for label, row in zip(expected.values(), top5, strict=True)]
    assert all(hits), dict(zip(expected, top5.tolist(), strict=True))
    assert np.array_equal(top5[1:, 0], [698, 985])  # top-1 for the two unambiguous photos
