"""ClassSplit: validation, the release's order rule against the shipped class orders, constructors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib.data import SPLITS_DIR, ClassSplit, class_orders, office_home_domain


def _benchmark_entries():
    """(benchmark name, source, json entry, order) for every class order in the shipped json."""
    orders = json.loads((SPLITS_DIR / "class_orders.json").read_text())
    names = {"OfficeHome": "office_home", "ImageNet-R": "imagenet_r", "ImageNet-S": "imagenet_s"}
    assert set(orders) - {"_about"} == set(names), "a json entry this test does not know"
    for key, entry in orders.items():
        if key == "_about":
            continue
        if "order_by_source" in entry:
            for source, order in entry["order_by_source"].items():
                yield names[key], source, entry, order
        else:
            yield names[key], None, entry, entry["order"]


ENTRIES = list(_benchmark_entries())


@pytest.mark.parametrize(
    ("name", "source", "entry", "order"), ENTRIES, ids=[f"{e[0]}-{e[1]}" for e in ENTRIES]
)
def test_from_benchmark_follows_the_json_rule(name, source, entry, order):
    split = ClassSplit.from_benchmark(name, source)
    n_seen, n_absent, num_classes = entry["n_seen"], entry["n_absent"], entry["num_classes"]
    assert split.num_classes == num_classes
    assert len(split.seen) == n_seen and len(split.absent) == n_absent
    assert not set(split.seen) & set(split.absent)
    # the paper's splits take the first n_seen and the last n_absent entries of the order
    assert set(split.seen) == set(order[:n_seen])
    assert set(split.absent) == set(order[-n_absent:])
    # every class of the order is seen or absent; columns outside the order are "other"
    assert set(split.seen) | set(split.absent) == set(order)
    assert set(split.other) == set(range(num_classes)) - set(order)


def test_paper_counts():
    r = ClassSplit.from_benchmark("imagenet_r")
    assert (len(r.seen), len(r.absent), len(r.other), r.num_classes) == (100, 100, 800, 1000)
    s = ClassSplit.from_benchmark("imagenet-s")
    assert (len(s.seen), len(s.absent), len(s.other)) == (500, 500, 0)
    for source in ("Ar", "Art", "Rw", "Real_World", "real world"):
        oh = ClassSplit.from_benchmark("office_home", source)
        assert (len(oh.seen), len(oh.absent), len(oh.other)) == (30, 35, 0)
    assert ClassSplit.from_benchmark("office_home", "Ar") != ClassSplit.from_benchmark(
        "office_home", "Rw"
    )


def test_imagenet_r_order_covers_the_r_labels():
    """The R order lists exactly the 200 labels of the ImageNet-R image lists."""
    labels = set()
    for part in ("training", "testing"):
        text = (SPLITS_DIR / "ImageNet" / f"R_{part}.txt").read_text()
        labels |= {int(line.rsplit(maxsplit=1)[1]) for line in text.splitlines() if line.strip()}
    assert set(class_orders()["ImageNet-R"]["order"]) == labels


def test_from_benchmark_errors():
    with pytest.raises(ValueError, match="depends on the source"):
        ClassSplit.from_benchmark("office_home")
    with pytest.raises(ValueError, match="no Office-Home class order for source 'Clipart'"):
        ClassSplit.from_benchmark("office_home", "Clipart")
    with pytest.raises(ValueError, match="unknown Office-Home domain"):
        ClassSplit.from_benchmark("office_home", "Sketch")
    with pytest.raises(ValueError, match="single class order"):
        ClassSplit.from_benchmark("imagenet_r", "Ar")
    with pytest.raises(ValueError, match="no paper split for 'cifar'"):
        ClassSplit.from_benchmark("cifar")


def test_from_order_literal_rule():
    order = [5, 3, 9, 0, 7, 1]
    split = ClassSplit.from_order(order, num_classes=10, n_seen=2, n_absent=3)
    assert split.seen == (3, 5) and split.absent == (0, 1, 7)
    assert split.other == (2, 4, 6, 8, 9)
    # the order covers the whole head: seen = O[:C - n_absent][:n_seen]
    full = ClassSplit.from_order(list(range(6))[::-1], num_classes=6, n_seen=2, n_absent=4)
    assert full.seen == (4, 5) and full.absent == (0, 1, 2, 3)


def test_from_order_too_short():
    with pytest.raises(ValueError, match="cannot give 4 seen and 3"):
        ClassSplit.from_order([0, 1, 2, 3, 4], num_classes=10, n_seen=4, n_absent=3)
    with pytest.raises(ValueError, match="≥ 1"):
        ClassSplit.from_order([0, 1, 2], num_classes=3, n_seen=0, n_absent=1)


@pytest.mark.parametrize(
    ("seen", "absent", "num_classes", "error", "match"),
    [
        ([], [1], 3, ValueError, "seen classes are empty"),
        ([0], [], 3, ValueError, "absent classes are empty"),
        ([0, 1], [1, 2], 3, ValueError, r"\[1\] are both seen and absent"),
        ([0, 3], [1], 3, ValueError, r"seen class\(es\) \[3\] outside \[0, 3\)"),
        ([0], [-1], 3, ValueError, "outside"),
        ([0, 0], [1], 3, ValueError, "more than once"),
        ([0.0], [1], 3, TypeError, "integers"),
        ([True], [0], 3, TypeError, "boolean"),
        ("01", [2], 3, TypeError, "string"),
        ([0], [1], 1, ValueError, "at least 2"),
    ],
)
def test_validation(seen, absent, num_classes, error, match):
    with pytest.raises(error, match=match):
        ClassSplit(seen=seen, absent=absent, num_classes=num_classes)


def test_coerces_arrays_and_sorts():
    split = ClassSplit(seen=np.array([4, 1]), absent=torch.tensor([3, 0]), num_classes=6)
    assert split.seen == (1, 4) and split.absent == (0, 3) and split.other == (2, 5)
    assert all(type(c) is int for c in split.seen + split.absent)
    assert hash(split) == hash(ClassSplit(seen=(1, 4), absent=(0, 3), num_classes=6))
    with pytest.raises(AttributeError):
        split.seen = (0,)  # frozen


def test_explicit():
    split = ClassSplit.explicit([2, 0], num_classes=5)
    assert split.seen == (0, 2) and split.absent == (1, 3, 4) and split.other == ()
    split = ClassSplit.explicit([2], [4], num_classes=5)
    assert split.absent == (4,) and split.other == (0, 1, 3)
    with pytest.raises(ValueError, match="absent classes are empty"):
        ClassSplit.explicit(range(5), num_classes=5)


def test_random_is_seeded_and_draws_from_classes():
    a = ClassSplit.random(20, n_seen=8, n_absent=5, seed=3)
    assert a == ClassSplit.random(20, n_seen=8, n_absent=5, seed=3)
    assert a != ClassSplit.random(20, n_seen=8, n_absent=5, seed=4)
    assert (len(a.seen), len(a.absent), len(a.other)) == (8, 5, 7)
    rest = ClassSplit.random(20, n_seen=8, seed=3)
    assert len(rest.absent) == 12 and rest.other == ()
    pool = [3, 7, 11, 13, 17]
    b = ClassSplit.random(20, n_seen=2, classes=pool, seed=0)
    assert set(b.seen) | set(b.absent) == set(pool)
    with pytest.raises(ValueError, match="cannot draw"):
        ClassSplit.random(5, n_seen=5)
    with pytest.raises(ValueError, match="cannot draw"):
        ClassSplit.random(5, n_seen=3, n_absent=3)


def test_office_home_domain_names():
    assert office_home_domain("rw") == "Real_World"
    assert office_home_domain("Real World") == "Real_World"
    assert office_home_domain("CLIPART") == "Clipart"
    with pytest.raises(ValueError, match="Art \\(Ar\\)"):
        office_home_domain("Photo")
