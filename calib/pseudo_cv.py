"""Pseudo Cross-Validation (PCV) from Python: the pseudo splits of your own model and training.

PCV chooses γ without any absent-class data (Mai et al. 2024): split the seen classes S into
pseudo-seen and pseudo-absent ones, hold out part of every S class, fine-tune a copy of the
pre-trained model on the rest of the pseudo-seen data, and score the held-out S rows with it.
:class:`~calib.selectors.PseudoSplit` s are the data of the ``pcv`` selector::

    splits = calib.make_pseudo_splits(pretrained, my_finetune, train_data, seen_classes=S)
    cal = calib.LogitBiasCalibrator("pcv").fit(pseudo_splits=splits, seen_classes=S)

``my_finetune(model, data, classes)`` is your training code, called once per split with a
copy of the pre-trained model, the rows it may see (pseudo-seen classes, never a held-out row,
never a U sample) and the split's classes; it returns the fine-tuned model. The run harness
(``calib-run``) draws its splits with :func:`pseudo_subsets`, the same function.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Dataset, Subset

from calib.data.domain import dataset_targets
from calib.extract import extract, extraction_loader
from calib.selectors.spec import PseudoSplit
from calib.validation import check_classes, check_fraction, check_int

__all__ = ["PseudoClasses", "PseudoSubset", "pseudo_subsets", "make_pseudo_splits"]


@dataclass(frozen=True)
class PseudoSubset:
    """One pseudo split of S, as rows of the training data.

    Attributes:
        pseudo_seen: sorted classes of S the pseudo run fine-tunes on.
        pseudo_absent: sorted classes of S it leaves out (they receive γ with U).
        fit_rows: the rows it fine-tunes on (pseudo-seen, not held out; with ``with_absent``
            the pseudo-absent rows too).
        heldout_rows: the held-out rows of every class of S, scored by the pseudo model.
    """

    pseudo_seen: np.ndarray
    pseudo_absent: np.ndarray
    fit_rows: np.ndarray
    heldout_rows: np.ndarray


@dataclass(frozen=True)
class PseudoClasses:
    """The classes of one pseudo run, as the fine-tuning function receives them.

    Attributes:
        seen: the pseudo-seen classes (what it trains on).
        absent: every column absent from its fine-tuning: the pseudo-absent classes and U.
        num_classes: the width of the head.
        index: which split (0, 1, ...).
    """

    seen: tuple[int, ...]
    absent: tuple[int, ...]
    num_classes: int
    index: int


def pseudo_subsets(
    labels: Any,
    seen_classes: Any,
    *,
    num_splits: int = 3,
    absent_fraction: float = 0.5,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    with_absent: bool = False,
) -> list[PseudoSubset]:
    """The ``num_splits`` pseudo splits of S over training labels (split j drawn from ``seed + j``).

    Args:
        labels: (N,) training labels; rows outside S are never used (neither fitted nor scored).
        seen_classes: S.
        absent_fraction: share of the seen classes (that have samples) made pseudo-absent,
            at least 1 and at most all but one.
        holdout_fraction: share of every seen class's rows held out (at least 1 and at most
            all but one for a class with 2 rows or more).
        with_absent: the method trains on its absent classes too (the harness's
            ``oracle_all``), so the pseudo run fits the pseudo-absent rows not held out too.

    Raises:
        ValueError: fewer than 2 seen classes have samples; a bad fraction or count.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    num_splits = check_int(num_splits, "num_splits", 1)
    seed = check_int(seed, "seed", 0)
    absent_fraction = check_fraction(absent_fraction, "absent_fraction")
    holdout_fraction = check_fraction(holdout_fraction, "holdout_fraction")
    seen = np.intersect1d(np.asarray(seen_classes), labels)
    if seen.size < 2:
        raise ValueError(
            "PCV splits the seen classes into pseudo-seen and pseudo-absent ones: it needs "
            f"training samples of at least 2 seen classes, found {seen.size}"
        )
    out = []
    for j in range(num_splits):
        rng = np.random.default_rng(seed + j)
        order = rng.permutation(seen)
        n_absent = min(max(1, round(absent_fraction * seen.size)), seen.size - 1)
        pseudo_absent, pseudo_seen = np.sort(order[:n_absent]), np.sort(order[n_absent:])
        heldout = np.zeros(labels.size, dtype=bool)
        for c in seen:
            idx = np.flatnonzero(labels == c)
            n_out = int(round(holdout_fraction * idx.size))
            if idx.size >= 2:
                n_out = min(max(1, n_out), idx.size - 1)
            heldout[rng.choice(idx, size=n_out, replace=False)] = True
        fit = ~heldout & np.isin(labels, seen if with_absent else pseudo_seen)
        out.append(
            PseudoSubset(pseudo_seen, pseudo_absent, np.flatnonzero(fit), np.flatnonzero(heldout))
        )
    return out


