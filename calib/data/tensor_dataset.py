"""An in-memory image dataset: a tensor of images and their labels."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["TensorImageDataset"]


class TensorImageDataset(Dataset):
    """Images held in memory; items are ``(image, label)`` with ``image`` of shape ``(C, H, W)``.

    Args:
        images: float tensor of shape ``(N, C, H, W)``.
        targets: ``N`` integer labels.

    Attributes:
        images: the image tensor.
        targets: the labels, an int64 numpy array of shape ``(N,)``.
    """

    def __init__(self, images: torch.Tensor, targets: np.ndarray) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        targets = np.asarray(targets)
        if not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(f"targets must be integers, got dtype {targets.dtype}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but targets of shape {targets.shape}")
        self.images = images
        self.targets = targets.astype(np.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])

    def __repr__(self) -> str:
        return f"TensorImageDataset(n={len(self)}, image_shape={tuple(self.images.shape[1:])})"
