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
(``calib-run``) runs its PCV stage through the same function: its partition (drawn by
:func:`pseudo_subsets` when the run is planned), its method's resumable fine-tuning and its
cached scoring go in as ``subsets``, ``finetune`` and ``score``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from calib.class_names import check_class_names, class_ids, resolve_classes
from calib.data.domain import dataset_targets
from calib.extract import extract, extraction_loader
from calib.metrics.streaming import SeenAbsentState
from calib.selectors.spec import PseudoSplit
from calib.validation import check_fraction, check_int

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
    class_names: Sequence[str] | None = None,
) -> list[PseudoSubset]:
    """The ``num_splits`` pseudo splits of S over training labels (split j drawn from ``seed + j``).

    Args:
        labels: (N,) training labels; rows outside S are never used (neither fitted nor scored).
        seen_classes: S: column indices, or names given ``class_names`` (one name per column,
            index = label).
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
    seen_classes = class_ids(seen_classes, check_class_names(class_names), "seen_classes")
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


#: The drawing settings of :func:`make_pseudo_splits` (and their defaults), which ``subsets``
#: replaces.
_DRAW_DEFAULTS = {"num_splits": 3, "absent_fraction": 0.5, "holdout_fraction": 0.2, "seed": 0}


def make_pseudo_splits(
    model: nn.Module,
    finetune: Callable[[nn.Module, Dataset, PseudoClasses], nn.Module | None],
    train_data: Dataset,
    seen_classes: Sequence[int | str],
    absent_classes: Sequence[int | str] | None = None,
    num_classes: int | None = None,
    *,
    num_splits: int = 3,
    absent_fraction: float = 0.5,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    subsets: Sequence[PseudoSubset] | None = None,
    labels: Any = None,
    eval_data: Dataset | None = None,
    score: Callable[[nn.Module, Dataset, PseudoClasses], Any] | None = None,
    batch_size: int = 256,
    device: Any = None,
    progress: bool = True,
    class_names: Sequence[str] | None = None,
) -> list[PseudoSplit] | list[SeenAbsentState]:
    """The PCV pseudo splits of ``model`` fine-tuned by ``finetune``; no U sample is touched.

    For each split (defaults: 3 splits, half of S pseudo-absent, 20 % of every S class held
    out, seeded; drawn by :func:`pseudo_subsets`): ``finetune(copy_of_model, fit_data,
    classes)`` fine-tunes a deep copy of the pre-trained ``model`` on the pseudo-seen rows
    that are not held out and returns it (or ``None``: the copy, trained in place); the
    held-out S rows are then scored in eval mode (:func:`calib.extract.extract`, or
    ``score``). ``model`` itself is never changed. ``classes.index`` tells ``finetune`` and
    ``score`` which split they work on (0, 1, ...), e.g. to keep each split's checkpoints
    apart.

    Args:
        model: the pre-trained model, whose output is (N, C) logits.
        finetune: your fine-tuning code (see above); it sees only ``fit_data``, a
            :class:`~torch.utils.data.Subset` of ``train_data``.
        train_data: the S training data; a U sample in it is an error (PCV never sees U).
        seen_classes: S. ``absent_classes``: U (default: every class not in S). Column
            indices, or names given ``class_names``.
        num_classes: C (default: the width of the model's output, from one forward pass in
            eval mode).
        num_splits, absent_fraction, holdout_fraction, seed: how the splits are drawn.
        subsets: the splits already drawn (:class:`PseudoSubset` s whose rows index
            ``train_data``, e.g. :func:`pseudo_subsets` with ``with_absent=True`` for a
            fine-tuning that trains on its absent classes too); they replace the drawing,
            whose settings must then be left at their defaults.
        labels: (N,) labels of ``train_data`` when it does not expose ``.targets``.
        eval_data: the same rows with the evaluation transform (default ``train_data``).
        score: ``score(tuned_model, heldout_data, classes)`` returns the (N_j, C) logits of
            the rows of ``heldout_data`` (a Subset of ``eval_data``) in order, e.g. from a
            cache of your own (default: :func:`calib.extract.extract` in eval mode); or a
            labelled :class:`calib.SeenAbsentState` of them, built with the split's classes
            (``classes.seen``, ``classes.absent``), e.g. from
            :func:`calib.extract.extract_state`: the split's data in O(N_j) numbers.
        batch_size, device, progress: of the default scoring.
        class_names: one name per column (index = label), so that S and U may be names (a
            name that is not a class stops before any training, with the closest names).
            The splits hold column indices.

    Returns:
        ``num_splits`` (or ``len(subsets)``) :class:`~calib.selectors.PseudoSplit` s:
        held-out logits (N_j, C) as the model returns them (float32 from the default
        scoring), their labels, the pseudo-seen classes, and the columns that receive γ
        (pseudo-absent ∪ U). With a ``score`` that returns states: those states, one per
        split (the ``pcv`` selector takes either list).

    Raises:
        ValueError: a U label (or one outside S) in ``train_data``; ``eval_data`` of another
            length; fewer than 2 seen classes with samples; a bad fraction or count;
            ``subsets`` with drawing settings, or with rows that are not a pseudo split of
            ``train_data``; ``score`` returned logits of another shape, a state of other
            rows or classes, or states for some splits and logits for others.
        TypeError: ``finetune`` (``score``) is not a function; ``finetune`` returned something
            other than a module or None.
    """
    if not callable(finetune):
        raise TypeError(
            f"finetune must be a function (model, data, classes) -> model, got {finetune!r:.80}"
        )
    if score is not None and not callable(score):
        raise TypeError(
            f"score must be a function (model, data, classes) -> logits, got {score!r:.80}"
        )
    names = check_class_names(class_names, num_classes)
    class_ids(seen_classes, names, "seen_classes")  # a misspelt name stops before any run
    class_ids(absent_classes, names, "absent_classes")
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
    seen, absent = resolve_classes(seen_classes, absent_classes, num_classes, names)
    c = num_classes
    stray = ~np.isin(y, seen)
    if stray.any():
        what = "an absent class" if np.isin(y[stray][0], absent) else "not in seen_classes"
        raise ValueError(
            f"train_data: label {int(y[stray][0])} of row {int(np.flatnonzero(stray)[0])} is "
            f"{what}; PCV uses S data only (pass the S rows of your training data)"
        )
    draw = {
        "num_splits": num_splits, "absent_fraction": absent_fraction,
        "holdout_fraction": holdout_fraction, "seed": seed,
    }  # fmt: skip
    if subsets is None:
        subsets = pseudo_subsets(y, seen, **draw)
    else:
        changed = [f"{k}={v!r}" for k, v in draw.items() if v != _DRAW_DEFAULTS[k]]
        if changed:
            raise ValueError(
                f"pass either subsets or the settings that draw them, got both (subsets and "
                f"{', '.join(changed)})"
            )
        subsets = _check_subsets(subsets, y, seen)
    if score is None:

        def score(tuned: nn.Module, held: Dataset, classes: PseudoClasses) -> Any:
            return extract(
                tuned, extraction_loader(held, batch_size), device,
                progress=progress, desc=f"pcv split {classes.index + 1}/{len(subsets)}",
            ).logits  # fmt: skip

    splits = []
    for j, sub in enumerate(subsets):
        gamma_columns = np.union1d(sub.pseudo_absent, absent)
        classes = PseudoClasses(
            tuple(sub.pseudo_seen.tolist()), tuple(gamma_columns.tolist()), c, j
        )
        copy_ = copy.deepcopy(model)
        tuned = finetune(copy_, Subset(train_data, sub.fit_rows.tolist()), classes)
        tuned = copy_ if tuned is None else tuned
        del copy_  # a finetune that trains a copy of its own: one model fewer while scoring
        if not isinstance(tuned, nn.Module):
            raise TypeError(
                f"finetune must return the fine-tuned nn.Module (or None), got {type(tuned).__name__}"
            )
        held = Subset(eval_data, sub.heldout_rows.tolist())
        scored = score(tuned, held, classes)
        is_state = isinstance(scored, SeenAbsentState)
        if splits and is_state != isinstance(splits[0], SeenAbsentState):
            given = "a SeenAbsentState" if is_state else "logits"
            raise TypeError(
                f"score returned {given} for split {j} but not for split 0: return states for "
                "every split or logits for every split"
            )
        if is_state:
            splits.append(_checked_state(scored, len(held), classes))
            continue
        logits = _as_numpy(scored)
        if logits.shape != (len(held), c):
            raise ValueError(
                f"score must return the ({len(held)}, {c}) logits of split {j}'s held-out rows, "
                f"got shape {logits.shape}"
            )
        splits.append(
            PseudoSplit(
                logits=logits,
                labels=y[sub.heldout_rows],
                seen_classes=sub.pseudo_seen,
                absent_classes=gamma_columns,
            )
        )
    return splits


def _checked_state(state: SeenAbsentState, n: int, classes: PseudoClasses) -> SeenAbsentState:
    """``state`` when it holds the ``n`` held-out rows of split ``classes.index`` with the
    split's classes; ValueError naming the split else."""
    j = classes.index
    if state.n_samples != n or state.num_classes != classes.num_classes:
        raise ValueError(
            f"score must return the state of split {j}'s {n} held-out rows over "
            f"{classes.num_classes} columns, got {state.n_samples} rows over {state.num_classes}"
        )
    if not (
        np.array_equal(state.seen_classes, classes.seen)
        and np.array_equal(state.absent_classes, classes.absent)
    ):
        raise ValueError(
            f"score returned a state of other classes than split {j}'s (seen "
            f"{list(classes.seen)[:10]}, receiving γ {list(classes.absent)[:10]})"
        )
    return state


