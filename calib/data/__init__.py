"""Data: class splits, domains, image-list datasets, the offline digits demo and the benchmarks.

- :class:`ClassSplit`: seen classes S / absent classes U of a head (the paper's splits via
  :meth:`ClassSplit.from_benchmark`).
- :class:`Domain`: one domain's train / test sets and label space; every builder returns one.
- :data:`DATASETS`: registry of builders (``digits``, ``mnist5k``, ``fashion_mnist``, ``office_home``,
  ``imagenet_r``, ``imagenet_s``, ``vtab``, ``image_list``); :func:`build_domain` calls one by name.
- :class:`ImageListDataset`, :func:`check_layout`: datasets given by ``<path> <label>`` lists.
- :func:`class_subset`: the samples of some classes, chosen from the labels alone.
- :func:`make_fake_root`: tiny fake benchmark roots with the real layout, for tests.
"""

from __future__ import annotations

from calib.data.benchmarks import (
    IMAGENET_NUM_CLASSES,
    OFFICE_HOME_NUM_CLASSES,
    benchmark_lists,
    image_list,
    imagenet_class_names,
    imagenet_r,
    imagenet_s,
    office_home,
    office_home_class_names,
)
from calib.data.digits import (
    DIGITS_MEAN,
    DIGITS_STD,
    digits_domain,
    mnist5k_domain,
    prepare_digit_images,
)
from calib.data.domain import Domain, dataset_targets
from calib.data.fake import FakeRoot, default_fake_classes, make_fake_root
from calib.data.fashion import fashion_mnist_domain
from calib.data.image_list import (
    DATASET_INFO,
    CorruptImageError,
    DatasetInfo,
    DatasetNotFoundError,
    ImageListDataset,
    check_layout,
    pil_rgb_loader,
    read_image_list,
)
from calib.data.registry import DATASETS, build_domain
from calib.data.split import (
    OFFICE_HOME_DOMAINS,
    SPLITS_DIR,
    ClassSplit,
    class_orders,
    office_home_domain,
)
from calib.data.subset import class_subset
from calib.data.tensor_dataset import TensorImageDataset
from calib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform
from calib.data.vtab import (
    VTAB_TASKS,
    shipped_vtab_tasks,
    vtab,
    vtab_class_names,
    vtab_class_split,
    vtab_task,
)

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
    "fashion_mnist_domain",
    "mnist5k_domain",
    "prepare_digit_images",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "office_home",
    "imagenet_r",
    "imagenet_s",
    "image_list",
    "benchmark_lists",
    "office_home_class_names",
    "imagenet_class_names",
    "OFFICE_HOME_NUM_CLASSES",
    "IMAGENET_NUM_CLASSES",
    "office_home_domain",
    "OFFICE_HOME_DOMAINS",
    "class_orders",
    "SPLITS_DIR",
    "vtab",
    "vtab_class_names",
    "vtab_class_split",
    "vtab_task",
    "shipped_vtab_tasks",
    "VTAB_TASKS",
    "make_fake_root",
    "default_fake_classes",
    "FakeRoot",
]
