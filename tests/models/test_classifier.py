"""The classification head computes in float32 outside autocast: Classifier.logits."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from calib.extract import extract
from calib.methods.cosine_head import to_cosine_head
from calib.models import Classifier, create_clip_zero_shot, create_model, head_in_float32
from calib.train import TrainConfig, train

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
# one float32 rounding of a sum of D products: far below bf16's 2**-8 relative step
FP32_TOL = dict(rtol=1e-5, atol=1e-5)


def _digits_model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return create_model("digits_cnn", num_classes=10).eval()


def _images(model: Classifier, n: int = 6) -> torch.Tensor:
    return torch.randn(
        n, *model.data_config["input_size"], generator=torch.Generator().manual_seed(1)
    )


def _linear_head_by_hand(model: Classifier, features: torch.Tensor) -> torch.Tensor:
    """The head's formula in float64 on the (bf16) features: W f + b."""
    weight, bias = model.head.weight.double(), model.head.bias.double()
    return (features.double() @ weight.T + bias).float()


def test_under_cpu_bf16_autocast_the_logits_are_float32_from_a_float32_head():
    model = _digits_model()
    x = _images(model)
    with torch.no_grad(), torch.autocast(**BF16):
        features, logits = model.forward_features_logits(x)
        plain = model(x)
    assert features.dtype == torch.bfloat16  # the backbone does run in bf16
    assert logits.dtype == torch.float32 and plain.dtype == torch.float32
    expected = _linear_head_by_hand(model, features)
    torch.testing.assert_close(logits, expected, **FP32_TOL)
    torch.testing.assert_close(plain, expected, **FP32_TOL)
    # a bf16 head would be off by far more than the tolerance: the test can fail
    with torch.no_grad(), torch.autocast(**BF16):
        bf16_head = model.head(features)
    assert bf16_head.dtype == torch.bfloat16
    assert not torch.allclose(bf16_head.float(), expected, **FP32_TOL)


def test_without_autocast_the_head_is_unchanged():
    model = _digits_model().double()
    x = _images(model).double()
    with torch.no_grad():
        logits = model(x)
        expected = model.head(model.backbone(x))
    assert logits.dtype == torch.float64
    assert torch.equal(logits, expected)  # the same computation, not a second one


def test_a_cosine_head_under_autocast_is_float32():
    model = to_cosine_head(_digits_model(), scale=10.0)
    x = _images(model)
    with torch.no_grad(), torch.autocast(**BF16):
        features, logits = model.forward_features_logits(x)
    assert logits.dtype == torch.float32
    f = F.normalize(features.double(), dim=1)
    w = F.normalize(model.head.weight.double(), dim=1)
    expected = (model.head.scale.double() * f @ w.T).float()
    torch.testing.assert_close(logits, expected, **FP32_TOL)


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip")
def test_clip_zero_shot_head_under_autocast_is_float32():
    torch.manual_seed(0)
    model = create_clip_zero_shot("tiny-clip", None, ["cat", "dog", "ship"]).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), torch.autocast(**BF16):
        features, logits = model.forward_features_logits(x)
    assert logits.dtype == torch.float32
    expected = (features.double() @ model.head.weight.double().T).float()
    torch.testing.assert_close(logits, expected, **FP32_TOL)


def test_head_in_float32_leaves_a_head_of_another_dtype_alone():
    head = nn.Linear(4, 3).to(torch.bfloat16)
    f = torch.randn(2, 4, dtype=torch.bfloat16)
    with torch.autocast(**BF16):
        out = head_in_float32(head, f)
    assert out.dtype == torch.bfloat16


def test_extraction_with_amp_gives_float32_head_logits_of_its_features():
    model = _digits_model()
    x = _images(model, 10)
    loader = [(x[:5], torch.arange(5)), (x[5:], torch.arange(5))]
    out = extract(model, loader, features=True, amp=True, progress=False)
    # the features are the bf16 backbone's (returned as float32): the logits are the fp32 head
    # on exactly those features
    torch.testing.assert_close(out.logits, _linear_head_by_hand(model, out.features), **FP32_TOL)


def test_training_under_autocast_sees_float32_logits():
    model = _digits_model().train()
    x = torch.randn(8, *model.data_config["input_size"])
    data = torch.utils.data.TensorDataset(x, torch.arange(8) % 10)
    dtypes = []

    def loss_fn(logits, y, inputs):
        dtypes.append(logits.dtype)
        return F.cross_entropy(logits, y)

    cfg = TrainConfig(epochs=1, batch_size=4, amp="bf16", lr=0.01)
    train(model, data, cfg, device="cpu", progress=False, loss_fn=loss_fn)
    assert dtypes == [torch.float32, torch.float32]


def test_scripting_tracing_and_export_still_compile():
    model = _digits_model()
    x = _images(model, 2)
    expected = model(x)
    with pytest.warns(FutureWarning):  # torch 2.9+: jit.script is deprecated
        scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), expected, **FP32_TOL)
    exported = torch.export.export(model, (x,)).module()
    torch.testing.assert_close(exported(x), expected, **FP32_TOL)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_under_cuda_autocast_the_logits_are_float32(dtype):
    model = _digits_model().cuda()
    x = _images(model).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        features, logits = model.forward_features_logits(x)
    assert features.dtype == dtype and logits.dtype == torch.float32
    torch.testing.assert_close(logits, _linear_head_by_hand(model, features), **FP32_TOL)