def _as_numpy(logits: Any) -> np.ndarray:
    if isinstance(logits, torch.Tensor):
        return logits.detach().cpu().numpy()
    return np.asarray(logits)


def _check_subsets(subsets: Any, labels: np.ndarray, seen: np.ndarray) -> list[PseudoSubset]:
    """``subsets`` as a list of :class:`PseudoSubset` s of int64 arrays, each checked to be a
    pseudo split of the rows of ``labels`` over S.

    Raises:
        ValueError: none given; rows not 1-D integers, out of range, both fitted and held
            out, or fitted from a class the split neither sees nor leaves pseudo-absent; no
            held-out row; classes outside S, both pseudo-seen and pseudo-absent, or none of
            either.
        TypeError: an entry is not a :class:`PseudoSubset`.
    """
    if isinstance(subsets, (str, bytes)) or not isinstance(subsets, Sequence) or not subsets:
        raise ValueError(
            f"subsets must be a non-empty sequence of PseudoSubset, got {subsets!r:.80}"
        )
    n, out = labels.size, []
    for j, sub in enumerate(subsets):
        if not isinstance(sub, PseudoSubset):
            raise TypeError(f"subsets[{j}] must be a PseudoSubset, got {type(sub).__name__}")
        arrays = {}
        for name in ("pseudo_seen", "pseudo_absent", "fit_rows", "heldout_rows"):
            a = np.asarray(getattr(sub, name))
            if a.ndim != 1 or not (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
                raise ValueError(f"subsets[{j}].{name} must be 1-D integers, got {a!r:.80}")
            arrays[name] = a.astype(np.int64, copy=False)
        sub = PseudoSubset(**arrays)
        for rows, name in ((sub.fit_rows, "fit_rows"), (sub.heldout_rows, "heldout_rows")):
            bad = rows[(rows < 0) | (rows >= n)]
            if bad.size:
                raise ValueError(
                    f"subsets[{j}].{name}: {int(bad[0])} is not a row of train_data ({n} rows)"
                )
        if sub.heldout_rows.size == 0:
            raise ValueError(f"subsets[{j}] holds no held-out row: nothing to score")
        both = np.intersect1d(sub.fit_rows, sub.heldout_rows)
        if both.size:
            raise ValueError(f"subsets[{j}]: row {int(both[0])} is both fitted and held out")
        classes = np.concatenate([sub.pseudo_seen, sub.pseudo_absent])
        if (
            sub.pseudo_seen.size == 0
            or sub.pseudo_absent.size == 0
            or not np.isin(classes, seen).all()
            or np.unique(classes).size != classes.size
        ):
            raise ValueError(
                f"subsets[{j}]: pseudo_seen {sub.pseudo_seen.tolist()} and pseudo_absent "
                f"{sub.pseudo_absent.tolist()} must be non-empty, disjoint sets of seen_classes"
            )
        stray = ~np.isin(labels[sub.fit_rows], classes)
        if stray.any():
            raise ValueError(
                f"subsets[{j}]: fitted row {int(sub.fit_rows[stray][0])} is of class "
                f"{int(labels[sub.fit_rows][stray][0])}, neither pseudo-seen nor pseudo-absent"
            )
        out.append(sub)
    return out
