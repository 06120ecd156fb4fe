"""``fashion_mnist``: Fashion-MNIST with a built domain shift, from Debian's ``dataset-fashion-mnist``.

The package installs the four IDX files (``train-images-idx3-ubyte.gz``, ...) under
``/usr/share/datasets/fashion-mnist`` (:data:`FASHION_DIR`); nothing is downloaded. Two domains
with the same 10 classes, from disjoint images:

- ``domain="source"``: plain images. Train: the first ``source_per_class`` images of each class
  in the first half of the 60,000 training images (default 600 → 6,000); test: the first
  ``source_test_per_class`` of each class of the 10,000 test images (default 100 → 1,000).
- ``domain="target"``: the shifted domain. Train: the first ``target_per_class`` images of each
  class in the second half of the training images (default 100 → 1,000); test: all 10,000
  test images (the larger test set). The shift: every image rotated by ``quarter_turns`` × 90°
  (counter-clockwise, exact: :func:`numpy.rot90`; default 1), then Gaussian pixel noise of
  standard deviation ``noise`` (default 0.2, on [0, 1] grey levels; seeded per domain split, so
  the same each run), clipped to [0, 1].

Both are then resized to ``size × size``, normalised with mean = std = 0.5 and given 1 or 3
channels, as the digits domains (:func:`calib.data.digits.prepare_digit_images`).
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from calib.data.digits import DIGITS_MEAN, DIGITS_STD, prepare_digit_images
from calib.data.domain import Domain
from calib.data.image_list import DatasetNotFoundError
from calib.data.registry import DATASETS
from calib.data.tensor_dataset import TensorImageDataset

__all__ = [
    "FASHION_DIR",
    "FASHION_FILES",
    "FASHION_CLASS_NAMES",
    "fashion_mnist_domain",
    "make_fake_fashion_root",
    "read_idx",
    "shift_images",
    "write_idx",
]

#: Where Debian's ``dataset-fashion-mnist`` installs the files.
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
#: (images, labels) file names of the training and test sets.
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_NOISE_SEEDS = {"train": 1, "test": 2}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzip or plain) as a uint8 array: (N, H, W) images or (N,) labels.

    Raises:
        ValueError: not an unsigned-byte IDX file, or its size disagrees with its header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4]!r})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: the header says {dims} ({expected} bytes), the file holds "
            f"{len(data) - offset}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array (images (N, H, W) or labels (N,)) as a gzip IDX file: the format
    :func:`read_idx` reads (for tests and fake roots)."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        if a.min(initial=0) < 0 or a.max(initial=0) > 255:
            raise ValueError("write_idx: values must lie in 0..255")
        a = a.astype(np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + a.tobytes())


def make_fake_fashion_root(
    root: str | os.PathLike, n_train: int = 40, n_test: int = 20, seed: int = 0
) -> Path:
    """A folder with the four Fashion-MNIST IDX files of random 28 × 28 images, labels cycling
    over the 10 classes (``n_train`` and ``n_test`` images): enough to build the domains in tests
    without the Debian package. Returns the folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for part, n in (("train", n_train), ("test", n_test)):
        write_idx(root / FASHION_FILES[part][0], rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / FASHION_FILES[part][1], (np.arange(n) % 10).astype(np.uint8))
    return root


@lru_cache(maxsize=2)
def _raw(root: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = FASHION_FILES[part]
    missing = [n for n in (images_name, labels_name) if not (Path(root) / n).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"fashion_mnist: {', '.join(missing)} not found in {root}: install the Debian "
            f"package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or pass "
            "root= a folder with the four IDX files"
        )
    images = read_idx(Path(root) / images_name)
    labels = read_idx(Path(root) / labels_name).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"fashion_mnist: {root} holds {images.shape} images, {labels.shape} labels"
        )
    return images, labels


def _first_per_class(labels: np.ndarray, rows: np.ndarray, per_class: int | None) -> np.ndarray:
    """The first ``per_class`` of ``rows`` of every class (all of them: None), in row order."""
    if per_class is None:
        return rows
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per-class counts must be integers >= 1 or null, got {per_class!r}")
    keep = np.concatenate([rows[labels[rows] == c][:per_class] for c in range(10)])
    return np.sort(keep)


def shift_images(images: np.ndarray, noise: float, seed: int, quarter_turns: int = 1) -> np.ndarray:
    """The target shift of grey images in [0, 1] (N, H, W): rotated by ``quarter_turns`` × 90°
    counter-clockwise, plus Gaussian noise of standard deviation ``noise`` (a generator seeded
    with ``seed``), clipped to [0, 1]."""
    rotated = np.rot90(images, k=quarter_turns, axes=(1, 2))
    rng = np.random.default_rng(seed)
    noisy = rotated + rng.normal(0.0, noise, size=rotated.shape) if noise > 0 else rotated
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


@DATASETS.register("fashion_mnist")
def fashion_mnist_domain(
    domain: str = "target",
    root: str | os.PathLike | None = None,
    size: int = 16,
    channels: int = 1,
    noise: float = 0.2,
    quarter_turns: int = 1,
    source_per_class: int | None = 600,
    source_test_per_class: int | None = 100,
    target_per_class: int | None = 100,
    mean: float = DIGITS_MEAN,
    std: float = DIGITS_STD,
) -> Domain:
    """One Fashion-MNIST domain (module docstring): ``"source"`` (plain) or ``"target"``
    (rotated + noised), from the files under ``root`` (default :data:`FASHION_DIR`).

    Raises:
        DatasetNotFoundError: the files are missing (names the Debian package).
        ValueError: an unknown ``domain``, a negative ``noise``, bad per-class counts.
    """
    if domain not in ("source", "target"):
        raise ValueError(f"fashion_mnist: domain must be 'source' or 'target', got {domain!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"fashion_mnist: noise must be a number >= 0, got {noise!r}")
    if isinstance(quarter_turns, bool) or quarter_turns not in (0, 1, 2, 3):
        raise ValueError(
            f"fashion_mnist: quarter_turns must be 0, 1, 2 or 3, got {quarter_turns!r}"
        )
    root = str(root if root is not None else FASHION_DIR)
    train_x, train_y = _raw(root, "train")
    test_x, test_y = _raw(root, "test")
    half = train_y.size // 2
    if domain == "source":
        train_rows = _first_per_class(train_y, np.arange(half), source_per_class)
        test_rows = _first_per_class(test_y, np.arange(test_y.size), source_test_per_class)
    else:
        train_rows = _first_per_class(train_y, np.arange(half, train_y.size), target_per_class)
        test_rows = np.arange(test_y.size)
    parts = {}
    for part, x, y, rows in (
        ("train", train_x, train_y, train_rows),
        ("test", test_x, test_y, test_rows),
    ):
        grey = x[rows].astype(np.float32) / 255.0
        if domain == "target":
            grey = shift_images(grey, float(noise), _NOISE_SEEDS[part], quarter_turns)
        images = prepare_digit_images(grey, size=size, channels=channels, mean=mean, std=std)
        parts[part] = TensorImageDataset(images, y[rows])
    return Domain(
        train=parts["train"],
        test=parts["test"],
        num_classes=10,
        class_names=FASHION_CLASS_NAMES,
        name=f"fashion_mnist_{domain}",
    )
