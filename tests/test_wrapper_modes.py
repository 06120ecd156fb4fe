"""train/eval modes and buffers along the calibrate → save → load path.

A model with BatchNorm *and* Dropout: in train mode its outputs are random (dropout) and
every forward pass moves the BatchNorm running statistics, so a pass that is not training
must run in eval mode, change no buffer, and put every submodule's mode back. Comparing
outputs of the same computation on the same batch with ``torch.equal`` is right here: eval
mode is deterministic, and the kernels, batch and thread count are the same on both sides.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from calib.data import ClassSplit
from calib.dynamics import EpochEvaluator, HistoryWriter, read_history
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import evaluating, extract, extraction_loader
from calib.io import json_safe
from calib.models import Classifier
from calib.models.classifier import make_data_config
from calib.wrapper import CalibratedClassifier, calibrate

SEEN, ABSENT, C, D = [0, 1, 2], [3, 4, 5], 6, 5


def make_model(seed: int = 0) -> nn.Sequential:
    """Linear → BatchNorm → ReLU → Dropout → Linear, in train mode (as a fresh module is)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, C)
    )


def trained_model() -> nn.Sequential:
    """A model whose running statistics are far from their initial (0, 1)."""
    model = make_model()
    with torch.no_grad():
        for _ in range(5):  # train-mode passes: the running statistics move
            model(torch.randn(32, D) * 3 + 2)
        model[4].bias[SEEN] += 2.0  # favours S, as after fine-tuning
    return model


def data(n: int = 40, seed: int = 1, labels=SEEN) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(np.random.default_rng(seed).choice(labels, size=n))
    return TensorDataset(torch.randn(n, D, generator=g) * 3 + 2, y)


def buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


