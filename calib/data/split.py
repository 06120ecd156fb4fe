"""Class splits: which columns of the head are the seen (fine-tuning) classes S and the absent U.

A :class:`ClassSplit` holds S, U and the head size C. Columns in neither S nor U are
"other" classes R (for ImageNet-R: the 800 ImageNet classes without R images); the
calibration bias leaves them alone.

The paper's splits come from the class orders shipped in ``splits/class_orders.json``
(:meth:`ClassSplit.from_benchmark`); :meth:`ClassSplit.from_order` implements the
release's rule, :meth:`ClassSplit.random` and :meth:`ClassSplit.explicit` build others, and
:meth:`ClassSplit.inferred` reads S off the fine-tuning labels (opt-in).

Where a split is built from classes a user gives (:meth:`~ClassSplit.explicit`,
:meth:`~ClassSplit.random`'s pool), the classes may be the domain's class names
(``Domain.class_names``, index = label) as well as column indices:
:func:`calib.class_names.class_ids` maps them, with a did-you-mean for a name that is not a
class. A :class:`ClassSplit` itself always holds column indices.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from calib.class_names import class_ids, infer_seen_classes

__all__ = [
    "ClassSplit",
    "SPLITS_DIR",
    "OFFICE_HOME_DOMAINS",
    "class_orders",
    "office_home_domain",
]

#: The paper's image lists and class orders, shipped as package data.
SPLITS_DIR = Path(__file__).resolve().parent / "splits"

# Office-Home domains: full name -> short name used by the paper's class orders and pairs.
_OFFICE_HOME_DOMAINS = {"Art": "Ar", "Clipart": "Cl", "Product": "Pr", "Real_World": "Rw"}
#: Office-Home's four domains, as folder names under the dataset root.
OFFICE_HOME_DOMAINS = tuple(_OFFICE_HOME_DOMAINS)


def office_home_domain(name: str) -> str:
    """The Office-Home domain's folder name ("Art", ..., "Real_World") from a full or short name.

    Accepts "Art"/"Ar", "Clipart"/"Cl", "Product"/"Pr", "Real_World"/"Real World"/"Rw",
    in any case.
    """
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    for full, short in _OFFICE_HOME_DOMAINS.items():
        if key in (full.lower(), short.lower()):
            return full
    known = ", ".join(f"{full} ({short})" for full, short in _OFFICE_HOME_DOMAINS.items())
    raise ValueError(f"unknown Office-Home domain {name!r}; known: {known}")


@lru_cache(maxsize=1)
def class_orders() -> dict[str, Any]:
    """The parsed ``class_orders.json`` (class orders and default counts of the paper)."""
    with open(SPLITS_DIR / "class_orders.json", encoding="utf-8") as fh:
        return json.load(fh)


def _as_class_tuple(classes: Iterable[Any], name: str) -> tuple[int, ...]:
    """Integer class indices as a tuple of Python ints; rejects bools, floats and duplicates."""
    if isinstance(classes, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of class indices, got a string {classes!r}")
    if hasattr(classes, "tolist"):  # numpy array or torch tensor
        classes = classes.tolist()
    if isinstance(classes, int):
        raise TypeError(f"{name} must be a sequence of class indices, got the integer {classes}")
    out = []
    for c in classes:
        if isinstance(c, (bool, np.bool_)):
            raise TypeError(f"{name} holds a boolean {c!r}; class indices are integers")
        try:
            out.append(operator.index(c))
        except TypeError:
            raise TypeError(
                f"{name} holds {c!r} ({type(c).__name__}); class indices are integers"
            ) from None
    if len(set(out)) != len(out):
        dup = sorted({c for c in out if out.count(c) > 1})
        raise ValueError(f"{name} lists class(es) {dup} more than once")
    return tuple(out)


@dataclass(frozen=True)
class ClassSplit:
    """The seen classes S and absent classes U of a head with ``num_classes`` columns.

    Attributes:
        seen: the fine-tuning classes S, sorted, non-empty.
        absent: the absent classes U (the ones γ is added to), sorted, non-empty, disjoint from S.
        num_classes: the head size C; every class index lies in ``[0, C)``.

    Raises:
        TypeError: a class index that is not an integer.
        ValueError: empty S or U, overlap, duplicates, or an index outside ``[0, C)``.
    """

    seen: tuple[int, ...]
    absent: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool):
            raise TypeError("num_classes must be an integer, got a boolean")
        num_classes = operator.index(self.num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        seen = tuple(sorted(_as_class_tuple(self.seen, "seen")))
        absent = tuple(sorted(_as_class_tuple(self.absent, "absent")))
        for name, classes in (("seen", seen), ("absent", absent)):
            if not classes:
                raise ValueError(f"{name} classes are empty")
            if classes[0] < 0 or classes[-1] >= num_classes:
                bad = [c for c in classes if not 0 <= c < num_classes]
                raise ValueError(f"{name} class(es) {bad} outside [0, {num_classes})")
        both = sorted(set(seen) & set(absent))
        if both:
            raise ValueError(f"class(es) {both} are both seen and absent")
        object.__setattr__(self, "seen", seen)
        object.__setattr__(self, "absent", absent)
        object.__setattr__(self, "num_classes", num_classes)

    @property
    def other(self) -> tuple[int, ...]:
        """Columns in neither S nor U (left un-shifted by the calibration), sorted."""
        taken = set(self.seen) | set(self.absent)
        return tuple(c for c in range(self.num_classes) if c not in taken)

    def __repr__(self) -> str:
        def show(classes: tuple[int, ...]) -> str:
            head = ", ".join(map(str, classes[:6]))
            return f"[{head}{', ...' if len(classes) > 6 else ''}] ({len(classes)})"

        return (
            f"ClassSplit(num_classes={self.num_classes}, seen={show(self.seen)}, "
            f"absent={show(self.absent)}, other={len(self.other)})"
        )

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_order(
        cls, order: Sequence[int], num_classes: int, n_seen: int, n_absent: int
    ) -> ClassSplit:
        """The release's rule: ``seen = O[:num_classes - n_absent][:n_seen]``, ``absent = O[-n_absent:]``.

        ``order`` may cover only part of the head (ImageNet-R: 200 of 1000 classes); then the
        first slice keeps all of it and S is its first ``n_seen`` entries, U its last
        ``n_absent``. The classes of the order in neither (when ``n_seen + n_absent`` is less
        than its length) and the columns outside it become :attr:`other`.

        Raises:
            ValueError: counts below 1, or an order too short to give ``n_seen`` seen and
                ``n_absent`` absent classes that do not overlap.
        """
        order = _as_class_tuple(order, "order")
        n_seen, n_absent = operator.index(n_seen), operator.index(n_absent)
        if n_seen < 1 or n_absent < 1:
            raise ValueError(f"n_seen and n_absent must be ≥ 1, got {n_seen} and {n_absent}")
        seen = order[: num_classes - n_absent][:n_seen]
        absent = order[-n_absent:]
        if len(seen) != n_seen or len(absent) != n_absent or set(seen) & set(absent):
            raise ValueError(
                f"an order of {len(order)} classes cannot give {n_seen} seen and {n_absent} "
                f"disjoint absent classes (needs at least {n_seen + n_absent})"
            )
        return cls(seen=seen, absent=absent, num_classes=num_classes)

    @classmethod
    def random(
        cls,
        num_classes: int,
        n_seen: int,
        n_absent: int | None = None,
        seed: int = 0,
        classes: Sequence[int | str] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> ClassSplit:
        """A random split of ``classes`` (default: all ``num_classes`` columns).

        One permutation of ``classes`` is drawn with ``numpy.random.default_rng(seed)``;
        S is its first ``n_seen`` entries, U the next ``n_absent`` (default: all the rest).
        ``classes`` may be class names when ``class_names`` (one per column) is given: the
        draw is the same as with their column indices in the same order.
        """
        if classes is not None:
            classes = class_ids(classes, class_names, "classes")
        pool = _as_class_tuple(range(num_classes) if classes is None else classes, "classes")
        n_seen = operator.index(n_seen)
        n_absent = len(pool) - n_seen if n_absent is None else operator.index(n_absent)
        if n_seen < 1 or n_absent < 1 or n_seen + n_absent > len(pool):
            raise ValueError(
                f"cannot draw {n_seen} seen and {n_absent} absent classes (each ≥ 1) "
                f"from {len(pool)} classes"
            )
        perm = np.random.default_rng(seed).permutation(np.asarray(pool, dtype=np.int64))
        return cls(
            seen=perm[:n_seen], absent=perm[n_seen : n_seen + n_absent], num_classes=num_classes
        )

    @classmethod
    def explicit(
        cls,
        seen: Iterable[int | str],
        absent: Iterable[int | str] | None = None,
        *,
        num_classes: int,
        class_names: Sequence[str] | None = None,
    ) -> ClassSplit:
        """Given S (and U); ``absent=None`` makes U every column not in S.

        ``seen`` and ``absent`` are column indices or, with ``class_names`` (one name per
        column, index = label, e.g. ``Domain.class_names``), class names, or both mixed::

            ClassSplit.explicit(["cat", "dog"], num_classes=3, class_names=["cat", "dog", "fox"])

        Raises:
            ValueError: a name that is not a class (with a did-you-mean), ``class_names`` of
                another length than ``num_classes``; and what :class:`ClassSplit` refuses.
        """
        if class_names is not None and len(class_names) != operator.index(num_classes):
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        seen = _as_class_tuple(class_ids(seen, class_names, "seen"), "seen")
        if absent is None:
            taken = set(seen)
            absent = tuple(c for c in range(num_classes) if c not in taken)
        else:
            absent = class_ids(absent, class_names, "absent")
        return cls(seen=seen, absent=absent, num_classes=num_classes)

    @classmethod
    def inferred(
        cls,
        labels: Any,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        *,
        source: str = "fine-tuning labels",
    ) -> ClassSplit:
        """S = the classes present in the fine-tuning ``labels``, U = every other column.

        Opt-in, for data whose fine-tuning set holds exactly the classes S
        (:func:`calib.class_names.infer_seen_classes`, which logs the classes it found on the
        logger ``calib.classes``, with their names when ``class_names`` is given).

        Args:
            labels: (N,) integer labels of the fine-tuning data, numpy or torch.
            num_classes: C, the head size.
            class_names: one name per column, for the log line.
            source: what the labels are, for the log line and the errors.

        Raises:
            ValueError: no labels, a label outside ``[0, C)``, or labels of every class
                (nothing would be absent).
        """
        seen = infer_seen_classes(labels, num_classes, class_names, source=source)
        return cls.explicit(seen.tolist(), num_classes=num_classes)

    @classmethod
    def from_benchmark(cls, name: str, source: str | None = None) -> ClassSplit:
        """The paper's split of a benchmark, from the shipped ``class_orders.json``.

        Args:
            name: ``"office_home"``, ``"imagenet_r"`` or ``"imagenet_s"``.
            source: Office-Home only: the source domain whose class order is used,
                ``"Art"``/``"Ar"`` or ``"Real_World"``/``"Rw"`` (the paper's pairs are
                Ar→{Cl, Pr, Rw} and Rw→{Ar, Cl, Pr}).
        """
        orders = class_orders()
        key = str(name).strip().lower().replace("-", "_")
        entries = {"office_home": "OfficeHome", "officehome": "OfficeHome"}
        entries.update({"imagenet_r": "ImageNet-R", "imagenet_s": "ImageNet-S"})
        if key not in entries:
            raise ValueError(
                f"no paper split for {name!r}; known: office_home, imagenet_r, imagenet_s"
            )
        entry = orders[entries[key]]
        if entries[key] == "OfficeHome":
            by_source = entry["order_by_source"]
            if source is None:
                raise ValueError(
                    f"Office-Home's class order depends on the source domain: one of {sorted(by_source)}"
                )
            short = _OFFICE_HOME_DOMAINS[office_home_domain(source)]
            if short not in by_source:
                raise ValueError(
                    f"the paper has no Office-Home class order for source {source!r}; known: {sorted(by_source)}"
                )
            order = by_source[short]
        else:
            if source is not None:
                raise ValueError(
                    f"{name} has a single class order; source must be None, got {source!r}"
                )
            order = entry["order"]
        return cls.from_order(order, entry["num_classes"], entry["n_seen"], entry["n_absent"])
