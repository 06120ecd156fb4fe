"""class_subset and dataset_targets: labels only, through Subset and ConcatDataset; Domain checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from calib.data import Domain, TensorImageDataset, class_subset, dataset_targets


class _NoLoad(Dataset):
    """A dataset whose items must not be touched: only its labels are read."""

    def __init__(self, targets):
        self.targets = np.asarray(targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        raise AssertionError("class_subset loaded an item")


def test_class_subset_keeps_order_without_loading():
    data = _NoLoad([2, 0, 1, 2, 3, 0])
    sub = class_subset(data, [2, 0])
    assert sub.indices == [0, 1, 3, 5]
    assert dataset_targets(sub).tolist() == [2, 0, 2, 0]


def test_class_subset_of_subset_and_concat():
    a, b = _NoLoad([0, 1, 2]), _NoLoad([2, 2, 1])
    concat = ConcatDataset([a, b])
    assert dataset_targets(concat).tolist() == [0, 1, 2, 2, 2, 1]
    inner = Subset(concat, [5, 4, 0])
    sub = class_subset(inner, np.array([1]))
    assert sub.indices == [0] and dataset_targets(sub).tolist() == [1]


def test_class_subset_missing_class():
    data = _NoLoad([0, 1, 1])
    with pytest.raises(ValueError, match=r"1 requested class\(es\) have no sample.*\[7\]"):
        class_subset(data, [1, 7])
    assert class_subset(data, [1, 7], require_all=False).indices == [1, 2]
    with pytest.raises(ValueError, match="at least one class"):
        class_subset(data, [])


def test_dataset_targets_needs_labels():
    with pytest.raises(TypeError, match="has no .targets"):
        dataset_targets(torch.utils.data.TensorDataset(torch.zeros(3)))
    data = _NoLoad([])
    data.targets = torch.tensor([3, 1])
    assert dataset_targets(data).dtype == np.int64


def test_tensor_image_dataset():
    data = TensorImageDataset(torch.zeros(4, 1, 2, 2), np.array([0, 1, 1, 0], dtype=np.int32))
    x, y = data[2]
    assert x.shape == (1, 2, 2) and y == 1 and type(y) is int and data.targets.dtype == np.int64
    with pytest.raises(ValueError, match="targets of shape"):
        TensorImageDataset(torch.zeros(4, 1, 2, 2), np.zeros(3, dtype=int))
    with pytest.raises(TypeError, match="integers"):
        TensorImageDataset(torch.zeros(2, 1, 2, 2), np.zeros(2))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        TensorImageDataset(torch.zeros(2, 2, 2), np.zeros(2, dtype=int))


def test_domain_validates_labels_and_names():
    train, test = _NoLoad([0, 1]), _NoLoad([1, 2])
    dom = Domain(train, test, num_classes=3, class_names=("a", "b", "c"), name="toy")
    assert dom.train_eval is train
    with pytest.raises(ValueError, match=r"toy test: label\(s\) \[2\] outside \[0, 2\)"):
        Domain(train, test, num_classes=2, class_names=("a", "b"), name="toy")
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        Domain(train, test, num_classes=3, class_names=("a", "b"), name="toy")
