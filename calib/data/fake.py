"""Tiny fake copies of the benchmark datasets, with the real layout, for tests and smoke runs.

:func:`make_fake_root` takes the first ``n_per_class`` lines of a few classes from each of
the shipped image lists, writes a small random image at each listed path (JPEG or PNG by
the file's extension) and writes those lines, unchanged, as trimmed lists with the
shipped file names under ``<root>/lists``. The same builder a user calls then reads it::

    fake = make_fake_root("office_home", tmp_path)
    domain = office_home(domain="Clipart", size=32, **fake.builder_kwargs)

VTAB-1k ships no lists: its fake writes ``<root>/<task>/{train800val200,test}.txt`` with
``images/<list>/<n>.jpg <label>`` lines for every class of the task (by its shipped class
names) and the images they name::

    fake = make_fake_root("vtab", tmp_path, tasks=["dtd"])
    domain = vtab(task="dtd", size=32, **fake.builder_kwargs)

Trimmed lists (rather than filters on the shipped lists) keep the builders' contract
simple: a domain is exactly its two lists, and the fake data cannot drift from the real
format because its lines are the real lines. Each image is a class-dependent colour plus
noise, so a model can learn something from it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from calib.data.benchmarks import benchmark_lists
from calib.data.image_list import read_image_list
from calib.data.split import OFFICE_HOME_DOMAINS, ClassSplit, office_home_domain
from calib.data.vtab import (
    VTAB_TEST_LIST,
    VTAB_TRAIN_LIST,
    shipped_vtab_tasks,
    vtab_class_names,
    vtab_task,
)

__all__ = ["FakeRoot", "make_fake_root", "default_fake_classes", "FAKE_KINDS"]

FAKE_KINDS = ("office_home", "imagenet_r", "imagenet_s", "vtab")


@dataclass(frozen=True)
class FakeRoot:
    """Where :func:`make_fake_root` wrote a fake dataset.

    Attributes:
        kind: the benchmark it imitates.
        root: the dataset root (pass as ``root=`` to the builder).
        list_dir: the trimmed image lists (pass as ``list_dir=`` to the builder); for VTAB,
            whose lists live in the task folders, the root.
        classes: the labels that have images, sorted (VTAB: of the last task written).
        num_images: images written.
    """

    kind: str
    root: Path
    list_dir: Path
    classes: tuple[int, ...]
    num_images: int

    @property
    def builder_kwargs(self) -> dict[str, str]:
        """``{"root": ..., "list_dir": ...}`` for the benchmark's builder (VTAB: ``{"root": ...}``)."""
        if self.kind == "vtab":
            return {"root": str(self.root)}
        return {"root": str(self.root), "list_dir": str(self.list_dir)}


def default_fake_classes(kind: str, per_group: int = 2) -> tuple[int, ...]:
    """``per_group`` seen and ``per_group`` absent classes of the paper's split of ``kind``.

    For Office-Home, classes that are seen (resp. absent) under both source orders (Ar and
    Rw), so that a fake root serves every pair of the paper.
    """
    if kind == "office_home":
        splits = [ClassSplit.from_benchmark(kind, source) for source in ("Ar", "Rw")]
        seen = sorted(set(splits[0].seen) & set(splits[1].seen))
        absent = sorted(set(splits[0].absent) & set(splits[1].absent))
    else:
        split = ClassSplit.from_benchmark(kind)
        seen, absent = list(split.seen), list(split.absent)
    return tuple(sorted(seen[:per_group] + absent[:per_group]))


