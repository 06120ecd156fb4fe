"""``fashion_mnist`` on a tiny synthetic copy of the package's IDX files (the package is never
needed): the IDX reader, the disjoint source/target rows, the shift, the missing-package error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from calib.data import DATASETS
from calib.data.digits import prepare_digit_images
from calib.data.fashion import (
    FASHION_FILES,
    fashion_mnist_domain,
    make_fake_fashion_root,
    read_idx,
    shift_images,
    write_idx,
)
from calib.data.image_list import DatasetNotFoundError


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format written by hand (big-endian header), independently of write_idx."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def root(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 80), ("test", 30)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, size=(n, 28, 28))
        images[:, 0, 0] = np.arange(n)  # each image's row index, to trace it
        _write_idx(tmp_path / FASHION_FILES[part][0], images)
        _write_idx(tmp_path / FASHION_FILES[part][1], labels)
    return tmp_path


def test_read_idx_round_trips_and_checks_the_header(tmp_path):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="the file holds 3"):
        read_idx(tmp_path / "short")


def test_source_and_target_rows_are_disjoint_and_counted(root):
    src = fashion_mnist_domain("source", root=root, source_per_class=2, source_test_per_class=1)
    tgt = fashion_mnist_domain("target", root=root, target_per_class=3, noise=0.0)
    assert len(src.train) == 20 and len(src.test) == 10
    assert len(tgt.train) == 30 and len(tgt.test) == 30  # every test image
    np.testing.assert_array_equal(np.bincount(src.train.targets), np.full(10, 2))
    np.testing.assert_array_equal(np.bincount(tgt.train.targets), np.full(10, 3))
    train_images = read_idx(root / FASHION_FILES["train"][0])
    # source rows from the first half (0..39), target rows from the second (40..79)
    src_rows = np.arange(20)
    tgt_rows = np.arange(40, 70)
    expected_src = prepare_digit_images(train_images[src_rows] / 255.0)
    np.testing.assert_allclose(src.train.images.numpy(), expected_src.numpy(), atol=1e-6)
    rotated = np.rot90(train_images[tgt_rows] / 255.0, 1, axes=(1, 2))
    expected_tgt = prepare_digit_images(rotated)
    np.testing.assert_allclose(tgt.train.images.numpy(), expected_tgt.numpy(), atol=1e-6)


def test_the_shift_rotates_and_adds_seeded_noise():
    x = np.random.default_rng(1).random((4, 6, 6)).astype(np.float32)
    a, b = shift_images(x, 0.2, 7), shift_images(x, 0.2, 7)
    np.testing.assert_array_equal(a, b)
    clean = np.rot90(x, 1, axes=(1, 2))
    np.testing.assert_array_equal(shift_images(x, 0.0, 7), clean)
    np.testing.assert_array_equal(shift_images(x, 0.0, 7, quarter_turns=0), x)
    np.testing.assert_array_equal(shift_images(x, 0.0, 7, 2), x[:, ::-1, ::-1])
    assert a.min() >= 0.0 and a.max() <= 1.0
    inside = (clean > 0.3) & (clean < 0.7)  # rarely clipped: the noise shows its σ
    assert 0.1 < float((a - clean)[inside].std()) < 0.3


def test_registered_and_three_channels(root):
    d = DATASETS.get("fashion_mnist")(domain="source", root=root, channels=3, size=8)
    assert d.train.images.shape[1:] == (3, 8, 8)
    assert d.class_names[9] == "Ankle boot"


def test_missing_files_name_the_debian_package(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match="install the Debian package dataset-fashion-mnist"
    ):
        fashion_mnist_domain(root=tmp_path)
    with pytest.raises(ValueError, match="domain must be 'source' or 'target', got 'both'"):
        fashion_mnist_domain("both", root=tmp_path)
    with pytest.raises(ValueError, match="quarter_turns must be 0, 1, 2 or 3, got 4"):
        fashion_mnist_domain(root=tmp_path, quarter_turns=4)


def test_write_idx_writes_what_read_idx_and_a_hand_written_file_agree_on(tmp_path):
    a = np.random.default_rng(3).integers(0, 256, (3, 5, 4))
    write_idx(tmp_path / "w.gz", a)
    _write_idx(tmp_path / "h.gz", a)
    assert gzip.open(tmp_path / "w.gz").read() == gzip.open(tmp_path / "h.gz").read()
    with pytest.raises(ValueError, match="0..255"):
        write_idx(tmp_path / "x.gz", np.array([300]))


def test_a_fake_root_builds_both_domains(tmp_path):
    root = make_fake_fashion_root(tmp_path / "fm", n_train=40, n_test=20)
    src = fashion_mnist_domain("source", root=root)  # fewer images than the defaults ask: all
    tgt = fashion_mnist_domain("target", root=root)
    assert len(src.train) == 20 and len(tgt.train) == 20 and len(tgt.test) == 20
