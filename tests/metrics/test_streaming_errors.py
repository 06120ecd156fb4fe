"""SeenAbsentState: bad input stops with one line naming the problem, never a number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.metrics.streaming import SeenAbsentState

Z = np.arange(24, dtype=np.float64).reshape(4, 6) % 5
Y = np.array([0, 1, 4, 5])


def state(**kwargs) -> SeenAbsentState:
    return SeenAbsentState(6, [0, 1, 2], **kwargs)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=1, seen_classes=[0]), "num_classes must be an integer ≥ 2, got 1"),
        (dict(num_classes=6, seen_classes=[0, 9]), r"seen_classes out of range: \[9\]"),
        (dict(num_classes=6, seen_classes=[0], absent_classes=[0]), "overlap"),
        (dict(num_classes=6, seen_classes=[0], topk=(0,)), "topk must be an integer ≥ 1, got 0"),
        (dict(num_classes=6, seen_classes=[0], topk=5), "topk must be a collection"),
        (dict(num_classes=6, seen_classes=[0], gammas=[float("nan")]), "gammas is NaN"),
        (dict(num_classes=6, seen_classes=[0], topk=(5,), gammas=()), "needs at least one γ"),
        (dict(num_classes=6, seen_classes=[0], alg="yes"), "alg must be True or False"),
        (dict(num_classes=6, seen_classes=[0], keep_gaps=False), "keeps nothing without alg"),
        (
            dict(num_classes=6, seen_classes=[0], alg=True, keep_gaps=False, topk=(2,)),
            "needs keep_gaps=True",
        ),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        SeenAbsentState(**kwargs)
    one_line(err)


@pytest.mark.parametrize(
    "logits, labels, match",
    [
        (np.zeros((4, 5)), Y, "logits have 5 columns but the state was built for num_classes=6"),
        (np.zeros(6), Y[:1], "logits must be 2-D"),
        (Z, np.array([0, 1, 2, 6]), r"labels out of range: 1 label\(s\) outside \[0, 6\), e.g. 6"),
        (Z, np.array([0, -1, 2, 3]), "labels out of range"),
        (Z, Y[:3], "labels has 3 entries but logits have 4 rows"),
        (Z, np.array([0.5, 1, 2, 3]), "labels must be integer class indices, got"),
        (np.where(Z == 3, np.nan, Z), Y, r"logits has \d+ non-finite value\(s\), NaN or \+inf"),
        (np.where(Z == 3, np.inf, Z), Y, r"non-finite value\(s\), NaN or \+inf"),
        (np.full((4, 6), -np.inf), Y, "has -inf in every column"),
        (torch.tensor(Z).masked_fill(torch.tensor(Z) == 2, float("nan")), Y, "non-finite"),
    ],
)
def test_bad_batches_are_named(logits, labels, match):
    s = state()
    with pytest.raises(ValueError, match=match) as err:
        s.update(logits, labels)
    one_line(err)
    assert len(s) == 0  # nothing of the bad batch was kept


@pytest.mark.parametrize(
    "weight, match",
    [
        ([1.0, 1.0, -1.0, 1.0], "sample_weight must be ≥ 0, got -1.0 at sample 2"),
        ([1.0, np.nan, 1.0, 1.0], r"sample_weight has 1 non-finite value\(s\)"),
        ([1.0, 1.0], "sample_weight has 2 entries but logits have 4 rows"),
        (np.ones((4, 1)), "sample_weight must be 1-D"),
    ],
)
def test_bad_weights_are_named(weight, match):
    with pytest.raises(ValueError, match=match) as err:
        state().update(Z, Y, sample_weight=weight)
    one_line(err)


def test_a_stream_whose_weights_are_all_zero_has_no_accuracy():
    s = state().update(Z, Y, sample_weight=np.zeros(4))
    with pytest.raises(ValueError, match="sample_weight is 0 for every sample"):
        s.report(0.0)
    with pytest.raises(ValueError, match="sample_weight is 0 for every sample"):
        s.curve()


def test_mixing_labelled_and_unlabelled_or_indexed_batches_is_refused():
    s = state().update(Z, Y)
    with pytest.raises(ValueError, match="labels missing for a batch of a labelled state"):
        s.update(Z)
    u = state().update(Z)
    with pytest.raises(ValueError, match="labels given for a batch of a unlabelled state"):
        u.update(Z, Y)
    with pytest.raises(ValueError, match="curve needs labels"):
        u.curve()
    i = state().update(Z, Y, index=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="index given for some batches and not for others"):
        i.update(Z, Y)
    with pytest.raises(ValueError, match="index repeats a sample within one batch"):
        state().update(Z, Y, index=[0, 1, 1, 3])
    with pytest.raises(ValueError, match="index out of range"):
        state().update(Z, Y, index=[0, 1, -2, 3])


def test_reading_an_empty_state_or_an_untracked_topk_is_refused():
    with pytest.raises(ValueError, match="report: the state holds no sample yet"):
        state().report()
    s = state(topk=(2,), gammas=(0.0,)).update(Z, Y)
    with pytest.raises(ValueError, match=r"top-k at gamma=1.0: the state keeps ranks at"):
        s.report(1.0)
    assert s.report(1.0, topk=())["acc_all"] >= 0  # top-1: any γ
    with pytest.raises(ValueError, match=r"tracks top-k for k in \[2\] only"):
        s.report(0.0, topk=(1, 5))
    with pytest.raises(ValueError, match="gamma is NaN"):
        s.report(float("nan"), topk=())


def test_merge_of_different_states_is_refused():
    a = state().update(Z, Y)
    for other, match in (
        (SeenAbsentState(6, [0, 1]), r"different seen_classes \(\[0, 1, 2\] vs \[0, 1\]\)"),
        (SeenAbsentState(7, [0, 1, 2], [3, 4, 5]), "different num_classes"),
        (state(topk=(5,)), "different topk"),
        (state().update(Z), "cannot merge a labelled state with one that is not"),
    ):
        with pytest.raises(ValueError, match=match) as err:
            a.merge(other)
        one_line(err)
    with pytest.raises(TypeError, match="merge needs a SeenAbsentState, got ndarray"):
        a.merge(Z)


def test_sync_without_a_process_group_is_refused():
    with pytest.raises(RuntimeError, match="sync\\(\\) needs an initialised torch.distributed"):
        state().update(Z, Y).sync()
    with pytest.raises(ValueError, match="order must be one of"):
        state().sync(order="random")


def test_extend_takes_back_only_what_reduce_made():
    s = state()
    cols = s.reduce(Z, Y)
    assert state().extend(cols).report(0.0) == state().update(Z, Y).report(0.0)
    with pytest.raises(ValueError, match=r"unknown: \['logits'\]"):
        state().extend(cols | {"logits": Z})
    with pytest.raises(ValueError, match="columns of different lengths"):
        state().extend(cols | {"gap": cols["gap"][:2]})
    with pytest.raises(ValueError, match="are not those of this state's reduce"):
        state(topk=(2,)).extend(cols)
    with pytest.raises(ValueError, match="columns without labels for a state with them"):
        state().update(Z, Y).extend(state().reduce(Z))


def test_an_alg_only_state_refuses_what_needs_the_gaps():
    light = state(alg=True, keep_gaps=False).update(Z, np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        light.update(np.where(Z == 3, np.nan, Z), Y)
    for read in (light.curve, light.report, light.ausuc):
        with pytest.raises(ValueError, match="needs the gaps, but the state was built with keep"):
            read()


def test_a_topk_wider_than_the_classes_is_warned_about_as_in_accuracy_report():
    with pytest.warns(RuntimeWarning, match="k=8 exceeds the 6 classes"):
        SeenAbsentState(6, [0, 1], topk=(2, 8))