def make_pseudo_splits(
    model: nn.Module,
    finetune: Callable[[nn.Module, Dataset, PseudoClasses], nn.Module | None],
    train_data: Dataset,
    seen_classes: Sequence[int],
    absent_classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    *,
    num_splits: int = 3,
    absent_fraction: float = 0.5,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    labels: Any = None,
    eval_data: Dataset | None = None,
    batch_size: int = 256,
    device: Any = None,
    progress: bool = True,
) -> list[PseudoSplit]:
    """The PCV pseudo splits of ``model`` fine-tuned by ``finetune``; no U sample is touched.

    For each split (defaults: 3 splits, half of S pseudo-absent, 20 % of every S class held
    out, seeded): ``finetune(copy_of_model, fit_data, classes)`` fine-tunes a deep copy of the
    pre-trained ``model`` on the pseudo-seen rows that are not held out and returns it (or
    ``None``: the copy, trained in place); the held-out S rows are then scored in eval mode
    (:func:`calib.extract.extract`). ``model`` itself is never changed.

    Args:
        model: the pre-trained model, whose output is (N, C) logits.
        finetune: your fine-tuning code (see above); it sees only ``fit_data`` (a Subset).
        train_data: the S training data; a U sample in it is an error (PCV never sees U).
        seen_classes: S. ``absent_classes``: U (default: every class not in S).
        num_classes: C (default: the width of the model's output, from one forward pass in
            eval mode).
        labels: (N,) labels of ``train_data`` when it does not expose ``.targets``.
        eval_data: the same rows with the evaluation transform (default ``train_data``).
        batch_size, device, progress: of the extraction.

    Returns:
        ``num_splits`` :class:`~calib.selectors.PseudoSplit` s: held-out logits (N_j, C) float32
        as the model returns them, their labels, the pseudo-seen classes, and the columns
        that receive γ (pseudo-absent ∪ U).

    Raises:
        ValueError: a U label (or one outside S) in ``train_data``; ``eval_data`` of another
            length; fewer than 2 seen classes with samples; a bad fraction or count.
        TypeError: ``finetune`` returned something other than a module or None.
    """
    if not callable(finetune):
        raise TypeError(
            f"finetune must be a function (model, data, classes) -> model, got {finetune!r}"
        )
    y = dataset_targets(train_data) if labels is None else np.asarray(labels)
    if y.shape != (len(train_data),):
        raise ValueError(
            f"labels must have one entry per sample ({len(train_data)}), got shape {y.shape}"
        )
    eval_data = train_data if eval_data is None else eval_data
    if len(eval_data) != len(train_data):
        raise ValueError(
            f"eval_data must hold the same rows as train_data ({len(train_data)}), got {len(eval_data)}"
        )
    if num_classes is None:  # the width of the model's output, on one held row
        probe = extract(model, extraction_loader(Subset(eval_data, [0]), 1), device, progress=False)
        num_classes = int(probe.logits.shape[1])
    seen, absent = check_classes(seen_classes, absent_classes, num_classes)
    c = num_classes
    stray = ~np.isin(y, seen)
    if stray.any():
        what = "an absent class" if np.isin(y[stray][0], absent) else "not in seen_classes"
        raise ValueError(
            f"train_data: label {int(y[stray][0])} of row {int(np.flatnonzero(stray)[0])} is "
            f"{what}; PCV uses S data only (pass the S rows of your training data)"
        )
    subsets = pseudo_subsets(
        y, seen, num_splits=num_splits, absent_fraction=absent_fraction,
        holdout_fraction=holdout_fraction, seed=seed,
    )  # fmt: skip
    splits = []
    for j, sub in enumerate(subsets):
        gamma_columns = np.union1d(sub.pseudo_absent, absent)
        classes = PseudoClasses(
            tuple(sub.pseudo_seen.tolist()), tuple(gamma_columns.tolist()), c, j
        )
        copy_ = copy.deepcopy(model)
        tuned = finetune(copy_, Subset(train_data, sub.fit_rows.tolist()), classes)
        if tuned is None:
            tuned = copy_
        if not isinstance(tuned, nn.Module):
            raise TypeError(
                f"finetune must return the fine-tuned nn.Module (or None), got {type(tuned).__name__}"
            )
        held = Subset(eval_data, sub.heldout_rows.tolist())
        scored = extract(
            tuned, extraction_loader(held, batch_size), device,
            progress=progress, desc=f"pcv split {j + 1}/{len(subsets)}",
        )  # fmt: skip
        splits.append(
            PseudoSplit(
                logits=scored.logits.numpy(),
                labels=y[sub.heldout_rows],
                seen_classes=sub.pseudo_seen,
                absent_classes=gamma_columns,
            )
        )
    return splits
