"""EpochEvaluator in a real (tiny) fine-tuning run: values, schedule, resume, odd models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from calib import accuracy_report, seen_absent_curve
from calib.dynamics import EpochEvaluator, HistoryWriter, read_epoch_arrays, read_history
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import extract, extraction_loader
from calib.metrics.ncm import ncm_report
from calib.train import TrainConfig, train
from tests.helpers_dynamics import SPLIT, pretrained_model, target_sets, tiny_run

S, U = list(SPLIT.seen), list(SPLIT.absent)


@pytest.fixture(scope="module")
def pre():
    torch.set_num_threads(1)
    return pretrained_model()


def _independent_row(model):
    """The metrics of ``model`` on the target sets, straight from the library."""
    train_set, test_set, _ = target_sets()
    test = extract(model, extraction_loader(test_set, 64), features=True, progress=False)
    trn = extract(model, extraction_loader(train_set, 64), features=True, progress=False)
    z, y = test.logits.numpy(), test.labels.numpy()
    s = np.isin(trn.labels.numpy(), S)
    alg = LogitBiasCalibrator("alg").fit(trn.logits.numpy()[s], trn.labels.numpy()[s], S, U)
    ncm = ncm_report(trn.features.numpy(), trn.labels.numpy(), test.features.numpy(), y, S, U)
    on_u = np.isin(y, U)
    norms = model.head.weight.detach().double().norm(dim=1).numpy()
    return {
        **{k: v for k, v in accuracy_report(z, y, S, U, topk=(1,)).items() if k.startswith("acc")},
        "ausuc": seen_absent_curve(z, y, S, U).ausuc,
        "gamma_alg": alg.gamma_,
        "ncm_acc_absent": ncm["acc_absent"],
        "logit_gt_absent": float(z[on_u, y[on_u]].astype(np.float64).mean()),
        "weight_norm_seen_mean": float(norms[S].mean()),
    }


def _assert_row_matches(row, expected):
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_every_row_equals_the_metrics_of_that_epochs_weights(tmp_path, pre):
    snapshots = {}
    ft, _ = tiny_run(tmp_path, every=1, epochs=3, model=pre,
                     on_epoch=lambda e, m: snapshots.__setitem__(e, copy.deepcopy(m.state_dict())))  # fmt: skip
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    model = copy.deepcopy(pre)
    for row in rows:
        model.load_state_dict(snapshots[row["epoch"]])
        _assert_row_matches(row, _independent_row(model))
    # epoch 0 is the pre-trained model; the last row is the saved final checkpoint
    _assert_row_matches(rows[0], _independent_row(pre))
    model.load_state_dict(torch.load(tmp_path / "finetune" / "checkpoints" / "final.pt"))
    _assert_row_matches(rows[-1], _independent_row(model))
    assert rows[0]["acc_absent"] > rows[-1]["acc_absent"]  # the collapse the history is for
    assert math.isnan(rows[0]["update_cos_absent_absent"])  # no update yet
    assert not math.isnan(rows[-1]["update_cos_absent_absent"])
    head = read_epoch_arrays(tmp_path, "head", 3)
    np.testing.assert_allclose(head["weight_norm"], ft.head.weight.detach().double().norm(dim=1))
    np.testing.assert_array_equal(head["seen"], S)


def test_schedule_is_epoch_zero_every_k_and_the_last(tmp_path, pre):
    tiny_run(tmp_path, every=3, epochs=4, model=pre)
    assert [r["epoch"] for r in read_history(tmp_path)] == [0, 3, 4]


def test_killed_and_resumed_history_equals_the_uninterrupted_one(tmp_path, pre):
    tiny_run(tmp_path / "whole", every=1, epochs=4, model=pre)

    class Killed(Exception):
        pass

    def kill(epoch, model):
        if epoch == 3:  # after epoch 3's row, before its checkpoint: the resume repeats it
            raise Killed

    with pytest.raises(Killed):
        tiny_run(tmp_path / "killed", every=1, epochs=4, model=pre, on_epoch=kill)
    assert [r["epoch"] for r in read_history(tmp_path / "killed")] == [0, 1, 2, 3]
    tiny_run(tmp_path / "killed", every=1, epochs=4, model=pre)
    whole, resumed = read_history(tmp_path / "whole"), read_history(tmp_path / "killed")
    assert [r["epoch"] for r in resumed] == [0, 1, 2, 3, 4]
    for a, b in zip(whole, resumed, strict=True):
        a.pop("eval_seconds"), b.pop("eval_seconds")
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), key
    for epoch in range(5):
        x = read_epoch_arrays(tmp_path / "whole", "curve", epoch)
        y = read_epoch_arrays(tmp_path / "killed", "curve", epoch)
        np.testing.assert_array_equal(x["acc_absent"], y["acc_absent"])


class _NoLinearHead(nn.Module):
    """Logits only: no ``forward_features_logits`` and a head that is not an nn.Linear."""

    def __init__(self, base):
        super().__init__()
        self.backbone, self.head = base.backbone, nn.Sequential(base.head)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_a_model_without_linear_head_or_features_gets_nan_there(tmp_path, pre):
    model = _NoLinearHead(copy.deepcopy(pre))
    train_set, test_set, seen_train = target_sets()
    evaluator = EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path), train_set=train_set,
                               epochs=1)  # fmt: skip
    cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=1, batch_size=16)
    train(model, seen_train, cfg, progress=False, log=lambda line: None, on_epoch_end=evaluator)
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in ("weight_norm_seen_mean", "update_cos_absent_absent", "ncm_acc_absent"):
        assert math.isnan(rows[-1][key]), key
    assert not math.isnan(rows[-1]["gamma_alg"]) and not math.isnan(rows[-1]["acc_absent"])
    with pytest.raises(FileNotFoundError):
        read_epoch_arrays(tmp_path, "head", 1)


def test_pretrained_head_is_taken_at_epoch_zero_when_not_given(tmp_path, pre):
    _, test_set, _ = target_sets()
    evaluator = EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path))
    model = copy.deepcopy(pre)
    evaluator(0, model)
    with torch.no_grad():
        model.head.weight[U] += 1.0
    row = evaluator(1, model)
    assert row["update_cos_absent_absent"] == pytest.approx(1.0)
    assert math.isnan(row["gamma_alg"]) and row["ncm_means"] == "test"


@pytest.mark.parametrize(("name", "value"), [("every", 0), ("epochs", -2), ("batch_size", 0)])
def test_bad_settings_are_named(tmp_path, name, value):
    _, test_set, _ = target_sets()
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got {value}"):
        EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path), **{name: value})


def test_linear_head_weight_finds_the_head_of_calib_and_timm_models(pre):
    from calib.dynamics import linear_head_weight

    assert linear_head_weight(pre) is pre.head.weight

    class TimmLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def get_classifier(self):
            return self.fc

    timm_like = TimmLike()
    assert linear_head_weight(timm_like) is timm_like.fc.weight
    assert linear_head_weight(_NoLinearHead(copy.deepcopy(pre))) is None


def test_a_split_for_another_head_size_is_named(tmp_path, pre):
    from calib.data import ClassSplit

    _, test_set, _ = target_sets()
    evaluator = EpochEvaluator(test_set, ClassSplit((0, 1), (2, 3), 8), HistoryWriter(tmp_path))
    with pytest.raises(ValueError, match="6 logit columns but the class split is for 8 classes"):
        evaluator(0, pre)


class _OwnModel(nn.Module):
    """A user's own model: no ``forward_features_logits``, its head named ``classifier``;
    ``output="scores"``: its output is a mapping with the logits under that key."""

    def __init__(self, base, output=None):
        super().__init__()
        self.body, self.classifier, self.output = base.backbone, base.head, output

    def forward(self, x):
        z = self.classifier(self.body(x))
        return z if self.output is None else {"scores": z, "aux": z.sum(1)}


def _independent_ncm(model):
    """The NCM keys of ``model``, features computed by its body directly (no hook)."""
    train_set, test_set, _ = target_sets()
    with torch.no_grad():
        model.eval()
        f_train, f_test = (model.body(d.tensors[0]).numpy() for d in (train_set, test_set))
    report = ncm_report(
        f_train, train_set.tensors[1].numpy(), f_test, test_set.tensors[1].numpy(), S, U
    )
    return {f"ncm_{k}": report[k] for k in ("acc_all", "acc_seen", "acc_absent", "hmean")}


def test_a_plain_module_gets_ncm_from_the_input_of_the_named_head(tmp_path, pre):
    model = _OwnModel(copy.deepcopy(pre))
    train_set, test_set, seen_train = target_sets()
    snapshots = {}

    def evaluate(epoch, m):
        evaluator(epoch, m)
        snapshots[epoch] = copy.deepcopy(m.state_dict())

    evaluator = EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path), train_set=train_set,
                               epochs=2, features_from="classifier")  # fmt: skip
    cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=2, batch_size=16, seed=3)
    train(model, seen_train, cfg, progress=False, log=lambda line: None, on_epoch_end=evaluate)
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    probe = _OwnModel(copy.deepcopy(pre))
    for row in rows:
        probe.load_state_dict(snapshots[row["epoch"]])
        assert row["ncm_means"] == "train"
        _assert_row_matches(row, _independent_ncm(probe))
        # the named head, an nn.Linear, is the head of the head statistics
        norms = probe.classifier.weight.detach().double().norm(dim=1).numpy()
        assert row["weight_norm_seen_mean"] == pytest.approx(norms[S].mean(), rel=1e-6)
    assert rows[0]["ncm_acc_absent"] != rows[-1]["ncm_acc_absent"]  # the features moved
    assert not math.isnan(rows[-1]["update_cos_absent_absent"])


def test_output_key_picks_the_logits_of_a_mapping_output(tmp_path, pre):
    _, test_set, _ = target_sets()
    rows = []
    for name, output in (("tensor", None), ("mapping", "scores")):
        evaluator = EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path / name),
                                   features_from="classifier", output_key=output)  # fmt: skip
        rows.append(evaluator(0, _OwnModel(copy.deepcopy(pre), output=output)))
    tensor_row, mapping_row = rows
    for key, value in tensor_row.items():
        if key != "eval_seconds" and isinstance(value, float) and not math.isnan(value):
            assert mapping_row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert not math.isnan(mapping_row["ncm_acc_absent"])


def test_a_plain_module_without_features_from_gets_nan_ncm_and_a_bad_name_is_named(tmp_path, pre):
    _, test_set, _ = target_sets()
    model = _OwnModel(copy.deepcopy(pre))
    row = EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path / "a"))(0, model)
    assert math.isnan(row["ncm_acc_absent"]) and math.isnan(row["weight_norm_seen_mean"])
    evaluator = EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path / "b"), features_from="fc")
    with pytest.raises(ValueError, match="features_from='fc' names no submodule of _OwnModel"):
        evaluator(0, model)
    with pytest.raises(ValueError, match="features_from must be the name of a submodule.*got 3"):
        EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path / "c"), features_from=3)
    with pytest.raises(ValueError, match="batch_keys must be a dict"):
        EpochEvaluator(test_set, SPLIT, HistoryWriter(tmp_path / "d"), batch_keys=["x"])
