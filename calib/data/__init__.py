"""Data: class splits, domains and class subsets.

- :class:`ClassSplit`: seen classes S / absent classes U of a head (the paper's splits via
  :meth:`ClassSplit.from_benchmark`).
- :class:`Domain`: one domain's train / test sets and label space; every builder returns one.
- :data:`DATASETS`: registry of domain builders; :func:`build_domain` calls one by name.
- :func:`class_subset`: the samples of some classes, chosen from the labels alone.
"""

from __future__ import annotations

from .domain import Domain, dataset_targets
from .registry import DATASETS, build_domain
from .split import SPLITS_DIR, ClassSplit, class_orders, office_home_domain
from .subset import class_subset
from .tensor_dataset import TensorImageDataset

__all__ = [
    "ClassSplit",
    "Domain",
    "DATASETS",
    "build_domain",
    "dataset_targets",
    "class_subset",
    "TensorImageDataset",
    "office_home_domain",
    "class_orders",
    "SPLITS_DIR",
]
