"""Class names: the mapping between a head's columns and the names of its classes.

Every API that takes classes (S, U, a pseudo split's classes, a stage's classes) takes names as
well as column indices when it is given ``class_names`` (one name per column, index = label)::

    calib.accuracy_report(logits, labels, ["cat", "dog"], class_names=names)

:func:`class_ids` maps names to columns, with a did-you-mean for a name that is not a class;
:func:`resolve_classes` is :func:`calib.validation.check_classes` on names or indices;
:func:`describe_classes` shows a set of columns with their names (tables, logs, errors);
:func:`infer_seen_classes` finds S in the fine-tuning labels, for the callers that opt in with
``seen_classes="infer"``, and logs what it found.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from calib.validation import as_numpy, check_classes, check_labels, is_tensor

__all__ = [
    "INFER",
    "check_class_names",
    "class_ids",
    "resolve_classes",
    "class_label",
    "describe_classes",
    "infer_seen_classes",
]

log = logging.getLogger("calib.classes")

#: The value of ``seen_classes`` that asks for S to be read off the fine-tuning labels.
INFER = "infer"


def check_class_names(
    class_names: Any, num_classes: int | None = None, name: str = "class_names"
) -> tuple[str, ...] | None:
    """``class_names`` as a tuple of non-empty strings (None stays None).

    A name may be shared by several columns (ImageNet's label set has two ``"crane"`` and two
    ``"missile"`` classes): such a name is refused only where it is used to pick a class
    (:func:`class_ids`), since it does not say which.

    Args:
        class_names: one name per column, index = label: a list, tuple or 1-D array of str.
        num_classes: C, when known: the number of names must equal it.
        name: the parameter's name in error messages.

    Raises:
        TypeError: a string instead of a sequence, or an entry that is not a string.
        ValueError: empty, an empty name, or not ``num_classes`` names.
    """
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)):
        raise TypeError(
            f"{name} must be a sequence of names (one per class), got the string {class_names!r}"
        )
    if isinstance(class_names, np.ndarray):
        class_names = class_names.tolist()
    if not isinstance(class_names, Iterable):
        raise TypeError(
            f"{name} must be a sequence of names (one per class), got {type(class_names).__name__}"
        )
    names = tuple(class_names)
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise TypeError(f"{name}[{i}] is {n!r} ({type(n).__name__}); class names are strings")
        if not n.strip():
            raise ValueError(f"{name}[{i}] is an empty name")
    if not names:
        raise ValueError(f"{name} is empty: one name per class is needed")
    if num_classes is not None and len(names) != int(num_classes):
        raise ValueError(f"{name} has {len(names)} names but the head has {num_classes} classes")
    return names


def _did_you_mean(name: str, names: Sequence[str]) -> str:
    """``"; did you mean 'dog'?"`` (close spellings, case ignored), or ``""``."""
    folded = {n.casefold(): n for n in names}
    close = [folded[n] for n in difflib.get_close_matches(name.casefold(), folded, n=3, cutoff=0.6)]
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def _entries(classes: Any) -> list[Any] | None:
    """The entries of ``classes`` when it may hold names (a list, tuple, set, generator or an
    array of strings); None when it cannot (an integer array or tensor, a scalar)."""
    if is_tensor(classes):
        return None
    if isinstance(classes, np.ndarray):
        return classes.tolist() if classes.dtype.kind in "USO" else None
    if isinstance(classes, (set, frozenset)):
        return sorted(classes, key=lambda c: (isinstance(c, str), str(c)))
    if isinstance(classes, Iterable):
        return list(classes)
    return None


def class_ids(classes: Any, class_names: Sequence[str] | None, name: str = "classes") -> Any:
    """``classes`` with every name replaced by its column index (``class_names.index(name)``).

    Indices pass through unchanged, so that names and indices can be mixed; an integer array or
    tensor is returned as it is. The indices themselves are checked by the caller
    (:func:`calib.validation.check_classes`).

    Raises:
        TypeError: ``classes`` is one string (a list of one name is ``[name]``).
        ValueError: a name that is not in ``class_names`` (with the closest names), a name that
            several columns share (give the column index), or names without ``class_names``.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)):
        raise TypeError(
            f"{name} must be a collection of classes (names or column indices), got the string "
            f"{classes!r}; one class is [{classes!r}]"
        )
    items = _entries(classes)
    if items is None:
        return classes
    named = [c for c in items if isinstance(c, str)]
    if not named:
        return items
    if class_names is None:
        raise ValueError(
            f"{name} holds class names ({named[:5]}) but no class_names were given: pass "
            "class_names= (one name per column, index = label), or give column indices"
        )
    columns: dict[str, list[int]] = {}
    for i, n in enumerate(class_names):
        columns.setdefault(n, []).append(i)
    unknown = [c for c in named if c not in columns]
    if unknown:
        more = f" ({len(unknown)} unknown names: {unknown[:10]})" if len(unknown) > 1 else ""
        raise ValueError(
            f"{name}: {unknown[0]!r} is not a class name{_did_you_mean(unknown[0], class_names)}"
            f"{more}"
        )
    shared = [c for c in named if len(columns[c]) > 1]
    if shared:
        cols = columns[shared[0]]
        raise ValueError(
            f"{name}: {shared[0]!r} names {len(cols)} classes (columns {cols[:10]}); give the "
            "column index instead"
        )
    return [columns[c][0] if isinstance(c, str) else c for c in items]