def modes(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def assert_same_buffers(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = dict(model.named_buffers())
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), f"buffer {name} changed"


def mixed_modes(model: nn.Sequential) -> nn.Sequential:
    """Train mode with the BatchNorm frozen by hand: a mode no single .train(mode) restores."""
    model.train()
    model[1].eval()
    return model


# ----------------------------------------------------------------------------- evaluating


def test_evaluating_sets_eval_and_restores_each_flag_even_on_error():
    model = mixed_modes(make_model())
    want = modes(model)
    with evaluating(model) as inner:
        assert inner is model and not any(modes(model).values())
        with evaluating(model):
            pass
        assert not any(modes(model).values())  # the inner block restores eval
    assert modes(model) == want
    with pytest.raises(KeyError), evaluating(model):
        raise KeyError("boom")
    assert modes(model) == want


# ----------------------------------------------------------------------------- load


def test_load_returns_eval_mode_and_bit_identical_outputs(tmp_path):
    saved = CalibratedClassifier(trained_model(), 1.5, ABSENT, C, temperature=0.7).eval()
    x = data().tensors[0]
    with torch.no_grad():
        want_logits, want_proba = saved(x), saved.forward_proba(x)
    want_buffers = buffers(saved)
    saved.save(tmp_path / "w.pt")

    fresh = make_model(seed=5)  # other weights, train mode
    loaded = CalibratedClassifier.load(tmp_path / "w.pt", fresh)
    assert not any(modes(loaded).values()), modes(loaded)  # every submodule in eval
    with torch.no_grad():
        assert torch.equal(loaded(x), want_logits)
        assert torch.equal(loaded.forward_proba(x), want_proba)
        assert torch.equal(loaded(x[:7]), saved(x[:7]))
    assert_same_buffers(loaded, want_buffers)  # predicting moved no running statistic


# ----------------------------------------------------------------------------- forward_proba


def test_forward_proba_runs_in_eval_mode_changes_no_buffer_and_restores_modes():
    wrapped = CalibratedClassifier(mixed_modes(trained_model()), 1.5, ABSENT, C, (0.5, 2.0))
    wrapped.training = True
    x = data().tensors[0]
    reference = copy.deepcopy(wrapped).eval()
    want_modes, want_buffers = modes(wrapped), buffers(wrapped)
    with torch.no_grad():
        want = reference.forward_proba(x)
        assert torch.equal(wrapped.forward_proba(x), want)
        assert torch.equal(wrapped.forward_proba(x), want)  # no dropout, no drift
    assert modes(wrapped) == want_modes
    assert_same_buffers(wrapped, want_buffers)


def test_scripted_forward_proba_refuses_train_mode():
    wrapped = CalibratedClassifier(trained_model(), 1.5, ABSENT, C).eval()
    x = data().tensors[0]
    scripted = torch.jit.script(wrapped)
    with torch.no_grad():
        assert torch.equal(scripted.forward_proba(x), wrapped.forward_proba(x))
        scripted.train()
        with pytest.raises(torch.jit.Error, match=r"train mode: call \.eval\(\)"):
            scripted.forward_proba(x)


# ----------------------------------------------------------------------------- calibrate


def test_calibrate_extracts_in_eval_mode_and_leaves_model_as_it_was():
    model = mixed_modes(trained_model())
    want_modes, want_buffers = modes(model), buffers(model)
    loader = DataLoader(data(), batch_size=7)
    wrapped = calibrate(model, loader, SEEN, method="alg", progress=False)
    assert modes(model) == want_modes
    assert_same_buffers(model, want_buffers)
    # γ is ALG of the eval-mode logits, batch by batch as the loader gives them
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        logits = torch.cat([reference(x) for x, _ in loader])
    labels = loader.dataset.tensors[1]
    want = LogitBiasCalibrator("alg").fit(logits, labels, SEEN, ABSENT)
    assert wrapped.calibrator.gamma_ == want.gamma_


def test_extract_equals_eval_mode_forward_and_changes_nothing():
    model = mixed_modes(trained_model())
    want_modes, want_buffers = modes(model), buffers(model)
    loader = DataLoader(data(), batch_size=16)
    out = extract(model, loader, progress=False)
    assert modes(model) == want_modes
    assert_same_buffers(model, want_buffers)
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        assert torch.equal(out.logits, torch.cat([reference(x) for x, _ in loader]))


# ----------------------------------------------------------------------------- the harness


def test_epoch_evaluation_changes_no_buffer_and_restores_modes(tmp_path):
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
    with torch.no_grad():
        for _ in range(3):
            backbone(torch.randn(32, D) * 3 + 2)
    model = Classifier(
        backbone, nn.Linear(16, C), make_data_config((1, 1, D), (0.5,), (0.5,)), name="bn"
    )
    model.train()
    backbone[1].eval()
    want_modes, want_buffers = modes(model), buffers(model)
    test_set, train_set = data(30, seed=2, labels=range(C)), data(30, seed=3, labels=range(C))
    split = ClassSplit(seen=tuple(SEEN), absent=tuple(ABSENT), num_classes=C)
    evaluator = EpochEvaluator(
        test_set, split, HistoryWriter(tmp_path), train_set=train_set, batch_size=8
    )
    evaluator(0, model)
    evaluator(1, model)
    assert modes(model) == want_modes
    assert_same_buffers(model, want_buffers)
    rows = read_history(tmp_path)
    assert rows[0]["acc_all"] == rows[1]["acc_all"]  # no drift between the two evaluations
    reference = copy.deepcopy(model).eval()
    logits = extract(reference, extraction_loader(test_set, 8), progress=False).logits
    y = test_set.tensors[1]
    assert rows[0]["acc_all"] == float((logits.argmax(1) == y).double().mean())


# ----------------------------------------------------------------------------- the calibrator


def test_the_file_keeps_the_calibrator_and_its_info(tmp_path):
    model = trained_model().eval()
    loader = DataLoader(data(), batch_size=7)
    wrapped = calibrate(model, loader, SEEN, method="alg", temperature="fit", progress=False)
    cal = wrapped.calibrator
    assert wrapped.info is cal.info_ and wrapped.info["temperature_data"] == "finetune_train"
    wrapped.save(tmp_path / "w.pt")
    loaded = CalibratedClassifier.load(tmp_path / "w.pt", make_model(seed=5))
    back = loaded.calibrator
    assert isinstance(back, LogitBiasCalibrator) and back is not cal
    assert back.get_params() == cal.get_params()
    assert back.gamma_ == cal.gamma_ and back.temperature_ == cal.temperature_
    assert back.absent_classes_.tolist() == ABSENT and back.seen_classes_.tolist() == SEEN
    assert loaded.info == json_safe(cal.info_)  # as in the calibrator's own JSON file
    x = data(seed=4).tensors[0]
    with torch.no_grad():
        assert torch.equal(loaded.forward_proba(x), wrapped.forward_proba(x))


def test_a_wrapper_without_a_calibrator_says_so(tmp_path):
    plain = CalibratedClassifier(trained_model().eval(), 1.5, ABSENT, C)
    assert plain.calibrator is None and plain.info is None
    plain.save(tmp_path / "plain.pt")
    loaded = CalibratedClassifier.load(tmp_path / "plain.pt", make_model())
    assert loaded.calibrator is None and loaded.info is None


def test_a_version_2_file_loads_without_a_calibrator(tmp_path):
    cal = LogitBiasCalibrator("fixed", gamma=1.5).fit(seen_classes=SEEN, num_classes=C)
    CalibratedClassifier.from_calibrator(trained_model().eval(), cal).save(tmp_path / "w.pt")
    old = torch.load(tmp_path / "w.pt", weights_only=True)
    del old["calibrator"]
    old["version"] = 2
    torch.save(old, tmp_path / "v2.pt")
    loaded = CalibratedClassifier.load(tmp_path / "v2.pt", make_model())
    assert loaded.calibrator is None and loaded.info is None
    assert float(loaded.gamma) == 1.5 and not loaded.training


def test_a_calibrator_changed_after_wrapping_is_not_written(tmp_path):
    cal = LogitBiasCalibrator("fixed", gamma=1.5).fit(seen_classes=SEEN, num_classes=C)
    wrapped = CalibratedClassifier.from_calibrator(trained_model().eval(), cal)
    wrapped.load_state_dict({**wrapped.state_dict(), "gamma": torch.tensor(0.25).double()})
    with pytest.warns(RuntimeWarning, match="file keeps no calibrator"):
        wrapped.save(tmp_path / "w.pt")
    loaded = CalibratedClassifier.load(tmp_path / "w.pt", make_model())
    assert loaded.calibrator is None and float(loaded.gamma) == 0.25


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("gamma", "x", "calibrator entry is a corrupt"), ("gamma", 9.0, "differ from the file")],
)
def test_a_bad_calibrator_entry_is_refused(tmp_path, field, value, message):
    cal = LogitBiasCalibrator("fixed", gamma=1.5).fit(seen_classes=SEEN, num_classes=C)
    CalibratedClassifier.from_calibrator(trained_model().eval(), cal).save(tmp_path / "w.pt")
    payload = torch.load(tmp_path / "w.pt", weights_only=True)
    payload["calibrator"]["fitted"][field] = value
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=message) as err:
        CalibratedClassifier.load(tmp_path / "bad.pt", make_model())
    assert "bad.pt" in str(err.value)
