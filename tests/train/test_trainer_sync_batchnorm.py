"""``sync_batchnorm`` conversion keeps what the layers compute.

The conversion itself needs neither CUDA nor a process group: SyncBatchNorm layers run on CPU
outside a group (eval mode, and train mode falls back to per-process statistics), so the
modes, flags and outputs before and after :func:`calib.train.convert_sync_batchnorm` are
compared here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from calib.methods.parts import batchnorm_modules, keep_in_eval
from calib.train import convert_sync_batchnorm

# float32 forward passes through a CNN: the converted layers call the same batch_norm, but a
# tolerance of a few float32 ulps of the activations keeps the test independent of kernels
RTOL, ATOL = 1e-5, 1e-5


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.BatchNorm2d(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    with torch.no_grad():  # non-trivial statistics, so eval differs from train normalisation
        for bn in batchnorm_modules(model):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return model


def test_layers_kept_in_eval_stay_in_eval_after_conversion():
    model = _cnn()
    bns = batchnorm_modules(model)
    bns[0].weight.requires_grad_(False)  # a frozen affine, as linear_probe's backbone
    x = torch.randn(6, 3, 10, 10)
    with keep_in_eval(model, [bns[0]]):  # the first keeps its statistics, the second trains
        model.train()
        stats = bns[0].running_mean.clone()
        undo = convert_sync_batchnorm(model)
        converted = batchnorm_modules(model)
        assert all(isinstance(m, nn.SyncBatchNorm) for m in converted)
        model.train()  # what the training loop does every epoch
        assert converted[0].training is False and converted[1].training is True
        assert converted[0].weight.requires_grad is False
        assert converted[0].bias.requires_grad is True
        assert converted[0].weight is bns[0].weight  # the optimizer's tensors
        model(x)  # a training-mode forward: the frozen statistics do not move
        assert torch.equal(converted[0].running_mean, stats)
        assert int(converted[1].num_batches_tracked) == 1
        undo()
        assert batchnorm_modules(model) == bns
        assert "train" not in vars(converted[0])  # the override went with the undo
        model.train()
        assert bns[0].training is False and bns[1].training is True
    assert bns[0].training is True  # keep_in_eval's exit: one mode everywhere


def test_converted_plain_model_computes_the_same_in_eval_and_trains_every_layer():
    model = _cnn().eval()
    x = torch.randn(6, 3, 10, 10)
    with torch.no_grad():
        before = model(x)
    convert_sync_batchnorm(model)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=RTOL, atol=ATOL)
    model.train()
    assert all(m.training for m in batchnorm_modules(model))


def test_timm_batchnorm_act_keeps_its_activation():
    """EfficientNet-Lite0's fused BatchNormAct2d: torch's converter drops the ReLU6."""
    from calib.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 5, pretrained=False).eval()
    with torch.no_grad():
        for bn in batchnorm_modules(model):
            bn.running_mean.uniform_(-1, 1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    undo = convert_sync_batchnorm(model)
    assert all(isinstance(m, nn.SyncBatchNorm) for m in batchnorm_modules(model))
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=RTOL, atol=ATOL)
    undo()
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=RTOL, atol=ATOL)


def test_a_batchnorm_subclass_with_its_own_forward_is_refused():
    class ScaledBN(nn.BatchNorm2d):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(nn.Conv2d(3, 4, 1), ScaledBN(4), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match=r"sync_batchnorm: cannot convert '1'.*ScaledBN"):
        convert_sync_batchnorm(model)
    assert type(model[1]) is ScaledBN and type(model[2]) is nn.BatchNorm2d  # nothing replaced
