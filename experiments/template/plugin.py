"""Bring your own model and dataset to calib-run: a template to copy and edit.

    calib-run --config-dir experiments/template/conf imports=[experiments/template/plugin.py] \\
        experiment=my_experiment

It registers two things the config then names like the built-in ones:

* ``my_digits`` (a dataset): scikit-learn's 8×8 digits turned by 90° and noised, as the
  target domain. A dataset builder returns a :class:`calib.data.Domain`: train and test
  datasets whose labels are readable without loading the inputs (``.targets``), the number of
  classes, and their names.
* ``my_net`` (a model): :class:`MyNet`, a plain ``nn.Module`` whose forward ends with its linear
  layer ``fc``. :func:`calib.models.adapt_module` makes it calib's backbone + head without
  rewriting it; a checkpoint of ``MyNet`` itself (``features.*``, ``fc.*``) loads as it is with
  ``model.weights=PATH``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from calib.data import DATASETS, Domain, TensorImageDataset, prepare_digit_images
from calib.data.digits import DIGIT_CLASS_NAMES
from calib.data.stratified import stratified_split
from calib.models import MODELS, adapt_module, make_data_config


class MyNet(nn.Module):
    """Your model, as you wrote it: ``fc(features(x))``."""

    def __init__(self, in_chans: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def my_net(
    num_classes: int,
    *,
    pretrained: bool | str = False,
    in_chans: int = 1,
    img_size: int = 16,
    width: int = 32,
):
    """MyNet adapted: backbone = MyNet with ``fc`` replaced by identity, head = ``fc``."""
    if pretrained:
        raise ValueError("my_net has no pre-trained weights here; set model.weights=PATH")
    net = MyNet(in_chans, num_classes, width)
    mean = std = (0.5,) * in_chans
    config = make_data_config((in_chans, img_size, img_size), mean, std)
    return adapt_module(net, head="fc", data_config=config, name="my_net")


def my_digits(size: int = 16, noise: float = 0.1, seed: int = 0) -> Domain:
    """Digits turned by 90° with Gaussian pixel noise (std ``noise``), 60 % train / 40 % test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rot90(digits.images / 16.0, k=1, axes=(1, 2))
    rng = np.random.default_rng(seed)
    images = np.clip(images + rng.normal(0.0, noise, images.shape), 0.0, 1.0)
    labels = digits.target.astype(np.int64)
    train, test = stratified_split(labels, 0.4, seed)
    x = prepare_digit_images(images, size=size)
    return Domain(
        train=TensorImageDataset(x[train], labels[train]),
        test=TensorImageDataset(x[test], labels[test]),
        num_classes=10,
        class_names=DIGIT_CLASS_NAMES,
        name="my_digits",
    )


# registered once per process (a plugin may be imported again, e.g. by a sweep's jobs)
if "my_net" not in MODELS:
    MODELS.register("my_net")(my_net)
if "my_digits" not in DATASETS:
    DATASETS.register("my_digits")(my_digits)
