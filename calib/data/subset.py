"""Class subsets of a dataset, chosen from its labels alone (no input is loaded)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from torch.utils.data import Dataset, Subset

from calib.data.domain import dataset_targets

__all__ = ["class_subset"]


def class_subset(dataset: Dataset, classes: Iterable[int], require_all: bool = True) -> Subset:
    """The samples of ``dataset`` whose label is in ``classes``, in dataset order.

    Args:
        dataset: a dataset exposing ``.targets`` (or a Subset/ConcatDataset of such).
        classes: the labels to keep.
        require_all: raise if a requested class has no sample (default); otherwise such
            classes are simply absent from the subset.

    Raises:
        ValueError: no classes requested; or, with ``require_all``, classes without a sample.
        TypeError: the dataset does not expose its labels.
    """
    wanted = np.unique(np.asarray(list(classes), dtype=np.int64))
    if wanted.size == 0:
        raise ValueError("class_subset needs at least one class")
    targets = dataset_targets(dataset)
    if require_all:
        empty = np.setdiff1d(wanted, targets)
        if empty.size:
            raise ValueError(
                f"{empty.size} requested class(es) have no sample in {type(dataset).__name__} "
                f"of {len(targets)} samples: {empty[:20].tolist()}{' ...' if empty.size > 20 else ''}"
            )
    return Subset(dataset, np.flatnonzero(np.isin(targets, wanted)).tolist())
