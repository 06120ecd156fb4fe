"""Class names through calibrate() and CalibratedClassifier: names == indices, did-you-mean before
the model runs, seen_classes="infer" for alg, predict_names, save/load, script/trace/export."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.wrapper import CalibratedClassifier, calibrate

NAMES = ("cat", "dog", "bird", "fish", "frog", "horse")
C = len(NAMES)
S, S_NAMES = [0, 1, 2], ["cat", "dog", "bird"]
U, U_NAMES = [3, 4, 5], ["fish", "frog", "horse"]


class Counting(nn.Module):
    """A linear head that favours S, counting its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(5, C)
        with torch.no_grad():
            self.net.bias[:3] += 2.0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def loader_of(n: int, labels_from, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.as_tensor(np.random.default_rng(seed).choice(labels_from, size=n))
    return DataLoader(TensorDataset(x, y), batch_size=16)


X = torch.randn(25, 5, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize(
    ("method", "labels_from"), [("alg", S), ("oracle", range(C)), ("prior", range(C))]
)
def test_calibrate_with_names_equals_calibrate_with_indices(method, labels_from):
    by_index = calibrate(Counting(), loader_of(60, labels_from), S, method=method, progress=False)
    by_name = calibrate(
        Counting(),
        loader_of(60, labels_from),
        S_NAMES,
        U_NAMES,
        method=method,
        progress=False,
        class_names=list(NAMES),
    )
    assert by_name.calibrator.gamma_ == by_index.calibrator.gamma_  # the same computation
    assert by_name.class_names == NAMES and by_name.calibrator.class_names_ == NAMES
    assert by_index.class_names is None
    with torch.no_grad():
        torch.testing.assert_close(by_name.eval()(X), by_index.eval()(X), rtol=0, atol=0)
    np.testing.assert_array_equal(by_name.absent_classes, U)
    assert by_name.absent_class_names == tuple(U_NAMES)
    predicted = by_name.predict(X)
    assert by_name.predict_names(X) == [NAMES[c] for c in predicted.tolist()]


def test_a_misspelt_name_stops_calibrate_before_the_model_runs():
    model = Counting()
    with pytest.raises(
        ValueError, match="seen_classes: 'dgo' is not a class name; did you mean 'dog'"
    ):
        calibrate(model, loader_of(30, S), ["cat", "dgo"], progress=False, class_names=NAMES)
    with pytest.raises(ValueError, match="absent_classes: 'frgo'.*did you mean 'frog'"):
        calibrate(model, loader_of(30, S), S_NAMES, ["frgo"], progress=False, class_names=NAMES)
    with pytest.raises(ValueError, match="holds class names.*no class_names were given"):
        calibrate(model, loader_of(30, S), S_NAMES, progress=False)
    assert model.calls == 0


def test_calibrate_infers_s_from_the_finetuning_loader_for_alg(caplog):
    explicit = calibrate(Counting(), loader_of(60, S), S, progress=False)
    with caplog.at_level(logging.INFO, logger="calib.classes"):
        inferred = calibrate(
            Counting(), loader_of(60, S), "infer", progress=False, class_names=NAMES
        )
    assert inferred.calibrator.gamma_ == explicit.calibrator.gamma_
    np.testing.assert_array_equal(inferred.calibrator.seen_classes_, S)
    assert inferred.info["seen_classes_inferred"] is True
    assert [r.getMessage() for r in caplog.records if r.name == "calib.classes"] == [
        "seen classes inferred from 60 fine-tuning labels: 3 classes: 0 cat, 1 dog, 2 bird"
    ]


@pytest.mark.parametrize("method", ["oracle", "prior"])
def test_calibrate_refuses_infer_for_target_data_before_the_model_runs(method):
    model = Counting()
    with pytest.raises(ValueError, match=r"seen_classes='infer'.*calib\.infer_seen_classes"):
        calibrate(model, loader_of(30, range(C)), "infer", method=method, progress=False)
    assert model.calls == 0


def test_the_wrapper_built_from_numbers_takes_names():
    wrapped = CalibratedClassifier(Counting().eval(), 1.25, ["fish", 4], C, class_names=NAMES)
    np.testing.assert_array_equal(wrapped.absent_classes, [3, 4])
    assert wrapped.absent_class_names == ("fish", "frog")
    with pytest.raises(ValueError, match="'hrose' is not a class name; did you mean 'horse'"):
        CalibratedClassifier(Counting(), 1.0, ["hrose"], C, class_names=NAMES)
    with pytest.raises(ValueError, match="class_names has 3 names but the head has 6 classes"):
        CalibratedClassifier(Counting(), 1.0, U, C, class_names=NAMES[:3])
    plain = CalibratedClassifier(Counting(), 1.0, U, C)
    assert plain.class_names is None and plain.absent_class_names is None
    with pytest.raises(ValueError, match="predict_names needs class_names"):
        plain.predict_names(X)


def test_from_calibrator_takes_the_calibrators_names_and_refuses_others():
    cal = LogitBiasCalibrator("fixed", gamma=0.5).fit(
        seen_classes=S_NAMES, num_classes=C, class_names=NAMES
    )
    assert CalibratedClassifier.from_calibrator(Counting(), cal).class_names == NAMES
    with pytest.raises(ValueError, match="differ from the calibrator's class_names_"):
        CalibratedClassifier.from_calibrator(Counting(), cal, class_names=NAMES[::-1])
    unnamed = LogitBiasCalibrator("fixed", gamma=0.5).fit(seen_classes=S, num_classes=C)
    named = CalibratedClassifier.from_calibrator(Counting(), unnamed, class_names=NAMES)
    assert named.class_names == NAMES


def test_save_load_round_trips_the_names(tmp_path):
    wrapped = calibrate(
        Counting(), loader_of(60, S), S_NAMES, progress=False, class_names=NAMES
    ).eval()
    wrapped.save(tmp_path / "w.pt")
    back = CalibratedClassifier.load(tmp_path / "w.pt", Counting())
    assert back.class_names == NAMES and back.calibrator.class_names_ == NAMES
    assert back.predict_names(X) == wrapped.predict_names(X)


def test_a_file_written_before_names_loads_without_them(tmp_path):
    cal = LogitBiasCalibrator("fixed", gamma=0.5).fit(
        seen_classes=S_NAMES, num_classes=C, class_names=NAMES
    )
    CalibratedClassifier.from_calibrator(Counting(), cal).save(tmp_path / "w.pt")
    old = torch.load(tmp_path / "w.pt", weights_only=True)
    del old["class_names"]
    del old["calibrator"]["fitted"]["class_names"]
    torch.save(old, tmp_path / "old.pt")
    back = CalibratedClassifier.load(tmp_path / "old.pt", Counting())
    assert back.class_names is None and back.calibrator.class_names_ is None
    assert float(back.gamma) == 0.5
    # names in the file that its calibrator contradicts: a corrupt file
    bad = torch.load(tmp_path / "w.pt", weights_only=True)
    bad["class_names"] = list(NAMES[::-1])
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="corrupt.*class names differ"):
        CalibratedClassifier.load(tmp_path / "bad.pt", Counting())


class Plain(nn.Module):
    """A plain tensor-in tensor-out head (TorchScript needs no counter attribute)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(5, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_script_trace_and_export_ignore_the_names():
    wrapped = CalibratedClassifier(Plain().eval(), 0.8, U_NAMES, C, class_names=NAMES).eval()
    with torch.no_grad():
        expected = wrapped(X)
        torch.testing.assert_close(torch.jit.script(wrapped)(X), expected, rtol=0, atol=0)
        torch.testing.assert_close(torch.jit.trace(wrapped, (X,))(X), expected, rtol=0, atol=0)
        program = torch.export.export(wrapped, (X,))
        torch.testing.assert_close(program.module()(X), expected, rtol=0, atol=0)
