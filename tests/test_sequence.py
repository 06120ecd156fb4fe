"""calib.sequence: fine-tunings one after another, each stage calibrated with its own S data only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import extract, extraction_loader
from calib.metrics.accuracy import accuracy_report
from calib.pseudo_cv import PseudoClasses, make_pseudo_splits
from calib.selectors import SELECTORS, register_selector
from calib.sequence import NO_CALIBRATION, Stage, StageResult, finetune_sequence
from tests import brute

C = 6
CLASSES = ([0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4])
PCV = {"num_splits": 2}


class Blobs(Dataset):
    """Gaussian blobs, one per class, in 4 dimensions; labels in ``.targets``."""

    def __init__(self, labels, seed):
        rng = np.random.default_rng(seed)
        centres = np.random.default_rng(99).normal(0, 2.0, (C, 4))
        self.targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.x = torch.as_tensor(centres[labels] + rng.normal(0, 1.0, (len(labels), 4))).float()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])


def _pretrained() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, C))


def _train(model, data, classes):
    """Deterministic full-batch gradient descent (its seed from the data's size and the split)."""
    torch.manual_seed(len(data) + classes.index)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.as_tensor([data[i][1] for i in range(len(data))])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def _stages(seed=1):
    return [Stage(Blobs(np.repeat(cs, 12), seed + k), cs) for k, cs in enumerate(CLASSES)]


TEST = Blobs(np.repeat(np.arange(C), 10), 7)


def _spy():
    calls = []

    def finetune(model, data, classes):
        calls.append((data, classes, {k: v.clone() for k, v in model.state_dict().items()}, model))
        return _train(model, data, classes)

    return finetune, calls


def _run(finetune=_train, stages=None, selectors=("alg", "pcv"), **kw):
    stages = _stages() if stages is None else stages
    return finetune_sequence(
        _pretrained(), finetune, stages, TEST, selectors, pcv_options=PCV, progress=False, **kw
    )


@pytest.fixture(scope="module")
def spied():
    finetune, calls = _spy()
    stages = _stages()
    pretrained = _pretrained()
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    results = finetune_sequence(
        pretrained, finetune, stages, TEST, ("alg", "pcv"), pcv_options=PCV, progress=False
    )
    return stages, calls, results, pretrained, before


def test_each_stage_trains_on_its_own_data_only(spied):
    stages, calls, results, _, _ = spied
    per_stage = 1 + PCV["num_splits"]  # the stage's fine-tuning, then its PCV pseudo runs
    assert len(calls) == per_stage * len(stages)
    for k, stage in enumerate(stages):
        own = calls[k * per_stage : (k + 1) * per_stage]
        data, classes = own[0][0], own[0][1]
        assert data is stage.train_data
        assert classes == PseudoClasses(
            tuple(CLASSES[k]), tuple(set(range(C)) - set(CLASSES[k])), C, k
        )
        for data, classes, _, _ in own[1:]:  # PCV: rows of this stage's data, pseudo-seen only
            assert isinstance(data, Subset) and data.dataset is stage.train_data
            labels = stage.train_data.targets.numpy()[data.indices]
            assert set(labels.tolist()) <= set(classes.seen) < set(CLASSES[k])


def test_stage_k_starts_from_a_copy_of_checkpoint_k_minus_1_which_stays_as_it_was(spied):
    stages, calls, results, pretrained, before = spied
    per_stage = 1 + PCV["num_splits"]
    for k in range(len(stages)):
        start = before if k == 0 else results[k - 1].model.state_dict()
        start_model = pretrained if k == 0 else results[k - 1].model
        for _, _, state, model in calls[k * per_stage : (k + 1) * per_stage]:
            assert model is not start_model  # a copy: stage k's training cannot change it
            assert state.keys() == start.keys()
            assert all(torch.equal(state[name], start[name]) for name in state)
        assert results[k].model is calls[k * per_stage][3]
    after = pretrained.state_dict()
    assert all(torch.equal(after[name], before[name]) for name in before)
    # checkpoint k-1 still scores as it did when its stage ended
    for k, result in enumerate(results):
        again = extract(result.model, extraction_loader(TEST), progress=False).logits.numpy()
        np.testing.assert_array_equal(again, result.test_logits)


def test_s_grows_and_u_shrinks(spied):
    _, _, results, _, _ = spied
    assert [type(r) for r in results] == [StageResult] * 3
    assert [r.index for r in results] == [0, 1, 2]
    for r, cs in zip(results, CLASSES, strict=True):
        assert r.seen_classes.tolist() == cs
        assert r.absent_classes.tolist() == sorted(set(range(C)) - set(cs))
        for cal in r.calibrators.values():
            assert cal.seen_classes_.tolist() == cs
            assert cal.absent_classes_.tolist() == r.absent_classes.tolist()
    sizes = [r.absent_classes.size for r in results]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_pcv_splits_come_from_the_stage_s_data_only(spied):
    stages, calls, results, _, _ = spied
    per_stage = 1 + PCV["num_splits"]
    for k, (r, stage) in enumerate(zip(results, stages, strict=True)):
        assert len(r.pseudo_splits) == PCV["num_splits"]
        pseudo_models = [call[3] for call in calls[k * per_stage + 1 : (k + 1) * per_stage]]
        for split, pseudo in zip(r.pseudo_splits, pseudo_models, strict=True):
            assert set(split.labels.tolist()) == set(r.seen_classes.tolist())
            assert set(split.seen_classes.tolist()) < set(r.seen_classes.tolist())
            assert set(r.absent_classes.tolist()) <= set(split.absent_classes.tolist())
            # every scored row is a row of this stage's training data, scored by its pseudo model
            own = extract(pseudo, extraction_loader(stage.train_data), progress=False).logits
            dist = (torch.as_tensor(split.logits)[:, None] - own[None]).abs().amax(-1)
            best, row = dist.min(dim=1)
            assert float(best.max()) < 1e-5
            np.testing.assert_array_equal(stage.train_data.targets.numpy()[row], split.labels)


@pytest.fixture
def spy_selectors():
    """Selectors that record the labels they receive (S data kinds)."""
    seen_labels: dict[str, list] = {"train": [], "splits": []}

    @register_selector("x_spy_train", data="finetune_train")
    def spy_train(logits, labels, seen_classes, absent_classes, num_classes):
        seen_labels["train"].append((np.asarray(labels).copy(), seen_classes.copy()))
        return 0.0, {}

    @register_selector("x_spy_splits", data="pseudo_splits")
    def spy_splits(pseudo_splits, seen_classes, absent_classes, num_classes):
        labels = np.concatenate([np.asarray(s.labels) for s in pseudo_splits])
        seen_labels["splits"].append((labels, seen_classes.copy()))
        return 0.0, {}

    try:
        yield seen_labels
    finally:
        SELECTORS.unregister("x_spy_train")
        SELECTORS.unregister("x_spy_splits")


def test_the_calibrators_of_stage_k_never_see_a_u_k_sample(spy_selectors):
    results = _run(selectors=("x_spy_train", "x_spy_splits"))
    for kind in ("train", "splits"):
        got = spy_selectors[kind]
        assert len(got) == len(CLASSES)
        for (labels, seen), r in zip(got, results, strict=True):
            assert seen.tolist() == r.seen_classes.tolist()
            assert not np.isin(labels, r.absent_classes).any()
            assert set(labels.tolist()) == set(r.seen_classes.tolist())
    # the train selector got every row of its stage, no test row
    assert [len(labels) for labels, _ in spy_selectors["train"]] == [12 * len(c) for c in CLASSES]


def test_stage_one_equals_the_single_stage_tools_by_hand(spied):
    stages, _, results, _, _ = spied
    first = stages[0]
    s = CLASSES[0]
    model = _train(_pretrained(), first.train_data, PseudoClasses(tuple(s), (), C, 0))
    train = extract(model, extraction_loader(first.train_data), progress=False)
    alg = LogitBiasCalibrator("alg").fit(train.logits, train.labels, s)
    splits = make_pseudo_splits(_pretrained(), _train, first.train_data, s, progress=False, **PCV)
    pcv = LogitBiasCalibrator("pcv").fit(pseudo_splits=splits, seen_classes=s)
    test = extract(model, extraction_loader(TEST), progress=False)
    got = results[0]
    tol = {"rtol": 1e-5, "atol": 1e-5}  # float32 logits of two runs of the same computation
    np.testing.assert_allclose(got.test_logits, test.logits.numpy(), **tol)
    np.testing.assert_allclose(got.calibrators["alg"].gamma_, alg.gamma_, **tol)
    np.testing.assert_allclose(got.calibrators["pcv"].gamma_, pcv.gamma_, **tol)
    for name, gamma in ((NO_CALIBRATION, 0.0), ("alg", alg.gamma_), ("pcv", pcv.gamma_)):
        by_hand = accuracy_report(test.logits, test.labels, s, gamma=gamma)
        for key in ("acc_all", "acc_seen", "acc_absent", "hmean"):
            assert got.reports[name][key] == pytest.approx(by_hand[key], abs=1e-12), (name, key)


def test_the_reports_match_brute_force(spied):
    _, _, results, _, _ = spied
    for r in results:
        for name, report in r.reports.items():
            gamma = 0.0 if name == NO_CALIBRATION else r.calibrators[name].gamma_
            assert report["gamma"] == gamma
            want = brute.accuracies(
                r.test_logits.astype(np.float64), r.test_labels, r.seen_classes.tolist(),
                r.absent_classes.tolist(), gamma,
            )  # fmt: skip
            for key in ("acc_all", "acc_seen", "acc_absent"):
                assert report[key] == pytest.approx(want[key], abs=1e-12), (r.index, name, key)


def test_target_data_selectors_and_templates():
    results = _run(
        selectors={
            "oracle": "oracle",
            "prior": "prior",
            "fixed": LogitBiasCalibrator("fixed", gamma=1.5),
            "alg_T": LogitBiasCalibrator("alg", temperature="fit"),
        },
        stages=_stages()[:2],
    )
    for r in results:
        assert set(r.reports) == {NO_CALIBRATION, "oracle", "prior", "fixed", "alg_T"}
        assert r.calibrators["fixed"].gamma_ == 1.5
        assert r.pseudo_splits is None  # no selector reads them: no pseudo run
        oracle = LogitBiasCalibrator("oracle").fit(r.test_logits, r.test_labels, r.seen_classes)
        assert r.calibrators["oracle"].gamma_ == pytest.approx(oracle.gamma_, abs=1e-12)
        assert r.calibrators["alg_T"].info_["temperature_data"] != "given"


# ----------------------------------------------------------------------------- bad input


def _one(labels, classes, seed=3):
    return Stage(Blobs(np.asarray(labels), seed), classes)


@pytest.mark.parametrize(
    ("stages", "error", "match"),
    [
        ([], ValueError, r"stages is empty"),
        (_one([0, 1], [0, 1]), TypeError, r"stages must be a list of calib.Stage, got Stage"),
        ([(TEST, [0, 1])], TypeError, r"stages\[0\] must be a calib.Stage, got tuple"),
        ([_one([0, 1], [])], ValueError, r"stages\[0\].classes is empty"),
        ([_one([0, 1], [0, 9])], ValueError, r"stages\[0\].classes out of range: \[9\]"),
        ([_one([0, 1], [0, 1, 1])], ValueError, r"stages\[0\].classes lists class\(es\) more"),
        (
            [_one([0, 1, 2], [0, 1, 2]), _one([0, 1, 3], [0, 1, 3])],
            ValueError,
            r"stages\[1\].classes \[0, 1, 3\] drop class\(es\) \[2\] of stages\[0\]",
        ),
        (
            [_one(range(C), range(C))],
            ValueError,
            r"stages\[0\].classes cover all 6 columns: no absent class",
        ),
        (
            [_one([0, 1, 4], [0, 1])],
            ValueError,
            r"stages\[0\].train_data: label 4 of row 2 is not in the stage's classes \[0, 1\]",
        ),
        (
            [_one([0, 1], [0, 1, 2])],
            ValueError,
            r"stages\[0\].classes \[2\] have no training sample",
        ),
    ],
)
def test_a_bad_stage_is_named_before_any_training(stages, error, match):
    finetune, calls = _spy()
    with pytest.raises(error, match=match):
        _run(finetune, stages=stages)
    assert calls == []


def test_bad_labels_and_eval_data_are_named():
    data = Blobs(np.array([0, 1, 0, 1]), 0)
    with pytest.raises(ValueError, match=r"stages\[0\].labels must have one entry per sample"):
        _run(stages=[Stage(data, [0, 1], labels=[0, 1])])
    with pytest.raises(ValueError, match=r"stages\[0\].eval_data must hold the same rows"):
        _run(stages=[Stage(data, [0, 1], eval_data=Subset(data, [0]))])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"selectors": "alg"}, TypeError, r"got the string 'alg' \(write \['alg'\]\)"),
        ({"selectors": ()}, ValueError, r"selectors is empty"),
        ({"selectors": ("nope",)}, ValueError, r"selectors\['nope'\]='nope'"),
        ({"selectors": {"none": "alg"}}, ValueError, r"'none' cannot name a selector"),
        ({"selectors": ("alg", "alg")}, ValueError, r"'alg' is listed twice"),
        ({"selectors": {"a": 3}}, TypeError, r"selectors\['a'\] must be a selector key"),
        ({"selectors": {"f": LogitBiasCalibrator("fixed")}}, ValueError, r"gamma"),
        ({"pcv_options": {"splits": 2}}, ValueError, r"pcv_options: unknown key\(s\) \['splits'\]"),
    ],
)
def test_bad_selectors_and_options_are_named_before_any_training(kwargs, error, match):
    finetune, calls = _spy()
    kwargs = {"selectors": ("alg",), **kwargs}
    stages = _stages()
    with pytest.raises(error, match=match):
        finetune_sequence(_pretrained(), finetune, stages, TEST, progress=False, **kwargs)
    assert calls == []


