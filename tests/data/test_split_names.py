"""ClassSplit from class names: the same split as from the column indices the names stand for."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from calib.class_names import class_ids
from calib.data import ClassSplit

NAMES = ("zebra", "ant", "cat", "dog", "emu", "fox")  # not in alphabetical order: index = label


def test_explicit_names_give_the_split_of_their_indices():
    by_index = ClassSplit.explicit([3, 1], [5, 0], num_classes=6)
    by_name = ClassSplit.explicit(
        ["dog", "ant"], ["fox", "zebra"], num_classes=6, class_names=NAMES
    )
    assert by_name == by_index
    assert by_name.seen == (1, 3) and by_name.absent == (0, 5) and by_name.other == (2, 4)
    # mixed names and indices; absent=None: every other column
    mixed = ClassSplit.explicit(["dog", 1], num_classes=6, class_names=NAMES)
    assert mixed == ClassSplit.explicit([1, 3], num_classes=6)
    # indices with names given: unchanged (an array too)
    assert ClassSplit.explicit(np.array([3, 1]), num_classes=6, class_names=NAMES) == (
        ClassSplit.explicit([1, 3], num_classes=6)
    )


def test_each_name_maps_to_its_own_column():
    for column, name in enumerate(NAMES):
        others = [c for c in range(len(NAMES)) if c != column]
        split = ClassSplit.explicit([name], num_classes=len(NAMES), class_names=NAMES)
        assert split.seen == (column,) and split.absent == tuple(others)


def test_a_misspelt_name_gets_a_did_you_mean():
    with pytest.raises(ValueError, match=r"^seen: 'dgo' is not a class name; did you mean 'dog'\?"):
        ClassSplit.explicit(["dgo"], num_classes=6, class_names=NAMES)
    with pytest.raises(ValueError, match=r"^absent: 'Fx' is not a class name; did you mean 'fox'"):
        ClassSplit.explicit(["dog"], ["Fx"], num_classes=6, class_names=NAMES)
    with pytest.raises(ValueError, match=r"'whale' is not a class name$"):  # nothing close
        ClassSplit.explicit(["whale"], num_classes=6, class_names=NAMES)


def test_names_need_class_names_and_a_list():
    with pytest.raises(
        ValueError, match=r"seen holds class names \(\['dog'\]\) but no class_names"
    ):
        ClassSplit.explicit(["dog"], num_classes=6)
    with pytest.raises(TypeError, match=r"seen must be a collection of classes .* one class is"):
        ClassSplit.explicit("dog", num_classes=6, class_names=NAMES)
    with pytest.raises(ValueError, match=r"class_names has 6 names but num_classes is 7"):
        ClassSplit.explicit(["dog"], num_classes=7, class_names=NAMES)


def test_a_name_two_columns_share_is_refused_naming_both():
    names = ("crane", "dog", "crane", "fox")  # ImageNet has such names (two "missile"s)
    with pytest.raises(ValueError, match=r"seen: 'crane' names 2 classes \(columns \[0, 2\]\)"):
        ClassSplit.explicit(["crane"], num_classes=4, class_names=names)
    # the other names and every index still work
    assert ClassSplit.explicit(["dog", 2], num_classes=4, class_names=names).seen == (1, 2)


def test_class_indices_keeps_the_order_given():
    assert class_ids(["fox", "ant", 2], NAMES, "x") == [5, 1, 2]
    assert class_ids((c for c in ["cat"]), NAMES, "x") == [2]  # a generator, read once
    assert class_ids([4, 0], None, "x") == [4, 0]


def test_random_over_named_classes_draws_as_over_their_indices():
    pool = ["fox", "ant", "dog", "emu"]
    named = ClassSplit.random(6, 2, seed=3, classes=pool, class_names=NAMES)
    indexed = ClassSplit.random(6, 2, seed=3, classes=[5, 1, 3, 4])
    assert named == indexed
    assert set(named.seen) | set(named.absent) == {1, 3, 4, 5} and named.other == (0, 2)


def test_inferred_takes_the_classes_of_the_labels_and_logs_them(caplog):
    labels = torch.tensor([3, 1, 1, 4, 3])
    with caplog.at_level(logging.INFO, logger="calib.classes"):
        split = ClassSplit.inferred(labels, 6, NAMES, source="target training labels")
    assert split == ClassSplit.explicit(sorted(set(labels.tolist())), num_classes=6)
    assert split.absent == (0, 2, 5)
    (record,) = [r for r in caplog.records if r.name == "calib.classes"]
    assert record.getMessage() == (
        "seen classes inferred from 5 target training labels: 3 classes: 1 ant, 3 dog, 4 emu"
    )


def test_inferred_refuses_labels_of_every_class_or_outside_the_head():
    with pytest.raises(ValueError, match=r"cover all 3 classes: no class is absent"):
        ClassSplit.inferred(np.array([0, 1, 2, 2]), 3)
    with pytest.raises(ValueError, match=r"fine-tuning labels"):
        ClassSplit.inferred(np.array([0, 7]), 3)
