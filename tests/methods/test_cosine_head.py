"""The cosine head: s · cos(f, w_c), converted from a linear head, with every method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.methods import METHODS, CosineHead, to_cosine_head
from calib.methods.parts import state_copy
from tests.helpers_methods import dataset, make_context, pretrained


def brute_cosine(f, w, s):
    f, w = np.asarray(f, np.float64), np.asarray(w, np.float64)
    out = np.empty((len(f), len(w)))
    for i in range(len(f)):
        for c in range(len(w)):
            out[i, c] = s * f[i] @ w[c] / (np.linalg.norm(f[i]) * np.linalg.norm(w[c]))
    return out


def test_logits_are_the_scaled_cosines():
    head = CosineHead(6, 4, scale=7.5)
    f = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    z = head(f).detach().numpy()
    np.testing.assert_allclose(z, brute_cosine(f, head.weight.detach(), 7.5), rtol=1e-5, atol=1e-6)
    assert np.abs(z).max() <= 7.5 + 1e-5
    # invariant to the scale of a feature vector and of a class weight
    torch.testing.assert_close(head(3 * f), head(f))
    assert torch.equal(head(torch.zeros(1, 6)), torch.zeros(1, 4))


def test_learnable_or_fixed_scale():
    learn, fixed = CosineHead(3, 2, 4.0, True), CosineHead(3, 2, 4.0, False)
    assert isinstance(learn.scale, torch.nn.Parameter) and learn.scale.ndim == 0
    assert "scale" not in dict(fixed.named_parameters()) and "scale" in fixed.state_dict()
    learn(torch.randn(2, 3)).sum().backward()
    assert learn.scale.grad is not None
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            CosineHead(3, 2, bad)


def test_to_cosine_head_copies_the_linear_rows_and_is_idempotent():
    model = pretrained()
    weight = model.head.weight.detach().clone()
    to_cosine_head(model, 3.0, learnable_scale=False)
    assert isinstance(model.head, CosineHead)
    assert torch.equal(model.head.weight.detach(), weight)
    head = model.head
    assert to_cosine_head(model, 99.0).head is head  # already cosine: unchanged
    other = torch.nn.Module()
    other.head = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="replaces a linear head.*Sequential"):
        to_cosine_head(other)


def test_classifier_properties_survive_the_conversion():
    from calib.models import create_model

    model = to_cosine_head(create_model("digits_cnn", 10, in_chans=1), 5.0)
    assert model.num_classes == 10 and model.num_features == 128
    features, logits = model.forward_features_logits(torch.randn(2, 1, 16, 16))
    torch.testing.assert_close(logits, model.head(features))


def test_timm_classifier_is_converted():
    timm = pytest.importorskip("timm")
    net = timm.create_model("test_efficientnet", num_classes=5)
    to_cosine_head(net, 4.0)
    assert isinstance(net.classifier, CosineHead)
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("key", ["full", "linear_probe", "lp_ft", "wise_ft", "distill_absent"])
def test_methods_train_a_cosine_head(tmp_path, key):
    params = {"head": "cosine", "head_scale": 6.0}
    if key == "lp_ft":
        params["probe_epochs"] = 1
    spec = METHODS.get(key)
    pre = state_copy(spec.prepare(pretrained(), params))
    model = spec.run(make_context(tmp_path, params))
    assert isinstance(model.head, CosineHead)
    ft = state_copy(model)
    assert ft.keys() == pre.keys() and "head.scale" in ft and "head.bias" not in ft
    assert not torch.equal(pre["head.weight"], ft["head.weight"])
    if key != "wise_ft":  # the scale is learnable (α-mixed for wise_ft)
        assert not torch.equal(pre["head.scale"], ft["head.scale"])
    with torch.no_grad():
        z = model.eval()(dataset().tensors[0])
    assert z.abs().max() <= float(model.head.scale.detach()) + 1e-4
