"""The α trade-off figure, on a tiny real run: pre-train, WiSE-FT, extract, compute, draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib import accuracy_report, seen_absent_curve
from calib.methods import METHODS, alpha_tradeoff, endpoints, interpolate_state
from calib.methods.wise_ft import area_over_seen_range, gamma_area_on_alpha_range
from calib.train import TrainConfig, train
from tests.helpers_methods import SPLIT, labelled, make_context
from tests.helpers_train import make_dataset, make_model

pytest.importorskip("matplotlib")

GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def split_data(n: int = 1500):
    """One synthetic task (one labelling map), cut into source, target-train and test parts."""
    x, y = make_dataset(n, seed=0).tensors
    parts = np.array_split(np.arange(n), 3)
    source = labelled(x[parts[0]], y[parts[0]])
    keep = parts[1][np.isin(y[parts[1]].numpy(), SPLIT.seen)]
    return source, labelled(x[keep], y[keep]), (x[parts[2]], y[parts[2]])


def tiny_run(tmp_path):
    """Pre-train a TinyNet on all 5 classes, WiSE-FT it on S; logits of every α on a test set."""
    source, target, (x, y) = split_data()
    pre = make_model()
    cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=6, batch_size=50, seed=0)
    train(pre, source, cfg, device="cpu", progress=False, log=lambda s: None)
    ctx = make_context(
        tmp_path / "wise",
        {"alpha": 0.5, "alpha_grid": GRID},
        model=pre,
        data=target,
        config={"epochs": 3, "iters_per_epoch": 8, "batch_size": 32},
    )
    METHODS.get("wise_ft").run(ctx)
    pre_state, ft_state = endpoints(ctx)
    net = make_model()
    logits = {}
    for a in GRID:
        net.load_state_dict(interpolate_state(pre_state, ft_state, a))
        with torch.no_grad():
            logits[a] = net.eval()(x).numpy()
    return logits, y.numpy()


@pytest.mark.slow
def test_alpha_tradeoff_on_a_tiny_run_and_its_figure(tmp_path):
    from calib.figures.alpha_tradeoff import plot_alpha_tradeoff
    from calib.figures.files import save_figure

    logits, labels = tiny_run(tmp_path)
    curve = alpha_tradeoff(logits, labels, SPLIT.seen, SPLIT.absent)
    for k, a in enumerate(GRID):
        rep = accuracy_report(logits[a], labels, SPLIT.seen, SPLIT.absent)
        assert (curve.acc_seen[k], curve.acc_absent[k]) == (rep["acc_seen"], rep["acc_absent"])
    # the setting's signature: fine-tuning on S raises Acc S/Y and drops Acc U/Y
    assert curve.acc_seen[-1] > curve.acc_seen[0] and curve.acc_absent[-1] < curve.acc_absent[0]
    gamma = {
        "pre-trained": seen_absent_curve(logits[0.0], labels, SPLIT.seen, SPLIT.absent),
        "fine-tuned": seen_absent_curve(logits[1.0], labels, SPLIT.seen, SPLIT.absent),
    }
    ax = plot_alpha_tradeoff(curve, gamma, title="WiSE-FT α vs γ (tiny run)")
    lines = ax.get_lines()
    assert len(lines) == 3
    # drawn in %, as every figure and table (the same product on both sides: exact)
    np.testing.assert_array_equal(lines[2].get_xdata(), 100.0 * np.asarray(curve.acc_seen))
    np.testing.assert_array_equal(lines[2].get_ydata(), 100.0 * np.asarray(curve.acc_absent))
    assert ax.get_xlim() == (0.0, 100.0) and "%" in ax.get_xlabel()
    assert ax.get_ylim() == (0.0, 100.0) and "%" in ax.get_ylabel()
    assert [t.get_text() for t in ax.texts] == ["α=0", "α=0.5", "α=1"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert (
        legend[0].startswith("pre-trained")
        and f"{100 * gamma['fine-tuned'].ausuc:.1f}" in legend[1]
    )
    assert f"area {100 * curve.area:.1f}" in legend[2]
    path = tmp_path / "alpha_tradeoff.png"
    save_figure(ax.figure, path)
    assert path.stat().st_size > 10_000
    # the α path ends on the γ = 0 points of the two γ curves
    for end, name in ((0, "pre-trained"), (-1, "fine-tuned")):
        g = gamma[name]
        k = int(np.searchsorted(g.gamma, 0.0))
        assert (g.acc_seen[k], g.acc_absent[k]) == (curve.acc_seen[end], curve.acc_absent[end])
    ref = gamma_area_on_alpha_range(curve, gamma["fine-tuned"])
    assert 0 < ref <= curve.acc_seen.max() - curve.acc_seen.min()


def test_area_over_seen_range():
    # the line y = 1 - x: analytic areas
    x, y = np.array([1.0, 0.5, 0.0]), np.array([0.0, 0.5, 1.0])
    assert area_over_seen_range(x, y, 0.0, 1.0) == pytest.approx(0.5)
    assert area_over_seen_range(x, y, 0.2, 0.6) == pytest.approx(0.4 - (0.6**2 - 0.2**2) / 2)
    assert area_over_seen_range(x[::-1], y[::-1], 0.2, 0.6) == pytest.approx(0.24)
    assert area_over_seen_range(x, y, 2.0, 3.0) == 0.0
    # over [0, 1] a γ curve's area is its AUSUC; the area is additive over x-ranges
    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(300, 6)), rng.integers(0, 6, 300)
    z[:, :3] += 1.0
    g = seen_absent_curve(z, labels, [0, 1, 2])
    gx, gy = g.acc_seen, g.acc_absent
    assert area_over_seen_range(gx, gy, 0.0, 1.0) == pytest.approx(g.ausuc, abs=1e-12)
    parts = area_over_seen_range(gx, gy, 0, 0.37) + area_over_seen_range(gx, gy, 0.37, 1)
    assert parts == pytest.approx(g.ausuc, abs=1e-12)


def test_alpha_labels_go_across_the_path_towards_the_origin():
    from calib.figures.alpha_tradeoff import _label_side

    flat_x, flat_y = np.array([0.4, 0.6, 0.8]), np.array([0.2, 0.2, 0.2])
    (dx, dy), ha, va = _label_side(flat_x, flat_y, 1)
    assert dx == pytest.approx(0.0) and dy < 0 and (ha, va) == ("center", "top")  # below, not on
    steep_x, steep_y = np.array([0.9, 0.9, 0.9]), np.array([0.6, 0.4, 0.2])
    (dx, dy), ha, va = _label_side(steep_x, steep_y, 2)  # the last point: one neighbour
    assert dx < 0 and dy == pytest.approx(0.0) and (ha, va) == ("right", "center")  # left
