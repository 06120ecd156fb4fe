"""VTAB-1k tasks in the layout that parameter-efficient fine-tuning papers use (VPT, NOAH, ...).

One folder per task under the VTAB-1k root, each holding two image lists and the images::

    <root>/<task>/train800val200.txt    1,000 training images: "<relative path> <label>" lines
    <root>/<task>/test.txt              the task's test set, same format
    <root>/<task>/<relative path>       the images (e.g. images/...), relative to the task folder
    <root>/<task>/classnames.txt        optional: one class name a line, in label order

A CLIP zero-shot head needs a name for every class. Names of twelve tasks ship with calib
(``vtab_classnames.json``: :data:`VTAB_CLASS_NAMES_SHIPPED`); a ``classnames.txt`` in the
task folder overrides them and is required for the other tasks (sun397, ...). The number of
classes of a task is the number of its names.

The seen/absent split of the benchmark configs (``conf/experiment/vtab_*.yaml``) is
:meth:`ClassSplit.random(C, C // 2, seed=0) <calib.data.ClassSplit.random>`: the first half
of a fixed seeded permutation of the C classes is seen, the rest absent
(:func:`vtab_class_split`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from calib.data.benchmarks import _image_list_domain
from calib.data.domain import Domain
from calib.data.image_list import DATASET_INFO, check_layout
from calib.data.registry import DATASETS
from calib.data.split import ClassSplit
from calib.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "VTAB_TASKS",
    "VTAB_TRAIN_LIST",
    "VTAB_TEST_LIST",
    "VTAB_CLASS_NAMES_FILE",
    "VTAB_SPLIT_SEED",
    "vtab_task",
    "vtab_class_names",
    "vtab_class_split",
    "shipped_vtab_tasks",
    "vtab",
]

#: The 19 VTAB-1k tasks, by the folder names of the common VTAB-1k release.
VTAB_TASKS: tuple[str, ...] = (
    "caltech101",
    "cifar",
    "dtd",
    "oxford_flowers102",
    "oxford_iiit_pet",
    "svhn",
    "sun397",
    "patch_camelyon",
    "eurosat",
    "resisc45",
    "diabetic_retinopathy",
    "clevr_count",
    "clevr_dist",
    "dmlab",
    "kitti",
    "dsprites_loc",
    "dsprites_ori",
    "smallnorb_azi",
    "smallnorb_ele",
)
#: Other spellings of task names -> folder names.
_ALIASES = {
    "cifar100": "cifar",
    "cifar_100": "cifar",
    "flowers102": "oxford_flowers102",
    "flowers": "oxford_flowers102",
    "pets": "oxford_iiit_pet",
    "oxford_pets": "oxford_iiit_pet",
    "pcam": "patch_camelyon",
    "retinopathy": "diabetic_retinopathy",
    "sun": "sun397",
}
VTAB_TRAIN_LIST = "train800val200.txt"
VTAB_TEST_LIST = "test.txt"
VTAB_CLASS_NAMES_FILE = "classnames.txt"
#: Seed of the seen/absent permutation of the VTAB benchmark configs.
VTAB_SPLIT_SEED = 0

_SHIPPED_NAMES = Path(__file__).resolve().parent / "vtab_classnames.json"


def vtab_task(task: str) -> str:
    """The folder name of a VTAB-1k task, accepting common aliases ("cifar100", "pets", "pcam").

    Names that are not VTAB-1k tasks pass through unchanged (a user-made task folder).
    """
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"a VTAB task name is required, got {task!r}")
    key = task.strip().lower().replace("-", "_")
    return _ALIASES.get(key, key if key in VTAB_TASKS else task.strip())


@lru_cache(maxsize=1)
def _shipped() -> dict[str, tuple[str, ...]]:
    with open(_SHIPPED_NAMES, encoding="utf-8") as fh:
        data = json.load(fh)
    return {k: tuple(v) for k, v in data.items() if not k.startswith("_")}


def shipped_vtab_tasks() -> tuple[str, ...]:
    """The tasks whose class names ship with calib (no classnames.txt needed)."""
    return tuple(sorted(_shipped()))


def _read_names_file(path: Path) -> tuple[str, ...]:
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    names = tuple(n for n in names if n)
    if len(names) < 2:
        raise ValueError(f"{path} lists {len(names)} class name(s); a task needs at least 2")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{path} lists class name(s) {dup[:5]} more than once")
    return names


def vtab_class_names(task: str, root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The class names of a VTAB-1k task, in label order.

    ``<root>/<task>/classnames.txt`` (one name a line, blank lines skipped) wins when it
    exists; otherwise the names shipped with calib.

    Raises:
        ValueError: no names for the task (the message says where to put a classnames.txt),
            or a classnames.txt with duplicates or fewer than two names.
    """
    folder = vtab_task(task)
    if root is not None:
        path = Path(root) / folder / VTAB_CLASS_NAMES_FILE
        if path.is_file():
            return _read_names_file(path)
    shipped = _shipped()
    if folder in shipped:
        return shipped[folder]
    where = (
        (Path(root) / folder / VTAB_CLASS_NAMES_FILE) if root is not None else VTAB_CLASS_NAMES_FILE
    )
    raise ValueError(
        f"no class names for VTAB task {folder!r}: write them, one a line in label order, to "
        f"{where} (names ship with calib for: {', '.join(shipped_vtab_tasks())})"
    )


