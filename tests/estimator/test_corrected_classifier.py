"""``CorrectedClassifier``: the model's logits through a fitted correction, in one call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from calib.estimator.bias_correction import BiasCorrection
from calib.estimator.corrected_classifier import CorrectedClassifier
from calib.estimator.pretrained_ensemble import PretrainedEnsemble
from calib.estimator.weight_aligning import WeightAligning
from calib.selectors import PseudoSplit


def _models():
    torch.manual_seed(0)
    ft, pre = nn.Linear(4, 6).double(), nn.Linear(4, 6).double()
    with torch.no_grad():
        ft.weight[:3] *= 3
    return ft, pre, torch.randn(10, 4, dtype=torch.float64)


def test_wa_module_equals_the_aligned_head_and_transform():
    ft, _, x = _models()
    wa = WeightAligning().fit(ft.weight.detach().numpy(), ft.bias.detach().numpy(), [0, 1, 2])
    module = CorrectedClassifier(ft, wa)
    out = module(x)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), wa.aligned_head(ft)(x).detach().numpy(), rtol=1e-12)
    np.testing.assert_array_equal(module.predict(x).numpy(), out.numpy().argmax(axis=1))
    np.testing.assert_allclose(module.predict_proba(x).sum(dim=1).numpy(), 1.0, rtol=1e-12)


def test_gla_module_adds_the_debiased_pretrained_logits():
    ft, pre, x = _models()
    gla = PretrainedEnsemble().fit(pre(x).detach().numpy(), seen_classes=[0, 1, 2])
    module = CorrectedClassifier(ft, gla, pretrained=pre)
    expected = ft(x).detach().numpy() + pre(x).detach().numpy() - gla.log_prior_
    np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="gla needs pretrained.*second forward pass"):
        CorrectedClassifier(ft, gla)


def test_bic_module_refuses_a_pretrained_model_and_unfitted_corrections():
    ft, pre, x = _models()
    z = ft(x).detach().numpy()
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])
    bic = BiasCorrection().fit(
        pseudo_splits=[PseudoSplit(z, y, [0, 1], [2, 3, 4, 5])], seen_classes=[0, 1, 2]
    )
    with pytest.raises(ValueError, match="bic does not use a pre-trained model"):
        CorrectedClassifier(ft, bic, pretrained=pre)
    np.testing.assert_allclose(CorrectedClassifier(ft, bic)(x).numpy(), bic.transform(z))
    with pytest.raises(Exception, match="not fitted yet"):
        CorrectedClassifier(ft, BiasCorrection())
