"""Builders of the image-list benchmarks: Office-Home, ImageNet-R, ImageNet-Sketch, any image list.

Each builder checks that the dataset is on disk (:func:`~calib.data.check_layout`, every
listed file by default) and returns a :class:`~calib.data.Domain` whose ``train`` set has
the training transform and whose ``train_eval`` and ``test`` sets have the evaluation
transform (:func:`~calib.data.build_transform`).

The paper's train/test splits ship with the library (``calib/data/splits``) and are used by
default; ``list_dir`` points a builder at other lists with the same file names (for
example the trimmed lists of a fake root, :func:`~calib.data.make_fake_root`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from calib.data.domain import Domain
from calib.data.image_list import DatasetInfo, ImageListDataset, check_layout, read_image_list
from calib.data.registry import DATASETS
from calib.data.split import SPLITS_DIR, office_home_domain
from calib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform

__all__ = [
    "OFFICE_HOME_NUM_CLASSES",
    "IMAGENET_NUM_CLASSES",
    "benchmark_lists",
    "office_home_class_names",
    "imagenet_class_names",
    "office_home",
    "imagenet_r",
    "imagenet_s",
    "image_list",
]

OFFICE_HOME_NUM_CLASSES = 65
IMAGENET_NUM_CLASSES = 1000

# kind -> (folder of SPLITS_DIR, list-name prefix of each domain)
_LIST_FOLDERS = {"office_home": "OfficeHome", "imagenet_r": "ImageNet", "imagenet_s": "ImageNet"}
_IMAGENET_PREFIX = {"imagenet_r": "R", "imagenet_s": "S"}


def benchmark_lists(
    kind: str, domain: str | None = None, list_dir: str | os.PathLike | None = None
) -> tuple[Path, Path]:
    """The (training, testing) image lists of a benchmark.

    Args:
        kind: "office_home", "imagenet_r" or "imagenet_s".
        domain: Office-Home's domain (full or short name); unused for ImageNet-R/S.
        list_dir: folder holding the lists (default: the shipped paper lists). File names:
            ``<Domain>_{training,testing}.txt`` (Office-Home), ``{R,S}_{training,testing}.txt``.
    """
    if kind not in _LIST_FOLDERS:
        raise ValueError(f"unknown benchmark {kind!r}; known: {sorted(_LIST_FOLDERS)}")
    folder = Path(list_dir) if list_dir is not None else SPLITS_DIR / _LIST_FOLDERS[kind]
    if kind == "office_home":
        if domain is None:
            raise ValueError("Office-Home needs a domain: Art, Clipart, Product or Real_World")
        prefix = office_home_domain(domain)
    else:
        prefix = _IMAGENET_PREFIX[kind]
    return folder / f"{prefix}_training.txt", folder / f"{prefix}_testing.txt"


@lru_cache(maxsize=1)
def office_home_class_names() -> tuple[str, ...]:
    """Office-Home's 65 class names by label (the class folder of each line of the shipped lists)."""
    names: dict[int, str] = {}
    for lst in benchmark_lists("office_home", "Art"):
        for path, label in read_image_list(lst):
            names.setdefault(label, Path(path).parts[1])
    if sorted(names) != list(range(OFFICE_HOME_NUM_CLASSES)):
        raise RuntimeError("the shipped Office-Home lists do not cover labels 0..64")
    return tuple(names[i] for i in range(OFFICE_HOME_NUM_CLASSES))


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, from open_clip if importable, else ``class_<i>``."""
    try:
        from open_clip import IMAGENET_CLASSNAMES
    except ImportError:
        return tuple(f"class_{i}" for i in range(IMAGENET_NUM_CLASSES))
    return tuple(IMAGENET_CLASSNAMES)


class _LazyImageNetClassNames(Sequence[str]):
    """The ImageNet class names, loaded on first access (importing open_clip takes seconds)."""

    def __len__(self) -> int:
        return IMAGENET_NUM_CLASSES

    def __getitem__(self, index):  # type: ignore[override]
        return imagenet_class_names()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(imagenet_class_names())

    def __repr__(self) -> str:
        return f"<{IMAGENET_NUM_CLASSES} ImageNet class names>"


def _image_list_domain(
    root: str | os.PathLike,
    train_list: str | os.PathLike,
    test_list: str | os.PathLike,
    *,
    num_classes: int,
    class_names: Sequence[str],
    name: str,
    dataset: str | DatasetInfo,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: int | None,
    check_sample: int | None,
) -> Domain:
    check_layout(root, [train_list, test_list], dataset=dataset, sample=check_sample)
    eval_tf = build_transform(False, size, mean, std, resize)
    train = ImageListDataset(root, train_list, transform=build_transform(True, size, mean, std))
    train_eval = copy.copy(train)  # same samples (shared, read-only), evaluation transform
    train_eval.transform = eval_tf
    test = ImageListDataset(root, test_list, transform=eval_tf)
    return Domain(
        train=train,
        test=test,
        num_classes=num_classes,
        class_names=class_names,
        name=name,
        train_eval=train_eval,
    )


@DATASETS.register("office_home")
def office_home(
    root: str | os.PathLike,
    domain: str,
    *,
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int | None = None,
    list_dir: str | os.PathLike | None = None,
    check_sample: int | None = None,
) -> Domain:
    """One Office-Home domain (65 classes) with the paper's 7:3 per-class split.

    Args:
        root: folder holding ``Art/``, ``Clipart/``, ``Product/``, ``Real_World/``.
        domain: "Art", "Clipart", "Product", "Real_World" or "Ar", "Cl", "Pr", "Rw".
        size: crop size; ``resize`` the evaluation resize (default ``int(size / 0.875)``).
        mean, std: normalisation (default ImageNet's).
        list_dir: folder of ``<Domain>_{training,testing}.txt`` (default: the shipped lists).
        check_sample: check only this many files per list (default: all).
    """
    folder = office_home_domain(domain)
    train_list, test_list = benchmark_lists("office_home", folder, list_dir)
    return _image_list_domain(
        root,
        train_list,
        test_list,
        num_classes=OFFICE_HOME_NUM_CLASSES,
        class_names=office_home_class_names(),
        name=f"office_home/{folder}",
        dataset="office_home",
        size=size,
        mean=mean,
        std=std,
        resize=resize,
        check_sample=check_sample,
    )


def _imagenet_variant(kind: str, root, size, mean, std, resize, list_dir, check_sample) -> Domain:
    train_list, test_list = benchmark_lists(kind, list_dir=list_dir)
    return _image_list_domain(
        root,
        train_list,
        test_list,
        num_classes=IMAGENET_NUM_CLASSES,
        class_names=_LazyImageNetClassNames(),
        name=kind,
        dataset=kind,
        size=size,
        mean=mean,
        std=std,
        resize=resize,
        check_sample=check_sample,
    )


@DATASETS.register("imagenet_r")
def imagenet_r(
    root: str | os.PathLike,
    *,
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int | None = None,
    list_dir: str | os.PathLike | None = None,
    check_sample: int | None = None,
) -> Domain:
    """ImageNet-R (200 classes, labelled in the 1000-way ImageNet label space): 24,076 / 5,924.

    ``root`` holds ``imagenet-r/<wnid>/``. Other arguments as in :func:`office_home`.
    """
    return _imagenet_variant("imagenet_r", root, size, mean, std, resize, list_dir, check_sample)


@DATASETS.register("imagenet_s")
def imagenet_s(
    root: str | os.PathLike,
    *,
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int | None = None,
    list_dir: str | os.PathLike | None = None,
    check_sample: int | None = None,
) -> Domain:
    """ImageNet-Sketch (1000 classes): 40,889 / 10,000.

    ``root`` holds ``imagenet-s/<wnid>/``. Other arguments as in :func:`office_home`.
    """
    return _imagenet_variant("imagenet_s", root, size, mean, std, resize, list_dir, check_sample)


@DATASETS.register("image_list")
def image_list(
    root: str | os.PathLike,
    train_list: str | os.PathLike,
    test_list: str | os.PathLike,
    num_classes: int,
    *,
    class_names: Sequence[str] | None = None,
    name: str = "image_list",
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int | None = None,
    check_sample: int | None = None,
) -> Domain:
    """Any dataset given as a training and a test image list under ``root``.

    Args:
        root: the folder the list paths are relative to.
        train_list, test_list: image lists (``<relative path> <label>`` lines).
        num_classes: size of the label space (labels lie in ``[0, num_classes)``).
        class_names: ``num_classes`` names (default ``class_<i>``).
        name: the domain's name in logs and results.
        Other arguments as in :func:`office_home`.
    """
    if class_names is None:
        class_names = tuple(f"class_{i}" for i in range(num_classes))
    return _image_list_domain(
        root,
        train_list,
        test_list,
        num_classes=num_classes,
        class_names=tuple(class_names),
        name=name,
        dataset="image_list",
        size=size,
        mean=mean,
        std=std,
        resize=resize,
        check_sample=check_sample,
    )
