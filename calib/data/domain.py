"""A domain: the train and test sets of one data distribution over a fixed label space.

Every dataset builder (the offline digits, Office-Home, ImageNet-R/S, generic image lists)
returns a :class:`Domain`. Its datasets expose ``.targets`` (integer labels, read without
loading any input), which is what class subsets and the pipeline use.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Subset

__all__ = ["Domain", "dataset_targets"]


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The labels of ``dataset`` as an int64 array, without loading any input.

    Reads ``dataset.targets``; looks through :class:`~torch.utils.data.Subset` and
    :class:`~torch.utils.data.ConcatDataset`.

    Raises:
        TypeError: the dataset does not expose its labels.
    """
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, ConcatDataset):
        return np.concatenate([dataset_targets(d) for d in dataset.datasets])
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise TypeError(
            f"{type(dataset).__name__} has no .targets; calib needs the labels without loading inputs"
        )
    if hasattr(targets, "numpy"):  # torch tensor
        targets = targets.detach().cpu().numpy()
    return np.asarray(targets, dtype=np.int64)


@dataclass(frozen=True)
class Domain:
    """One domain's datasets and label space.

    Attributes:
        train: training set, with the training (augmenting) transform.
        test: test set, with the evaluation transform.
        num_classes: size of the label space = number of output columns of the head. Labels
            lie in ``[0, num_classes)``; a domain may have samples of only some classes
            (ImageNet-R: 200 of 1000).
        class_names: ``num_classes`` names, index = label.
        name: a short name for logs and results ("digits", "office_home/Clipart", ...).
        train_eval: the training samples with the evaluation transform (for extracting
            logits and features); defaults to ``train`` (domains without augmentation).

    Raises:
        ValueError: ``class_names`` of the wrong length, or a dataset label outside the label space.
    """

    train: Dataset
    test: Dataset
    num_classes: int
    class_names: Sequence[str]
    name: str
    train_eval: Dataset | None = None

    def __post_init__(self) -> None:
        num_classes = operator.index(self.num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
        object.__setattr__(self, "num_classes", num_classes)
        if self.train_eval is None:
            object.__setattr__(self, "train_eval", self.train)
        if len(self.class_names) != num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {num_classes} classes"
            )
        for split in ("train", "test", "train_eval"):
            targets = dataset_targets(getattr(self, split))
            if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
                bad = np.unique(targets[(targets < 0) | (targets >= num_classes)])
                raise ValueError(
                    f"{self.name} {split}: label(s) {bad[:10].tolist()} outside [0, {num_classes})"
                )

    def __repr__(self) -> str:
        return (
            f"Domain({self.name!r}, num_classes={self.num_classes}, train={len(self.train)}, "
            f"test={len(self.test)})"
        )