def vtab_class_split(num_classes: int, seed: int = VTAB_SPLIT_SEED) -> ClassSplit:
    """The benchmark's seen/absent split of a C-class task: ``ClassSplit.random(C, C // 2, seed=seed)``.

    Raises:
        ValueError: fewer than 4 classes. Pseudo cross-validation splits S into pseudo-seen
            and pseudo-absent classes, so S needs two classes, and so does U, to be a
            seen/absent benchmark (patch_camelyon, with 2 classes, is not one).
    """
    if num_classes < 4:
        raise ValueError(
            f"a task with {num_classes} classes cannot be split into seen and absent classes with "
            "at least 2 each (PCV splits the seen classes again); VTAB benchmark tasks need ≥ 4"
        )
    return ClassSplit.random(num_classes, num_classes // 2, seed=seed)


@DATASETS.register("vtab")
def vtab(
    root: str | os.PathLike,
    task: str,
    *,
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int | None = None,
    class_names: Sequence[str] | None = None,
    check_sample: int | None = None,
) -> Domain:
    """One VTAB-1k task: 1,000 training images (train800val200) and the task's test set.

    Args:
        root: the VTAB-1k folder holding one folder per task.
        task: the task's folder name (``caltech101``, ``cifar``, ``oxford_iiit_pet``, ...;
            aliases such as ``cifar100``, ``pets``, ``pcam`` are accepted).
        size: crop size; ``resize`` the evaluation resize (default ``int(size / 0.875)``;
            CLIP's preprocessing is ``resize = size``).
        mean, std: normalisation (default ImageNet's; CLIP models need CLIP's).
        class_names: names in label order; default :func:`vtab_class_names`.
        check_sample: check only this many files per list (default: all).

    Raises:
        DatasetNotFoundError: the task folder, a list or listed images are missing.
        ValueError: no class names for the task, or a label outside ``[0, len(class_names))``.
    """
    folder = vtab_task(task)
    task_dir = Path(root) / folder
    info = dataclasses.replace(DATASET_INFO["vtab"], title=f"VTAB-1k task {folder!r}")
    lists = [task_dir / VTAB_TRAIN_LIST, task_dir / VTAB_TEST_LIST]
    if not task_dir.is_dir():  # a missing download says so before anything asks for names
        check_layout(task_dir, lists, dataset=info)
    names = tuple(class_names) if class_names is not None else vtab_class_names(folder, root)
    return _image_list_domain(
        task_dir,
        *lists,
        num_classes=len(names),
        class_names=names,
        name=f"vtab/{folder}",
        dataset=info,
        size=size,
        mean=mean,
        std=std,
        resize=resize,
        check_sample=check_sample,
    )
