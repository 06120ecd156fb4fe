"""Datasets defined by image lists, and the check that a dataset is where its list says.

An image list is a text file with one image a line, ``<relative path> <label>``: the path
is relative to the dataset root (it may contain spaces; the label is the last field), the
label an integer index into the label space. Blank lines are skipped. The paper's
Office-Home and ImageNet-R/S splits ship in this format (``calib/data/splits``).

:func:`check_layout` runs before a dataset is used, so that a missing download fails at
start with one message saying what is missing and where to get it, not hours later.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "DatasetNotFoundError",
    "CorruptImageError",
    "DatasetInfo",
    "DATASET_INFO",
    "ImageListDataset",
    "read_image_list",
    "check_layout",
    "pil_rgb_loader",
]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's root, image list or listed files are missing (the message says how to get them)."""


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded. ``path`` names the file."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`check_layout` tells a user about a dataset that is not where it should be.

    Attributes:
        title: the dataset's name in messages.
        url: where to download it (empty for user-made datasets).
        layout: the expected files under the root, one line each.
        renames: ``{expected top folder: folder name some downloads use instead}``; if the
            latter is found under the root, the message says to rename it.
    """

    title: str
    url: str = ""
    layout: tuple[str, ...] = ()
    renames: dict[str, str] = field(default_factory=dict)


DATASET_INFO: dict[str, DatasetInfo] = {
    "office_home": DatasetInfo(
        title="Office-Home",
        url="https://www.hemanthdv.org/officeHomeDataset.html",
        layout=(
            "<root>/Art/<Class>/<file>.jpg",
            "<root>/Clipart/<Class>/<file>.jpg",
            "<root>/Product/<Class>/<file>.jpg",
            "<root>/Real_World/<Class>/<file>.jpg",
            "(the four folders of OfficeHomeDataset_10072016; 'Real World' renamed 'Real_World')",
        ),
        renames={"Real_World": "Real World"},
    ),
    "imagenet_r": DatasetInfo(
        title="ImageNet-R",
        url="https://github.com/hendrycks/imagenet-r",
        layout=("<root>/imagenet-r/<wnid>/<file>.jpg", "(extract imagenet-r.tar into <root>)"),
    ),
    "imagenet_s": DatasetInfo(
        title="ImageNet-Sketch",
        url="https://github.com/HaohanWang/ImageNet-Sketch",
        layout=(
            "<root>/imagenet-s/<wnid>/<file>.JPEG",
            "(the dataset's 'sketch' folder, renamed or symlinked to 'imagenet-s')",
        ),
        renames={"imagenet-s": "sketch"},
    ),
    "vtab": DatasetInfo(
        title="VTAB-1k",
        url="https://github.com/ZhangYuanhan-AI/NOAH#data-preparation",
        layout=(
            "<root>/<task>/train800val200.txt   ('<relative path> <label>' lines)",
            "<root>/<task>/test.txt",
            "<root>/<task>/<relative path of each listed image>, e.g. images/...",
            "<root>/<task>/classnames.txt        (optional: one class name a line, in label order)",
            "(the vtab-1k folder of VPT/NOAH; <task>: caltech101, cifar, dtd, oxford_iiit_pet, ...)",
        ),
    ),
    "image_list": DatasetInfo(
        title="image-list dataset",
        layout=("<root>/<relative path of each line of the list>",),
    ),
}

_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def pil_rgb_loader(path: str) -> Image.Image:
    """Open an image file as an RGB PIL image (decoded now, file closed)."""
    with open(path, "rb") as fh:
        img = Image.open(fh)
        return img.convert("RGB")


def read_image_list(list_file: str | os.PathLike) -> list[tuple[str, int]]:
    """Parse an image list into ``(relative path, label)`` pairs, in file order.

    Raises:
        FileNotFoundError: no such list.
        ValueError: a malformed line (no label, a non-integer or negative label, an absolute
            path); the message names the file and the line number.
    """
    entries = []
    with open(list_file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                entries.append(_parse_line(line))
            except ValueError as err:
                raise ValueError(f"{list_file}, line {lineno}: {err}: {line!r}") from None
    return entries


def _parse_line(line: str) -> tuple[str, int]:
    parts = line.rsplit(maxsplit=1)
    if len(parts) != 2:
        raise ValueError("expected '<relative path> <label>'")
    path, label_text = parts
    try:
        label = int(label_text)
    except ValueError:
        raise ValueError(f"label {label_text!r} is not an integer") from None
    if label < 0:
        raise ValueError(f"negative label {label}")
    if os.path.isabs(path):
        raise ValueError("paths are relative to the dataset root, got an absolute path")
    return path, label


class ImageListDataset(Dataset):
    """Images listed in an image list, under ``root``; items are ``(transform(image), label)``.

    Args:
        root: the dataset root; list paths are relative to it.
        list_file: the image list (``<relative path> <label>`` lines).
        transform: applied to the PIL image (e.g. :func:`calib.data.build_transform`).
        classes: keep only the lines with these labels (default: all lines).
        loader: ``path -> image``; default opens an RGB PIL image.

    Attributes:
        samples: ``(absolute path, label)`` of each item, in list order.
        targets: the labels, an int64 array of shape ``(len(self),)``, read from the list only.

    A file that exists but cannot be decoded raises :class:`CorruptImageError` naming it:
    the run stops rather than silently training on fewer images (long runs resume from
    their checkpoints once the file is replaced). Missing files are caught earlier by
    :func:`check_layout`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        list_file: str | os.PathLike,
        transform: Callable[[Any], Any] | None = None,
        classes: Sequence[int] | None = None,
        loader: Callable[[str], Any] = pil_rgb_loader,
    ) -> None:
        self.root = Path(root)
        self.list_file = Path(list_file)
        self.transform = transform
        self.loader = loader
        entries = read_image_list(self.list_file)
        if classes is not None:
            keep = {int(c) for c in classes}
            entries = [(p, y) for p, y in entries if y in keep]
        self.samples: list[tuple[str, int]] = [(os.path.join(self.root, p), y) for p, y in entries]
        self.targets: np.ndarray = np.fromiter(
            (y for _, y in entries), dtype=np.int64, count=len(entries)
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        try:
            image = self.loader(path)
        except FileNotFoundError:
            raise
        except _IMAGE_ERRORS as err:
            raise CorruptImageError(
                f"cannot read image {path} (line of {self.list_file.name}, label {label}): "
                f"{type(err).__name__}: {err}",
                path=path,
            ) from err
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __repr__(self) -> str:
        return f"ImageListDataset(root={str(self.root)!r}, list={self.list_file.name!r}, n={len(self)})"


def _evenly_spaced(n: int, k: int | None) -> range | np.ndarray:
    if k is None or k >= n:
        return range(n)
    return np.unique(np.linspace(0, n - 1, num=max(k, 1)).round().astype(np.int64))


def check_layout(
    root: str | os.PathLike,
    list_file: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    dataset: str | DatasetInfo = "image_list",
    sample: int | None = None,
) -> None:
    """Check that ``root`` holds the files its image list(s) name; fail with one message if not.

    Args:
        root: the dataset root.
        list_file: one image list or several (e.g. the training and the test list).
        dataset: a key of :data:`DATASET_INFO` ("office_home", "imagenet_r", "imagenet_s",
            "vtab", "image_list") or a :class:`DatasetInfo`: says what to download and from where.
        sample: check this many evenly spaced lines per list; ``None`` (default) checks every
            line (one ``os.path.exists`` each: well under a second for 50,000 files on a
            local disk).

    Raises:
        DatasetNotFoundError: the root, a list, or listed files are missing. The message names
            the dataset, what is missing (with examples), the download address and the
            expected layout.
        ValueError: a malformed list line.
    """
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be ≥ 1 or None (check every file), got {sample}")
    info = dataset if isinstance(dataset, DatasetInfo) else DATASET_INFO[dataset]
    root = Path(root)
    lists = [list_file] if isinstance(list_file, (str, os.PathLike)) else list(list_file)

    if not root.is_dir():
        problem = (
            f"the root folder {root} does not exist"
            if not root.exists()
            else f"{root} is not a folder"
        )
        raise DatasetNotFoundError(_not_found_message(info, root, problem))
    missing_lists = [str(p) for p in lists if not Path(p).is_file()]
    if missing_lists:
        raise DatasetNotFoundError(
            _not_found_message(info, root, f"image list(s) not found: {', '.join(missing_lists)}")
        )

    n_checked, missing, per_list = 0, [], []
    for lst in lists:
        entries = read_image_list(lst)
        lost = 0
        for i in _evenly_spaced(len(entries), sample):
            n_checked += 1
            if not os.path.exists(os.path.join(root, entries[i][0])):
                lost += 1
                missing.append(entries[i][0])
        if lost:
            per_list.append(f"{Path(lst).name}: {lost:,}")
    if not missing:
        return
    checked = "listed" if sample is None else "checked"
    problem = f"{len(missing):,} of {n_checked:,} {checked} images are missing ({'; '.join(per_list)}), e.g.:"
    for rel in missing[:3]:
        problem += f"\n    {root / rel}"
    problem += _folder_hints(info, root, missing)
    raise DatasetNotFoundError(_not_found_message(info, root, problem))


def _folder_hints(info: DatasetInfo, root: Path, missing: list[str]) -> str:
    """Say which top folders are absent, and whether a download's alternative name is there."""
    hints = []
    tops = sorted({Path(rel).parts[0] for rel in missing if len(Path(rel).parts) > 1})
    for top in tops:
        if (root / top).is_dir():
            continue
        hint = f"\n  the folder {root / top} does not exist"
        alias = info.renames.get(top)
        if alias and (root / alias).exists():
            hint += f"; found {root / alias}: rename it (or symlink it) to {top!r}"
        hints.append(hint)
    return "".join(hints)


def _not_found_message(info: DatasetInfo, root: Path, problem: str) -> str:
    lines = [f"{info.title} not found under {root}: {problem}"]
    if info.url:
        lines.append(f"Download {info.title} from {info.url} and arrange it under the root as:")
    else:
        lines.append("Expected layout under the root:")
    lines.extend(f"    {row}" for row in info.layout)
    return "\n".join(lines)