def resolve_classes(
    seen_classes: Any,
    absent_classes: Any,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`calib.validation.check_classes` of S and U given as names or column indices.

    Returns both sets as sorted int64 column indices. ``class_names``: one name per column
    (checked against ``num_classes``); None: the classes must be indices.
    """
    names = check_class_names(class_names, num_classes)
    return check_classes(
        class_ids(seen_classes, names, "seen_classes"),
        class_ids(absent_classes, names, "absent_classes"),
        num_classes,
    )


def class_label(column: int, class_names: Sequence[str] | None) -> str:
    """``"dog"`` for a named column, ``"3"`` without names."""
    return str(int(column)) if class_names is None else str(class_names[int(column)])


def describe_classes(
    columns: Any, class_names: Sequence[str] | None = None, limit: int = 10
) -> str:
    """``"3 classes: 0 cat, 2 dog, 5 fish"`` (the first ``limit``, then ``...``); without names
    ``"3 classes: 0, 2, 5"``."""
    cols = [int(c) for c in np.asarray(columns).ravel()]
    shown = [str(c) if class_names is None else f"{c} {class_names[c]}" for c in cols[:limit]]
    tail = ", ..." if len(cols) > limit else ""
    return f"{len(cols)} class{'es' if len(cols) != 1 else ''}: {', '.join(shown)}{tail}"


def infer_seen_classes(
    labels: Any,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    *,
    source: str = "fine-tuning labels",
) -> np.ndarray:
    """S read off the fine-tuning labels: the sorted distinct labels, as int64 column indices.

    Opt-in (``seen_classes="infer"`` where an API offers it): the fine-tuning data must hold
    exactly the classes S, so that a class fine-tuned on but missing from these labels would be
    taken for absent. Logs (logger ``calib.classes``, INFO) which classes were found.

    Args:
        labels: (N,) integer labels of the fine-tuning data, numpy or torch.
        num_classes: C, when known: every label must be below it, and at least one column
            must be left for U.
        class_names: one name per column, for the log line.
        source: what the labels are, for the log line and the errors.

    Raises:
        ValueError: no labels, labels that are not class indices, or labels covering all
            ``num_classes`` columns (nothing would be absent).
    """
    y = as_numpy(labels, source)
    y = check_labels(y, y.shape[0] if y.ndim else 1, num_classes, name=source, rows=source)
    if y.size == 0:
        raise ValueError(f"cannot infer the seen classes: the {source} are empty")
    seen = np.unique(y).astype(np.int64, copy=False)
    if num_classes is not None and seen.size >= int(num_classes):
        raise ValueError(
            f"the {source} cover all {num_classes} classes: no class is absent, so there is "
            "nothing to calibrate (give seen_classes explicitly)"
        )
    log.info(
        "seen classes inferred from %d %s: %s", y.size, source, describe_classes(seen, class_names)
    )
    return seen
