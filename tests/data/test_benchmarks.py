"""Benchmark builders on fake roots written by make_fake_root (real layout, tiny random images)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from calib.data import (
    DATASETS,
    ClassSplit,
    DatasetNotFoundError,
    Domain,
    benchmark_lists,
    build_domain,
    class_subset,
    default_fake_classes,
    image_list,
    make_fake_root,
    office_home,
    office_home_class_names,
    read_image_list,
)
from calib.data.benchmarks import _LazyImageNetClassNames


def test_registry_has_every_builder():
    expected = {"digits", "mnist5k", "office_home", "imagenet_r", "imagenet_s", "image_list"}
    assert expected <= set(DATASETS.names())


def test_shipped_lists_match_the_paper_counts():
    counts = {"imagenet_r": (24076, 5924), "imagenet_s": (40889, 10000)}
    for kind in ("imagenet_r", "imagenet_s"):
        train, test = benchmark_lists(kind)
        assert (len(read_image_list(train)), len(read_image_list(test))) == counts[kind]
    for domain in ("Art", "Clipart", "Product", "Real_World"):
        train, test = (read_image_list(p) for p in benchmark_lists("office_home", domain))
        assert {y for _, y in train} == set(range(65)) and {y for _, y in test} == set(range(65))
        assert all(p.startswith(f"{domain}/") for p, _ in train + test)
        assert not {p for p, _ in train} & {p for p, _ in test}
        assert 0.65 < len(train) / (len(train) + len(test)) < 0.72  # the paper's 7:3 per class


def test_office_home_class_names():
    names = office_home_class_names()
    assert len(names) == 65 and names[0] == "Drill" and names[1] == "Exit_Sign"
    assert len(set(names)) == 65


@pytest.mark.parametrize("kind", ["office_home", "imagenet_r", "imagenet_s"])
def test_default_fake_classes_cover_seen_and_absent(kind):
    classes = set(default_fake_classes(kind))
    sources = ("Ar", "Rw") if kind == "office_home" else (None,)
    for source in sources:
        split = ClassSplit.from_benchmark(kind, source)
        assert len(classes & set(split.seen)) == 2 and len(classes & set(split.absent)) == 2


def test_fake_office_home_builds_with_the_real_builder(tmp_path):
    start = time.perf_counter()
    fake = make_fake_root("office_home", tmp_path, n_per_class=2, size=24)
    assert time.perf_counter() - start < 5  # < 0.1 s on an idle core
    assert fake.num_images == 4 * 2 * 4 * 2  # domains × lists × classes × images
    # the real layout: <root>/<Domain>/<Class>/<file>.jpg, with the shipped lines
    train_list, _ = benchmark_lists("office_home", "Clipart")
    shipped = set(read_image_list(train_list))
    fake_lines = read_image_list(fake.list_dir / "Clipart_training.txt")
    assert set(fake_lines) <= shipped and len(fake_lines) == 8
    for rel, _ in fake_lines:
        assert (tmp_path / rel).is_file() and rel.startswith("Clipart/")

    dom = office_home(domain="Cl", size=16, **fake.builder_kwargs)
    assert isinstance(dom, Domain) and dom.name == "office_home/Clipart" and dom.num_classes == 65
    assert dom.class_names[0] == "Drill"
    assert sorted(set(dom.train.targets.tolist())) == list(fake.classes)
    assert len(dom.train) == len(dom.test) == len(dom.train_eval) == 8
    x, y = dom.test[0]
    assert x.shape == (3, 16, 16) and y in fake.classes
    xe, ye = dom.train_eval[0]
    assert xe.shape == (3, 16, 16) and ye == dom.train.targets[0]
    # train_eval is deterministic, train augments (random crop and flip)
    assert torch.equal(dom.train_eval[0][0], xe)
    torch.manual_seed(0)
    assert not torch.equal(dom.train[0][0], dom.train[0][0])
    # the pipeline's next steps: a class split and the seen-class subset
    split = ClassSplit.from_benchmark("office_home", source="Ar")
    seen = class_subset(dom.train, split.seen, require_all=False)
    assert 0 < len(seen) < len(dom.train)


def test_fake_images_follow_class_colour(tmp_path):
    fake = make_fake_root("office_home", tmp_path, domains=["Art"], size=16)
    dom = office_home(domain="Art", size=16, mean=(0, 0, 0), std=(1, 1, 1), **fake.builder_kwargs)
    means = {}
    for i in range(len(dom.test)):
        x, y = dom.test[i]
        means.setdefault(y, []).append(x.mean(dim=(1, 2)).numpy())
    spread = [np.ptp(np.stack(v), axis=0).max() for v in means.values()]
    centres = np.stack([np.mean(v, axis=0) for v in means.values()])
    gaps = [np.abs(centres[i] - centres[j]).max() for i in range(4) for j in range(i)]
    assert max(spread) < min(gaps)


@pytest.mark.parametrize(
    ("kind", "top", "ext"),
    [("imagenet_r", "imagenet-r", ".jpg"), ("imagenet_s", "imagenet-s", ".JPEG")],
)
def test_fake_imagenet_variants(tmp_path, kind, top, ext):
    fake = make_fake_root(kind, tmp_path, n_per_class=1, classes=None, size=16)
    dom = build_domain(kind, size=16, **fake.builder_kwargs)
    assert dom.num_classes == 1000 and dom.name == kind and len(dom.class_names) == 1000
    assert len(dom.train) == len(dom.test) == 4
    rel = read_image_list(fake.list_dir / benchmark_lists(kind)[0].name)[0][0]
    assert rel.startswith(f"{top}/n") and rel.endswith(ext) and (tmp_path / rel).is_file()
    assert dom.train[0][0].shape == (3, 16, 16)


def test_fake_root_errors(tmp_path):
    with pytest.raises(ValueError, match="no fake root for 'digits'"):
        make_fake_root("digits", tmp_path)
    # class 0 (tench) is not one of ImageNet-R's 200 classes
    with pytest.raises(ValueError, match=r"class\(es\) \[0\] have no image in R_training.txt"):
        make_fake_root("imagenet_r", tmp_path, classes=[0])


def test_builder_without_dataset_fails_at_start(tmp_path):
    """Pointing the builder at a root without the data fails before any training, with the URL."""
    with pytest.raises(DatasetNotFoundError) as info:
        office_home(tmp_path / "officehome", domain="Product")
    assert "Office-Home" in str(info.value) and "hemanthdv.org" in str(info.value)
    # a fake root is not the real data set: with the shipped lists, most files are missing
    fake = make_fake_root("office_home", tmp_path, domains=["Product"])
    with pytest.raises(DatasetNotFoundError, match=r"of 4,439 listed images are missing"):
        office_home(fake.root, domain="Product")
    with pytest.raises(DatasetNotFoundError, match="https://github.com/hendrycks/imagenet-r"):
        build_domain("imagenet_r", root=tmp_path)


def test_generic_image_list(tmp_path):
    fake = make_fake_root("office_home", tmp_path, domains=["Art"], classes=[3, 7])
    dom = image_list(
        tmp_path,
        fake.list_dir / "Art_training.txt",
        fake.list_dir / "Art_testing.txt",
        num_classes=8,
        name="mine",
        size=8,
    )
    assert dom.name == "mine" and dom.class_names[7] == "class_7" and len(dom.train) == 4
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] outside \[0, 5\)"):
        image_list(
            tmp_path, fake.list_dir / "Art_training.txt", fake.list_dir / "Art_testing.txt", 5
        )
    with pytest.raises(
        DatasetNotFoundError, match=r"image-list dataset not found(.|\n)*missing\.txt"
    ):
        image_list(tmp_path, tmp_path / "missing.txt", fake.list_dir / "Art_testing.txt", 8)


def test_imagenet_class_names_are_lazy():
    names = _LazyImageNetClassNames()
    assert len(names) == 1000  # known without loading
    assert isinstance(names[0], str) and len(list(names)) == 1000 and names[-1] == list(names)[-1]
