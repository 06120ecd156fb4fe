"""calib.pseudo_cv: PCV's pseudo splits from Python, without U data, with the user's training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

import calib
from calib.pseudo_cv import PseudoClasses, make_pseudo_splits, pseudo_subsets

S, U, C = [0, 1, 2, 3], [4, 5], 6


class Labelled(Dataset):
    """x: the row index as a 3-vector (so a row can be traced); labels in ``.targets``."""

    def __init__(self, labels):
        self.targets = torch.as_tensor(labels)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.full((3,), float(i)), int(self.targets[i])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, C))


LABELS = np.repeat(S, 10)  # 40 rows of S


def _spy():
    calls = []

    def finetune(model, data, classes):
        calls.append((data, classes))
        return model

    return finetune, calls


def test_the_finetuning_function_never_sees_a_heldout_row_or_a_pseudo_absent_class():
    finetune, calls = _spy()
    splits = make_pseudo_splits(_model(), finetune, Labelled(LABELS), S, progress=False)
    assert len(splits) == len(calls) == 3  # the documented default
    for split, (data, classes) in zip(splits, calls, strict=True):
        assert isinstance(data, Subset) and isinstance(classes, PseudoClasses)
        rows = np.asarray(data.indices)
        assert set(LABELS[rows]) <= set(classes.seen)  # pseudo-seen rows only
        # the held-out rows are what the split scores; none of them was trained on
        scored_rows = {int(x) for x in np.asarray(_traced_rows(split))}
        assert scored_rows.isdisjoint(rows.tolist())
        assert set(split.labels.tolist()) == set(S)  # every S class is held out in part
        assert classes.absent == tuple(np.asarray(split.absent_classes).tolist())
        assert set(classes.absent) == set(np.setdiff1d(S, classes.seen)) | set(U)
        assert classes.num_classes == C


def _traced_rows(split) -> np.ndarray:
    """The rows a split scored, recovered from the logits of the identity-trained model."""
    model = _model().eval()
    with torch.no_grad():
        all_logits = model(torch.arange(LABELS.size, dtype=torch.float32)[:, None].repeat(1, 3))
    match = (torch.as_tensor(split.logits)[:, None, :] - all_logits[None]).abs().amax(-1)
    return match.argmin(dim=1).numpy()


def test_a_sample_of_an_absent_class_is_refused():
    finetune, calls = _spy()
    with pytest.raises(ValueError, match=r"label 4 of row 40 is an absent class; PCV uses S data"):
        make_pseudo_splits(_model(), finetune, Labelled(np.r_[LABELS, 4]), S, progress=False)
    assert calls == []  # refused before any training


def test_the_pretrained_model_is_not_changed_and_scoring_runs_in_eval_mode():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def finetune(copy_, data, classes):
        with torch.no_grad():
            for p in copy_.parameters():
                p.add_(1.0)  # "training" changes the copy only
        copy_.train()
        return None  # the copy, trained in place

    splits = make_pseudo_splits(model, finetune, Labelled(LABELS), S, U, progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training  # left as it was
    # eval mode: the same rows scored twice give the same logits (no dropout, BN statistics)
    again = make_pseudo_splits(model, finetune, Labelled(LABELS), S, U, progress=False)
    for a, b in zip(splits, again, strict=True):
        np.testing.assert_array_equal(a.logits, b.logits)


def test_the_splits_feed_the_pcv_selector():
    splits = make_pseudo_splits(
        _model(), lambda m, d, c: m, Labelled(LABELS), S, num_splits=2, progress=False
    )
    cal = calib.LogitBiasCalibrator("pcv").fit(pseudo_splits=splits, seen_classes=S)
    assert np.isfinite(cal.gamma_)
    assert cal.info_["n_splits"] == 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"absent_fraction": 1.0},
            ValueError,
            r"absent_fraction must be a number in \(0, 1\), got 1.0",
        ),
        (
            {"holdout_fraction": "0.2"},
            ValueError,
            "holdout_fraction must be a number in \\(0, 1\\), got '0.2'",
        ),
        ({"num_splits": 0}, ValueError, "num_splits must be an integer ≥ 1, got 0"),
        ({"labels": [0, 1]}, ValueError, r"labels must have one entry per sample \(40\)"),
    ],
)
def test_bad_settings_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_pseudo_splits(
            _model(), lambda m, d, c: m, Labelled(LABELS), S, progress=False, **kwargs
        )


def test_a_finetuning_function_returning_something_else_is_named():
    with pytest.raises(TypeError, match="finetune must return the fine-tuned nn.Module"):
        make_pseudo_splits(_model(), lambda m, d, c: "done", Labelled(LABELS), S, progress=False)


def test_the_partition_is_the_harness_partition():
    """calib-run draws its PCV splits with the same function (same seed → same rows)."""
    from calib.data import ClassSplit
    from calib.run.settings import PCVConfig
    from calib.run.stage_plan import pcv_subsets

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=300)
    split = ClassSplit((0, 1, 2, 3, 4), (5, 6, 7, 8, 9), 10)
    pcv = PCVConfig(num_splits=3, absent_fraction=0.5, holdout_fraction=0.2, seed=7)
    ours = pseudo_subsets(
        labels, split.seen, num_splits=3, absent_fraction=0.5, holdout_fraction=0.2, seed=7
    )
    for a, b in zip(ours, pcv_subsets(labels, split, pcv), strict=True):
        for field in ("pseudo_seen", "pseudo_absent", "fit_rows", "heldout_rows"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_given_subsets_replace_the_drawing():
    """The splits of ``subsets=pseudo_subsets(...)`` are those drawn with the same settings."""
    drawn = make_pseudo_splits(
        _model(), lambda m, d, c: m, Labelled(LABELS), S, U, num_splits=2, seed=5, progress=False
    )
    subsets = pseudo_subsets(LABELS, S, num_splits=2, seed=5)
    given = make_pseudo_splits(
        _model(), lambda m, d, c: m, Labelled(LABELS), S, U, subsets=subsets, progress=False
    )
    for a, b in zip(drawn, given, strict=True):
        for field in ("logits", "labels", "seen_classes", "absent_classes"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_subsets_with_absent_rows_reach_the_finetuning_and_no_heldout_row_does():
    finetune, calls = _spy()
    subsets = pseudo_subsets(LABELS, S, num_splits=2, with_absent=True)
    make_pseudo_splits(_model(), finetune, Labelled(LABELS), S, subsets=subsets, progress=False)
    for sub, (data, classes) in zip(subsets, calls, strict=True):
        rows = np.asarray(data.indices)
        np.testing.assert_array_equal(rows, sub.fit_rows)
        assert set(LABELS[rows]) == set(S)  # pseudo-absent rows too, as asked
        assert not np.isin(rows, sub.heldout_rows).any()
        assert classes.seen == tuple(sub.pseudo_seen.tolist())


def test_score_replaces_the_extraction_and_knows_its_split():
    calls = []

    def score(model, data, classes):
        calls.append((classes.index, np.asarray(data.indices)))
        return torch.full((len(data), C), float(classes.index))

    splits = make_pseudo_splits(
        _model(), lambda m, d, c: m, Labelled(LABELS), S, num_splits=2, score=score
    )
    subsets = pseudo_subsets(LABELS, S, num_splits=2)
    assert [j for j, _ in calls] == [0, 1]
    for j, (split, sub, (_, rows)) in enumerate(zip(splits, subsets, calls, strict=True)):
        np.testing.assert_array_equal(rows, sub.heldout_rows)  # scored: the held-out rows
        np.testing.assert_array_equal(split.logits, np.full((rows.size, C), float(j)))
        np.testing.assert_array_equal(split.labels, LABELS[rows])


def _subset(**change):
    sub = pseudo_subsets(LABELS, S, num_splits=1)[0]
    fields = {f: getattr(sub, f) for f in ("pseudo_seen", "pseudo_absent", "fit_rows")}
    return calib.pseudo_cv.PseudoSubset(**{**fields, "heldout_rows": sub.heldout_rows, **change})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"subsets": pseudo_subsets(LABELS, S, num_splits=1), "seed": 3},
            ValueError,
            r"pass either subsets or the settings that draw them, got both \(subsets and seed=3\)",
        ),
        ({"subsets": []}, ValueError, "subsets must be a non-empty sequence of PseudoSubset"),
        ({"subsets": [(0, 1)]}, TypeError, r"subsets\[0\] must be a PseudoSubset, got tuple"),
        (
            {"subsets": [_subset(heldout_rows=np.array([0, 40]))]},
            ValueError,
            r"subsets\[0\].heldout_rows: 40 is not a row of train_data \(40 rows\)",
        ),
        (
            {"subsets": [_subset(fit_rows=np.r_[_subset().fit_rows, _subset().heldout_rows[:1]])]},
            ValueError,
            rf"subsets\[0\]: row {_subset().heldout_rows[0]} is both fitted and held out",
        ),
        (
            {"subsets": [_subset(pseudo_absent=np.array([4]))]},
            ValueError,
            r"must be non-empty, disjoint sets of seen_classes",
        ),
        (
            {
                "subsets": [
                    _subset(
                        pseudo_seen=np.array([0, 1]),
                        pseudo_absent=np.array([2]),
                        fit_rows=np.flatnonzero(LABELS == 3)[:1],
                    )
                ]
            },
            ValueError,
            r"subsets\[0\]: fitted row 30 is of class 3, neither pseudo-seen nor pseudo-absent",
        ),
        (
            {"subsets": [_subset(heldout_rows=np.array([], dtype=int))]},
            ValueError,
            r"subsets\[0\] holds no held-out row",
        ),
        (
            {"score": lambda m, d, c: np.zeros((len(d), C - 1))},
            ValueError,
            rf"score must return the \(8, {C}\) logits of split 0's held-out rows, got shape",
        ),
        ({"score": "extract"}, TypeError, "score must be a function"),
    ],
)
def test_bad_subsets_and_score_are_named(kwargs, error, message):
    finetune, calls = _spy()
    with pytest.raises(error, match=message):
        make_pseudo_splits(_model(), finetune, Labelled(LABELS), S, progress=False, **kwargs)


def test_score_may_stream_each_split_into_a_state():
    """score returning a SeenAbsentState of the split: the pcv γ of the logits' splits."""
    from calib import SeenAbsentState
    from calib.extract import extract, extract_state, extraction_loader

    def logits(model, data, classes):
        return extract(model, extraction_loader(data, 7), progress=False).logits

    def state(model, data, classes):
        fresh = SeenAbsentState(classes.num_classes, classes.seen, classes.absent)
        return extract_state(model, extraction_loader(data, 7), fresh, progress=False)

    run = {"num_splits": 2, "progress": False}
    by_logits = make_pseudo_splits(
        _model(), lambda m, d, c: m, Labelled(LABELS), S, **run, score=logits
    )
    by_state = make_pseudo_splits(
        _model(), lambda m, d, c: m, Labelled(LABELS), S, **run, score=state
    )
    assert all(isinstance(s, SeenAbsentState) for s in by_state)
    want = calib.LogitBiasCalibrator("pcv").fit(pseudo_splits=by_logits, seen_classes=S)
    got = calib.LogitBiasCalibrator("pcv").fit(pseudo_splits=by_state, seen_classes=S)
    assert got.gamma_ == pytest.approx(want.gamma_, rel=1e-9, abs=1e-12)

    def wrong_classes(model, data, classes):
        return SeenAbsentState(C, S).update(np.zeros((len(data), C)), np.zeros(len(data), int))

    with pytest.raises(ValueError, match="state of other classes than split 0's"):
        make_pseudo_splits(
            _model(), lambda m, d, c: m, Labelled(LABELS), S, **run, score=wrong_classes
        )
    answers = iter([state, logits])

    def mixed(model, data, classes):
        return next(answers)(model, data, classes)

    with pytest.raises(TypeError, match="returned logits for split 1 but not for split 0"):
        make_pseudo_splits(_model(), lambda m, d, c: m, Labelled(LABELS), S, **run, score=mixed)