def test_a_fitted_template_and_a_bad_finetune_are_refused():
    fitted = LogitBiasCalibrator("fixed", gamma=1.0).fit(seen_classes=[0], num_classes=C)
    with pytest.raises(ValueError, match=r"selectors\['f'\] is a fitted calibrator"):
        _run(selectors={"f": fitted})
    with pytest.raises(TypeError, match=r"finetune must be a function"):
        _run(finetune=3)
    with pytest.raises(TypeError, match=r"finetune must return the fine-tuned nn.Module"):
        _run(finetune=lambda m, d, c: "model")


def test_finetune_may_train_in_place_and_return_none():
    results = _run(finetune=lambda m, d, c: (_train(m, d, c), None)[1], stages=_stages()[:1])
    by_value = _run(stages=_stages()[:1])
    np.testing.assert_allclose(
        results[0].test_logits, by_value[0].test_logits, rtol=1e-5, atol=1e-5
    )


def test_macro_reports_are_the_mean_of_per_class_accuracies():
    results = _run(selectors=("alg",), stages=_stages()[:2], average="macro")
    for r in results:
        for name, report in r.reports.items():
            gamma = 0.0 if name == NO_CALIBRATION else r.calibrators[name].gamma_
            pred = np.asarray(
                brute.predict(r.test_logits.astype(np.float64), r.absent_classes.tolist(), gamma)
            )
            per_class = {c: np.mean(pred[r.test_labels == c] == c) for c in range(C)}
            for key, group in (("acc_seen", r.seen_classes), ("acc_absent", r.absent_classes)):
                want = np.mean([per_class[c] for c in group.tolist()])
                assert report[key] == pytest.approx(want, abs=1e-12), (r.index, name, key)


def test_a_bad_average_is_named_before_any_training():
    finetune, calls = _spy()
    with pytest.raises(ValueError, match=r"average must be one of .*, got 'balanced'"):
        _run(finetune, average="balanced")
    assert calls == []


def test_pcv_on_a_one_class_stage_is_named_before_any_training():
    finetune, calls = _spy()
    with pytest.raises(ValueError, match=r"stages\[0\].classes \[0\]: 'pcv' splits S into"):
        _run(finetune, stages=[_one([0, 0], [0])], selectors=("alg", "pcv"))
    assert calls == []
    assert len(_run(stages=[_one([0, 0, 0], [0])], selectors=("oracle",))) == 1  # no PCV: it runs
