"""CalibratedClassifier and calibrate(): output == transform, buffers, weights untouched, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from calib.estimator.calibrator import LogitBiasCalibrator, NotFittedError
from calib.selectors import PseudoSplit, select_alg
from calib.wrapper import CalibratedClassifier, calibrate

SEEN = [0, 1, 2]
NUM_CLASSES = 6


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = nn.Linear(5, NUM_CLASSES)
    with torch.no_grad():
        net.bias[:3] += 2.0  # a head that favours S, as after fine-tuning
    return net


def loader_of(n: int, labels_from, seed: int = 0, batch_size: int = 7) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.as_tensor(np.random.default_rng(seed).choice(labels_from, size=n))
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_forward_equals_transform_of_the_model_logits(model, dtype):
    model.to(dtype)
    x = torch.randn(9, 5, dtype=dtype)
    cal = LogitBiasCalibrator("fixed", gamma=1.3).fit(
        seen_classes=SEEN, absent_classes=[3, 5], num_classes=NUM_CLASSES
    )
    wrapped = CalibratedClassifier.from_calibrator(model, cal)
    with torch.no_grad():
        logits = model(x)
        out = wrapped(x)
    assert out.dtype == torch.float64
    assert torch.equal(out, cal.transform(logits))
    assert torch.equal(out.argmax(1), cal.predict(logits))  # one rule in every dtype
    assert wrapped.calibrator is cal
    assert wrapped.absent_classes.tolist() == [3, 5]
    assert "gamma=1.3, absent_classes=2 of 6, temperature=1" in repr(wrapped)


def test_gradients_flow_to_the_model(model):
    wrapped = CalibratedClassifier(model, 0.5, [3, 4, 5], NUM_CLASSES)
    wrapped(torch.randn(4, 5)).sum().backward()
    assert model.weight.grad is not None and not wrapped.gamma.requires_grad


def test_state_dict_round_trip(model):
    wrapped = CalibratedClassifier(model, -0.0625, [3, 4], NUM_CLASSES)
    state = wrapped.state_dict()
    assert {"gamma", "absent_mask", "model.weight", "model.bias"} <= set(state)
    fresh = CalibratedClassifier(nn.Linear(5, NUM_CLASSES), 0.0, [5], NUM_CLASSES)
    fresh.load_state_dict(state)
    assert float(fresh.gamma) == -0.0625 and fresh.absent_classes.tolist() == [3, 4]
    x = torch.randn(3, 5)
    with torch.no_grad():
        assert torch.equal(fresh(x), wrapped(x))


def test_wrapper_errors(model):
    with pytest.raises(ValueError, match="finite"):
        CalibratedClassifier(model, float("inf"), [3], NUM_CLASSES)
    with pytest.raises(ValueError, match="out of range"):
        CalibratedClassifier(model, 1.0, [6], NUM_CLASSES)
    with pytest.raises(ValueError, match="every column"):
        CalibratedClassifier(model, 1.0, range(NUM_CLASSES), NUM_CLASSES)
    with pytest.raises(ValueError, match="is empty"):
        CalibratedClassifier(model, 1.0, [], NUM_CLASSES)
    with pytest.raises(ValueError, match="num_classes"):
        CalibratedClassifier(model, 1.0, [3], 2.5)
    wrong_width = CalibratedClassifier(model, 1.0, [3], 8)
    with pytest.raises(ValueError, match=r"must return \(N, 8\) logits, got shape \[2, 6\]"):
        wrong_width(torch.randn(2, 5))
    with pytest.raises(NotFittedError):
        CalibratedClassifier.from_calibrator(model, LogitBiasCalibrator())


def test_calibrate_end_to_end_with_alg(model):
    model.train()
    before = copy.deepcopy(model.state_dict())
    loader = loader_of(40, SEEN)
    wrapped = calibrate(model, loader, SEEN, method="alg", progress=False)
    assert model.training  # mode restored
    assert same_state(before, model.state_dict())  # weights untouched
    x, y = loader.dataset.tensors
    with torch.no_grad():
        expected = select_alg(model(x), y, SEEN)[0]
    # batched and full matmuls may round the float32 logits differently
    assert wrapped.calibrator.gamma_ == pytest.approx(expected, rel=1e-6)
    assert float(wrapped.gamma) == wrapped.calibrator.gamma_
    assert wrapped.absent_classes.tolist() == [3, 4, 5]
    assert same_state(
        before,
        {k[len("model.") :]: v for k, v in wrapped.state_dict().items() if k.startswith("model.")},
    )


def test_calibrate_oracle_prior_fixed_and_pcv(model):
    test_loader = loader_of(50, range(NUM_CLASSES), seed=1)
    oracle = calibrate(model, test_loader, SEEN, method="oracle", criterion="hmean", progress=False)
    assert oracle.calibrator.info_["criterion"] == "hmean"

    prior = calibrate(model, test_loader, SEEN, method="prior", prior=0.3, progress=False)
    with torch.no_grad():
        predicted = prior(test_loader.dataset.tensors[0]).argmax(1)
    assert np.isin(predicted.numpy(), [3, 4, 5]).mean() == prior.calibrator.info_["share"] == 0.3

    fixed = calibrate(model, None, SEEN, method="fixed", gamma=2.0, num_classes=NUM_CLASSES)
    assert float(fixed.gamma) == 2.0
    fixed = calibrate(model, test_loader, SEEN, method="fixed", gamma=2.0, progress=False)
    assert fixed.num_classes == NUM_CLASSES  # learnt from the loader

    x, _ = test_loader.dataset.tensors
    with torch.no_grad():
        logits = model(x)
    labels = np.random.default_rng(2).choice(SEEN, size=50)
    split = PseudoSplit(logits, labels, [0, 1], [2, 3, 4, 5])
    pcv = calibrate(model, None, SEEN, method="pcv", pseudo_splits=[split])
    assert pcv.calibrator.info_["n_splits"] == 1


def test_calibrate_errors(model):
    with pytest.raises(TypeError, match="unexpected keyword"):
        calibrate(model, None, SEEN, method="fixed", gama=1.0, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="unknown selector"):
        calibrate(model, None, SEEN, method="nope")
    with pytest.raises(ValueError, match="needs a loader"):
        calibrate(model, None, SEEN, method="alg")
    with pytest.raises(ValueError, match="ALG may only see fine-tuning"):
        calibrate(model, loader_of(20, range(NUM_CLASSES)), SEEN, progress=False)
    unlabelled = [torch.randn(4, 5)]
    with pytest.raises(ValueError, match="needs labels"):
        calibrate(model, unlabelled, SEEN, method="oracle", progress=False)
    # the label-free selector runs on unlabelled batches
    assert calibrate(model, unlabelled, SEEN, method="prior", progress=False).num_classes == 6


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_cuda_moves_the_buffers(model):
    wrapped = CalibratedClassifier(model, 0.75, [3, 4, 5], NUM_CLASSES).cuda()
    assert wrapped.gamma.is_cuda and wrapped.absent_mask.is_cuda
    x = torch.randn(4, 5)
    with torch.no_grad():
        out = wrapped(x.cuda())
        ref = model.cpu()(x)
    ref[:, 3:] += 0.75
    torch.testing.assert_close(out.cpu(), ref)
    calibrated = calibrate(model, loader_of(20, SEEN), SEEN, device="cuda", progress=False)
    assert calibrated.gamma.is_cuda and next(model.parameters()).is_cuda
