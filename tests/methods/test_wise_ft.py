"""WiSE-FT: weight interpolation and the α trade-off curve, against brute-force computations."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from calib.methods import AlphaCurve, alpha_tradeoff, interpolate_state

SEEN, ABSENT = [0, 1, 2], [3, 4, 5]


def states():
    g = torch.Generator().manual_seed(0)
    pre = {
        "w": torch.randn(4, 3, generator=g),
        "bn.running_var": torch.rand(3, generator=g) + 0.5,
        "bn.num_batches_tracked": torch.tensor(7),
        "half": torch.randn(5, generator=g).half(),
        "mask": torch.tensor([True, False]),
    }
    ft = {
        "w": torch.randn(4, 3, generator=g),
        "bn.running_var": torch.rand(3, generator=g) + 0.5,
        "bn.num_batches_tracked": torch.tensor(19),
        "half": torch.randn(5, generator=g).half(),
        "mask": torch.tensor([False, False]),
    }
    return pre, ft


def test_interpolation_ends_are_exact_and_the_middle_is_linear():
    pre, ft = states()
    at0, at1 = interpolate_state(pre, ft, 0.0), interpolate_state(pre, ft, 1.0)
    for k in ("w", "bn.running_var", "half"):
        assert torch.equal(at0[k], pre[k]) and torch.equal(at1[k], ft[k]), k
        assert at0[k].dtype == pre[k].dtype
    for a in (0.25, 0.5, 0.8):
        mid = interpolate_state(pre, ft, a)
        for k in ("w", "bn.running_var", "half"):
            brute = ((1 - a) * pre[k].double() + a * ft[k].double()).to(pre[k].dtype)
            tol = 1e-3 if pre[k].dtype == torch.float16 else 1e-6
            torch.testing.assert_close(mid[k], brute, rtol=tol, atol=tol)
    for a in (0.0, 0.5, 1.0):  # counters and masks cannot be mixed: the fine-tuned model's
        mid = interpolate_state(pre, ft, a)
        assert torch.equal(mid["bn.num_batches_tracked"], ft["bn.num_batches_tracked"])
        assert torch.equal(mid["mask"], ft["mask"])
    assert interpolate_state(pre, ft, 0.5)["w"] is not ft["w"]


def test_interpolation_refuses_mismatched_states_and_bad_alpha():
    pre, ft = states()
    with pytest.raises(ValueError, match=r"only in pre \['mask'\]"):
        interpolate_state(pre, {k: v for k, v in ft.items() if k != "mask"}, 0.5)
    with pytest.raises(ValueError, match=r"entry 'w': pre is torch.float32\(4, 3\)"):
        interpolate_state(pre, {**ft, "w": torch.zeros(3, 4)}, 0.5)
    for bad in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match=f"alpha must be a number in \\[0, 1\\], got {bad!r}"):
            interpolate_state(pre, ft, bad)


def logits_grid(n=60, seed=0):
    """Fake logits of mixed models: the seen logits grow with α, the absent ones do not."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, n)
    base = rng.normal(size=(n, 6))
    base[np.arange(n), labels] += 1.0
    out = {}
    for a in (1.0, 0.0, 0.5, 0.25, 0.75):  # any key order
        z = base.copy()
        z[:, SEEN] += 3 * a
        out[a] = z
    return out, labels


def brute_accuracies(z, y):
    pred = z.argmax(1)
    s, u = np.isin(y, SEEN), np.isin(y, ABSENT)
    return (pred[s] == y[s]).mean(), (pred[u] == y[u]).mean(), (pred == y).mean()


def test_alpha_tradeoff_against_brute_force():
    grid, labels = logits_grid()
    curve = alpha_tradeoff(grid, labels, SEEN, ABSENT)
    assert isinstance(curve, AlphaCurve) and len(curve) == 5
    np.testing.assert_array_equal(curve.alpha, [0.0, 0.25, 0.5, 0.75, 1.0])
    for k, a in enumerate(curve.alpha):
        s, u, y = brute_accuracies(grid[a], labels)
        assert (curve.acc_seen[k], curve.acc_absent[k], curve.acc_all[k]) == (s, u, y)
    area = 0.0
    for k in range(len(curve) - 1):
        width = curve.acc_seen[k + 1] - curve.acc_seen[k]
        area += width * (curve.acc_absent[k] + curve.acc_absent[k + 1]) / 2
    assert curve.area == pytest.approx(area, abs=1e-12)
    assert curve.acc_seen[-1] > curve.acc_seen[0] and curve.acc_absent[-1] < curve.acc_absent[0]
    assert curve.area > 0  # Acc S/Y grows with α here


def test_alpha_tradeoff_takes_tensors_and_default_absent():
    grid, labels = logits_grid()
    a = alpha_tradeoff(grid, labels, SEEN)
    b = alpha_tradeoff(
        {k: torch.from_numpy(v) for k, v in grid.items()}, torch.from_numpy(labels), SEEN
    )
    np.testing.assert_array_equal(a.acc_absent, b.acc_absent)
    assert a.area == b.area


def test_alpha_tradeoff_errors():
    grid, labels = logits_grid()
    with pytest.raises(ValueError, match="empty"):
        alpha_tradeoff({}, labels, SEEN)
    with pytest.raises(ValueError, match="α must be a number in \\[0, 1\\], got 2"):
        alpha_tradeoff({2: grid[1.0]}, labels, SEEN)
    with pytest.raises(ValueError, match="one α twice"):
        alpha_tradeoff({Fraction(1, 3): grid[1.0], 1 / 3: grid[1.0]}, labels, SEEN)
    one = alpha_tradeoff({0.5: grid[0.5]}, labels, SEEN)
    assert np.isnan(one.area)


def test_alpha_tradeoff_takes_states():
    """α -> SeenAbsentState: the same curve as from the logits (calib-run's eval.logits=state)."""
    from calib.metrics.streaming import SeenAbsentState

    rng = np.random.default_rng(4)
    y = rng.integers(0, 6, 80)
    grid = {a: rng.normal(size=(80, 6)) + 2 * a * np.eye(6)[y] for a in (0.0, 0.5, 1.0)}
    want = alpha_tradeoff(grid, y, [0, 1, 2], [3, 4, 5])
    states = {a: SeenAbsentState(6, [0, 1, 2], [3, 4, 5]).update(z, y) for a, z in grid.items()}
    got = alpha_tradeoff(states, None, [0, 1, 2], [3, 4, 5])
    for field in ("alpha", "acc_seen", "acc_absent", "acc_all"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-12)
    assert got.area == pytest.approx(want.area, rel=1e-12)
