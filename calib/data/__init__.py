"""Data: class splits, domains, image-list datasets and the offline digits demo.

- :class:`ClassSplit`: seen classes S / absent classes U of a head (the paper's splits via
  :meth:`ClassSplit.from_benchmark`).
- :class:`Domain`: one domain's train / test sets and label space; every builder returns one.
- :data:`DATASETS`: registry of builders (``digits``, ``mnist5k``); :func:`build_domain`
  calls one by name.
- :class:`ImageListDataset`, :func:`check_layout`: datasets given by ``<path> <label>`` lists.
- :func:`class_subset`: the samples of some classes, chosen from the labels alone.
"""

from __future__ import annotations

from .digits import DIGITS_MEAN, DIGITS_STD, digits_domain, mnist5k_domain, prepare_digit_images
from .domain import Domain, dataset_targets
from .image_list import (
    DATASET_INFO,
    CorruptImageError,
    DatasetInfo,
    DatasetNotFoundError,
    ImageListDataset,
    check_layout,
    pil_rgb_loader,
    read_image_list,
)
from .registry import DATASETS, build_domain
from .split import SPLITS_DIR, ClassSplit, class_orders, office_home_domain
from .subset import class_subset
from .tensor_dataset import TensorImageDataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform

__all__ = [
    "ClassSplit",
    "Domain",
    "DATASETS",
    "build_domain",
    "dataset_targets",
    "class_subset",
    "ImageListDataset",
    "TensorImageDataset",
    "read_image_list",
    "check_layout",
    "pil_rgb_loader",
    "DatasetNotFoundError",
    "CorruptImageError",
    "DatasetInfo",
    "DATASET_INFO",
    "build_transform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "digits_domain",
    "mnist5k_domain",
    "prepare_digit_images",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "office_home_domain",
    "class_orders",
    "SPLITS_DIR",
]