def make_fake_root(
    kind: str,
    root: str | os.PathLike,
    n_per_class: int = 2,
    classes: Sequence[int] | None = None,
    size: int = 32,
    seed: int = 0,
    domains: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> FakeRoot:
    """Write a tiny fake ``kind`` dataset under ``root`` in the benchmark's exact layout.

    Args:
        kind: "office_home", "imagenet_r", "imagenet_s" or "vtab".
        root: folder to write into (created if needed).
        n_per_class: images per class in each list (training and testing), the first ones
            of the shipped list.
        classes: labels to include (default :func:`default_fake_classes`: two seen and two
            absent classes of the paper's split; VTAB: every class of the task).
        size: image side in pixels.
        seed: seed of the image pixels.
        domains: Office-Home domains to write (default all four).
        tasks: VTAB tasks to write (default: every task whose class names ship with calib).

    Raises:
        ValueError: unknown kind, ``n_per_class < 1``, or a class without images in a list.
    """
    if kind not in FAKE_KINDS:
        raise ValueError(f"no fake root for {kind!r}; known: {', '.join(FAKE_KINDS)}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be ≥ 1, got {n_per_class}")
    if kind == "vtab":
        return _make_fake_vtab(Path(root), n_per_class, classes, size, seed, tasks)
    classes = tuple(
        sorted({int(c) for c in (default_fake_classes(kind) if classes is None else classes)})
    )
    if not classes:
        raise ValueError("classes is empty")
    if kind == "office_home":
        names = OFFICE_HOME_DOMAINS if domains is None else [office_home_domain(d) for d in domains]
        lists = [lst for d in names for lst in benchmark_lists(kind, d)]
    else:
        lists = list(benchmark_lists(kind))

    root = Path(root)
    list_dir = root / "lists"
    list_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    num_images = 0
    for lst in lists:
        lines = _first_lines_per_class(lst, classes, n_per_class)
        for rel, label in lines:
            _write_image(root / rel, label, size, rng)
        (list_dir / lst.name).write_text(
            "".join(f"{rel} {label}\n" for rel, label in lines), encoding="utf-8"
        )
        num_images += len(lines)
    return FakeRoot(kind=kind, root=root, list_dir=list_dir, classes=classes, num_images=num_images)


def _make_fake_vtab(
    root: Path,
    n_per_class: int,
    classes: Sequence[int] | None,
    size: int,
    seed: int,
    tasks: Sequence[str] | None,
) -> FakeRoot:
    """VTAB-1k task folders with made-up lists (``images/<list>/<n>.jpg <label>``) and images."""
    rng = np.random.default_rng(seed)
    num_images, written = 0, ()
    for task in shipped_vtab_tasks() if tasks is None else tasks:
        folder = vtab_task(task)
        num_classes = len(vtab_class_names(folder))
        written = tuple(range(num_classes)) if classes is None else tuple(sorted(set(classes)))
        if not written or written[0] < 0 or written[-1] >= num_classes:
            raise ValueError(f"classes must be non-empty labels of {folder} in [0, {num_classes})")
        for list_name in (VTAB_TRAIN_LIST, VTAB_TEST_LIST):
            stem = Path(list_name).stem
            lines = [
                (f"images/{stem}/{i:06d}.jpg", label)
                for i, label in enumerate(c for c in written for _ in range(n_per_class))
            ]
            for rel, label in lines:
                _write_image(root / folder / rel, label, size, rng)
            (root / folder / list_name).write_text(
                "".join(f"{rel} {label}\n" for rel, label in lines), encoding="utf-8"
            )
            num_images += len(lines)
    return FakeRoot(kind="vtab", root=root, list_dir=root, classes=written, num_images=num_images)


def _first_lines_per_class(
    list_file: Path, classes: tuple[int, ...], n_per_class: int
) -> list[tuple[str, int]]:
    """The first ``n_per_class`` lines of each class in ``classes``, in list order."""
    taken = dict.fromkeys(classes, 0)
    kept = []
    for rel, label in read_image_list(list_file):
        if label in taken and taken[label] < n_per_class:
            taken[label] += 1
            kept.append((rel, label))
    empty = [c for c, n in taken.items() if n == 0]
    if empty:
        raise ValueError(f"class(es) {empty} have no image in {list_file.name}")
    return kept


def _write_image(path: Path, label: int, size: int, rng: np.random.Generator) -> None:
    colour = np.random.default_rng(label).integers(0, 256, size=3)
    noise = rng.normal(0.0, 24.0, size=(size, size, 3))
    pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)  # format from the extension (.jpg, .JPEG, .png)
