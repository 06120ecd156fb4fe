"""ImageListDataset, read_image_list, check_layout and the transforms, on tiny files written here."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from calib.data import (
    CorruptImageError,
    DatasetInfo,
    DatasetNotFoundError,
    ImageListDataset,
    build_transform,
    check_layout,
    read_image_list,
)


def _write_root(root, labels=(0, 1, 1, 3), size=(20, 12)):
    """Images root/cls<label>/img<i>.png and a list naming them; returns the list path."""
    lines = []
    for i, label in enumerate(labels):
        rel = f"cls{label}/img {i}.png"  # a space in the path: the label is the last field
        (root / f"cls{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size[1], size[0], 3), 10 * i, dtype=np.uint8)).save(root / rel)
        lines.append(f"{rel} {label}\n")
    list_file = root / "list.txt"
    list_file.write_text("".join(lines) + "\n")  # trailing blank line is skipped
    return list_file


def test_dataset_reads_list_and_images(tmp_path):
    list_file = _write_root(tmp_path)
    data = ImageListDataset(tmp_path, list_file)
    assert len(data) == 4
    assert data.targets.dtype == np.int64 and data.targets.tolist() == [0, 1, 1, 3]
    assert data.samples[1] == (os.path.join(tmp_path, "cls1/img 1.png"), 1)
    image, label = data[2]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (20, 12)
    assert label == 1 and np.asarray(image)[0, 0, 0] == 20


def test_dataset_transform_and_class_filter(tmp_path):
    list_file = _write_root(tmp_path)
    data = ImageListDataset(
        tmp_path, list_file, transform=build_transform(False, 8), classes=[3, 1]
    )
    assert data.targets.tolist() == [1, 1, 3]
    x, y = data[2]
    assert (
        isinstance(x, torch.Tensor) and x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == 3
    )
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=3)))
    assert batch[0].shape == (3, 3, 8, 8) and batch[1].tolist() == [1, 1, 3]
    pickle.loads(pickle.dumps(data))  # DataLoader workers need a picklable dataset


def test_train_transform_shape_and_randomness(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    tf = build_transform(True, 16, mean=(0.5,) * 3, std=(0.5,) * 3)
    torch.manual_seed(0)
    a, b = tf(image), tf(image)
    assert a.shape == b.shape == (3, 16, 16) and not torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    with pytest.raises(ValueError, match="resize"):
        build_transform(False, 16, resize=8)
    with pytest.raises(ValueError, match="std > 0"):
        build_transform(False, 16, std=(0.0, 1.0, 1.0))


def test_list_must_not_be_opened_for_labels(tmp_path):
    """Labels come from the list alone: listed files need not even exist to build the dataset."""
    (tmp_path / "list.txt").write_text("a/x.jpg 4\nb/y.jpg 2\n")
    data = ImageListDataset(tmp_path, tmp_path / "list.txt")
    assert data.targets.tolist() == [4, 2]
    with pytest.raises(FileNotFoundError):
        data[0]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("just_a_path.jpg", "expected '<relative path> <label>'"),
        ("a.jpg one", "label 'one' is not an integer"),
        ("a.jpg 1.5", "label '1.5' is not an integer"),
        ("a.jpg -2", "negative label -2"),
        ("/abs/a.jpg 2", "absolute path"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, match):
    list_file = tmp_path / "bad.txt"
    list_file.write_text(f"ok.jpg 0\n\n{line}\n")
    with pytest.raises(ValueError, match=match) as info:
        read_image_list(list_file)
    assert f"{list_file}, line 3" in str(info.value)


def test_corrupt_image_names_the_path(tmp_path):
    list_file = _write_root(tmp_path, labels=(0, 1))
    bad = tmp_path / "cls1" / "img 1.png"
    bad.write_bytes(b"this is not a png")
    data = ImageListDataset(tmp_path, list_file)
    data[0]
    with pytest.raises(CorruptImageError, match="cannot read image") as info:
        data[1]
    assert info.value.path == str(bad) and str(bad) in str(info.value)
    # truncated file: decodes the header, fails on the pixels
    good = (tmp_path / "cls0" / "img 0.png").read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptImageError, match="img 1.png"):
        data[1]


def test_check_layout_passes_and_samples(tmp_path):
    list_file = _write_root(tmp_path)
    check_layout(tmp_path, list_file)
    check_layout(tmp_path, [list_file, list_file], dataset="office_home", sample=2)
    with pytest.raises(ValueError, match="sample must be ≥ 1"):
        check_layout(tmp_path, list_file, sample=0)


def test_check_layout_sample_checks_evenly_spaced_lines(tmp_path):
    list_file = _write_root(tmp_path, labels=(0, 0, 0, 0, 0))
    os.remove(tmp_path / "cls0" / "img 2.png")  # the middle line
    check_layout(tmp_path, list_file, sample=2)  # first and last only
    with pytest.raises(DatasetNotFoundError, match="1 of 3 checked images are missing"):
        check_layout(tmp_path, list_file, sample=3)


def test_check_layout_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        check_layout(missing, tmp_path / "list.txt", dataset="office_home")
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert f"the root folder {missing} does not exist" in msg
    assert "Office-Home" in msg and "https://www.hemanthdv.org/officeHomeDataset.html" in msg
    assert "<root>/Real_World/<Class>/<file>.jpg" in msg


def test_check_layout_missing_list(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=r"image list\(s\) not found: .*R_training.txt"
    ) as info:
        check_layout(tmp_path, tmp_path / "R_training.txt", dataset="imagenet_r")
    assert "ImageNet-R" in str(info.value) and "https://github.com/hendrycks/imagenet-r" in str(
        info.value
    )


def test_check_layout_missing_files(tmp_path):
    list_file = _write_root(tmp_path, labels=(0, 1, 2))
    os.remove(tmp_path / "cls1" / "img 1.png")
    os.remove(tmp_path / "cls2" / "img 2.png")
    os.rmdir(tmp_path / "cls2")
    with pytest.raises(DatasetNotFoundError) as info:
        check_layout(tmp_path, list_file, dataset="imagenet_s")
    msg = str(info.value)
    assert (
        "ImageNet-Sketch not found" in msg
        and "https://github.com/HaohanWang/ImageNet-Sketch" in msg
    )
    assert "2 of 3 listed images are missing (list.txt: 2)" in msg
    assert str(tmp_path / "cls1" / "img 1.png") in msg
    assert f"the folder {tmp_path / 'cls2'} does not exist" in msg
    assert f"the folder {tmp_path / 'cls1'} does not exist" not in msg


def test_check_layout_suggests_renaming_a_download_folder(tmp_path):
    (tmp_path / "sketch" / "n01").mkdir(parents=True)
    (tmp_path / "list.txt").write_text("imagenet-s/n01/sketch_0.JPEG 0\n")
    with pytest.raises(DatasetNotFoundError, match="found .*sketch: rename it .* to 'imagenet-s'"):
        check_layout(tmp_path, tmp_path / "list.txt", dataset="imagenet_s")


def test_check_layout_custom_info(tmp_path):
    (tmp_path / "list.txt").write_text("x.jpg 0\n")
    info = DatasetInfo(title="My data", url="https://example.org/my", layout=("<root>/x.jpg",))
    with pytest.raises(
        DatasetNotFoundError, match="My data not found(.|\n)*https://example.org/my"
    ):
        check_layout(tmp_path, tmp_path / "list.txt", dataset=info)
