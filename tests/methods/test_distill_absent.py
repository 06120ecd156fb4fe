"""The absent-class distillation term against a brute-force KL."""

from __future__ import annotations

import numpy as np
import torch

from calib.methods import absent_distillation_loss
from calib.methods.distill_absent import distillation_objective

ABSENT = [1, 3, 4]


def brute_kd(z, t, absent, tau):
    z, t = np.asarray(z, np.float64)[:, absent] / tau, np.asarray(t, np.float64)[:, absent] / tau
    total = 0.0
    for zi, ti in zip(z, t):
        q = np.exp(zi - zi.max()) / np.exp(zi - zi.max()).sum()
        p = np.exp(ti - ti.max()) / np.exp(ti - ti.max()).sum()
        total += float(np.sum(p * (np.log(p) - np.log(q))))
    return tau**2 * total / len(z)


def test_kd_equals_the_brute_force_kl():
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(7, 6, generator=g) * 3, torch.randn(7, 6, generator=g) * 3
    for tau in (0.5, 1.0, 2.0, 4.0):
        got = float(absent_distillation_loss(z, t, ABSENT, tau))
        assert np.isclose(got, brute_kd(z, t, ABSENT, tau), rtol=1e-5, atol=1e-7), tau
    # the seen columns play no part; a shift common to a row's U logits changes nothing
    z2 = z.clone()
    z2[:, [0, 2, 5]] += 10
    z2[:, ABSENT] += torch.arange(7.0)[:, None]
    assert np.isclose(
        float(absent_distillation_loss(z2, t, ABSENT, 2.0)), brute_kd(z, t, ABSENT, 2.0), rtol=1e-5
    )
    assert float(absent_distillation_loss(t, t, ABSENT, 2.0)) == 0.0


def test_kd_gradient_matches_the_kd_cross_entropy_gradient():
    # KL and LwF's cross-entropy differ by the teacher's entropy: same gradient
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 6, generator=g, requires_grad=True)
    t = torch.randn(5, 6, generator=g)
    tau = 2.0
    absent_distillation_loss(z, t, ABSENT, tau).backward()
    z2 = z.detach().clone().requires_grad_(True)
    p = torch.softmax(t[:, ABSENT] / tau, 1)
    ce = -(p * torch.log_softmax(z2[:, ABSENT] / tau, 1)).sum(1).mean() * tau**2
    ce.backward()
    torch.testing.assert_close(z.grad, z2.grad)


def test_objective_is_ce_plus_weighted_kd():
    teacher = torch.nn.Linear(4, 6)
    x = torch.randn(3, 4)
    z = torch.randn(3, 6)
    y = torch.tensor([0, 2, 5])
    loss = distillation_objective(teacher, ABSENT, 0.7, 2.0, label_smoothing=0.1)
    with torch.no_grad():
        t = teacher(x)
    ce = torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1)
    expect = float(ce) + 0.7 * brute_kd(z, t, ABSENT, 2.0)
    assert np.isclose(float(loss(z, y, x)), expect, rtol=1e-5)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
