"""Training-dynamics figures from a tiny real run: the compute functions' series, headless files."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from calib.dynamics import HistoryWriter, read_epoch_arrays, read_history
from calib.figures.classes import accuracy_gains, class_weight_norms, plot_weight_norms
from calib.figures.curves import curve_from_arrays, plot_curves_at_epochs, select_epochs
from calib.figures.dynamics import DYNAMICS_FIGURES, write_dynamics_figures
from calib.figures.epochs import (
    accuracy_series,
    logit_series,
    plot_epoch_series,
    update_similarity_series,
)
from calib.figures.style import GROUP_LOOKS, METRIC_LOOKS, SELECTOR_LOOKS
from calib.metrics.curve import curve_point
from tests.helpers_dynamics import SPLIT, tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("run")
    tiny_run(run_dir, every=1, epochs=4)
    return run_dir, read_history(run_dir)


def test_accuracy_series_are_the_history_in_percent(run):
    _, rows = run
    series = accuracy_series(rows)
    np.testing.assert_array_equal(series.epochs, [0, 1, 2, 3, 4])
    assert list(series.values) == [
        "acc_seen",
        "acc_absent",
        "alg_acc_absent",
        "acc_absent_absent",
        "ncm_acc_absent",
        "ausuc",
    ]
    for key, values in series.values.items():
        np.testing.assert_allclose(values, [100 * r[key] for r in rows])
    ax = plot_epoch_series(series, title="optimizer=sgd")
    for line, key in zip(ax.get_lines(), series.values, strict=True):
        np.testing.assert_allclose(line.get_ydata(), series.values[key])
        assert (line.get_color(), line.get_marker()) == (
            METRIC_LOOKS[key].color,
            METRIC_LOOKS[key].marker,
        )
    assert (
        "optimizer=sgd" in ax.get_title() and "%" in ax.get_ylabel() and "epoch" in ax.get_xlabel()
    )


def test_logit_and_similarity_series(run):
    _, rows = run
    logits = logit_series(rows)
    assert set(logits.values) == {
        "logit_seen_mean", "logit_absent_mean", "logit_gt_absent",
        "logit_other_absent_max", "logit_seen_max_on_absent",
    }  # fmt: skip
    np.testing.assert_allclose(
        logits.values["logit_gt_absent"], [r["logit_gt_absent"] for r in rows]
    )
    assert "logit units" in logits.ylabel
    # fine-tuning on S: the seen logits overtake the ground-truth absent logit on U samples
    gt, seen_max = logits.values["logit_gt_absent"], logits.values["logit_seen_max_on_absent"]
    assert gt[0] > seen_max[0] and gt[-1] < seen_max[-1]
    sim = update_similarity_series(rows)
    assert math.isnan(sim.values["update_cos_absent_absent"][0])  # no update at epoch 0
    np.testing.assert_allclose(
        sim.values["update_cos_seen_absent"][1:], [r["update_cos_seen_absent"] for r in rows[1:]]
    )


def test_weight_norms_sorted_and_by_index(run):
    run_dir, _ = run
    last, pre = read_epoch_arrays(run_dir, "head", 4), read_epoch_arrays(run_dir, "head", 0)
    data = class_weight_norms(last, 4, pre)
    assert np.all(np.diff(data.norms) <= 0) and sorted(data.classes) == list(range(6))
    np.testing.assert_array_equal(data.norms, last["weight_norm"][data.classes])
    np.testing.assert_array_equal(data.pretrained, pre["weight_norm"][data.classes])
    assert [g for c, g in zip(data.classes, data.groups)] == [
        "seen" if c in SPLIT.seen else "absent" for c in data.classes
    ]
    by_index = class_weight_norms(last, 4, order="index")
    np.testing.assert_array_equal(by_index.classes, np.arange(6))
    ax = plot_weight_norms(by_index)
    from matplotlib.colors import to_rgb

    # the epoch's norms as dots coloured by group (no bars from 0: the differences are the point)
    colors = {tuple(to_rgb(line.get_color())) for line in ax.lines if line.get_marker() in "o^s"}
    assert not ax.patches

    assert colors == {to_rgb(GROUP_LOOKS["seen"].color), to_rgb(GROUP_LOOKS["absent"].color)}
    with pytest.raises(ValueError, match="order must be"):
        class_weight_norms(last, 4, order="random")


def test_accuracy_gains_are_last_minus_first(run):
    _, rows = run
    gains = accuracy_gains(rows)
    assert set(gains) == {"NN", "NN within group", "NCM"}
    assert gains["NN"]["absent"] == pytest.approx(
        100 * (rows[-1]["acc_absent"] - rows[0]["acc_absent"])
    )
    assert gains["NN within group"]["absent"] == pytest.approx(
        100 * (rows[-1]["acc_absent_absent"] - rows[0]["acc_absent_absent"])
    )
    assert gains["NCM"]["seen"] == pytest.approx(
        100 * (rows[-1]["ncm_acc_seen"] - rows[0]["ncm_acc_seen"])
    )
    assert gains["NN"]["absent"] < -50  # the collapse of Acc U/Y
    with pytest.raises(ValueError, match="epoch-0 row"):
        accuracy_gains(rows[1:])


def test_curves_at_epochs(run):
    run_dir, rows = run
    assert select_epochs(range(9), 5) == [0, 2, 4, 6, 8]
    assert select_epochs([0, 3, 7], 5) == [0, 3, 7]
    assert select_epochs(range(11), 3) == [0, 5, 10]
    curves = {e: curve_from_arrays(read_epoch_arrays(run_dir, "curve", e)) for e in (0, 4)}
    assert curves[4].ausuc == rows[-1]["ausuc"]
    # the γ = 0 point of each stored curve is that epoch's Acc S/Y, U/Y
    assert curve_point(curves[4], 0.0) == (rows[-1]["acc_seen"], rows[-1]["acc_absent"])
    ax = plot_curves_at_epochs(curves, title="run A")
    marks = ax.get_lines()[-1]
    assert marks.get_marker() == SELECTOR_LOOKS["uncalibrated"].marker
    np.testing.assert_allclose(
        marks.get_xydata(),
        [[100 * r["acc_seen"], 100 * r["acc_absent"]] for r in (rows[0], rows[-1])],
    )
    assert [t.get_text().split(" (AUSUC")[0] for t in ax.get_legend().get_texts()][:2] == [
        "epoch 0 = pre-trained",
        "epoch 4",
    ]


@pytest.mark.slow  # six figures, PNG and PDF: a few seconds on a loaded 2-core machine
def test_write_dynamics_figures_writes_every_figure(run):
    run_dir, _ = run
    written = write_dynamics_figures(run_dir, title="optimizer=sgd seed=3", formats=("png", "pdf"))
    assert list(written) == list(DYNAMICS_FIGURES)
    for stem, paths in written.items():
        assert [p.name for p in paths] == [f"{stem}.png", f"{stem}.pdf"]
        with Image.open(paths[0]) as image:
            image.verify()
        assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_figures_without_head_statistics_are_skipped(tmp_path, caplog):
    """A history of rows only (no arrays, no logit keys): the figures it can feed, no more."""
    writer = HistoryWriter(tmp_path)
    for epoch, acc in ((0, 0.6), (2, 0.1)):
        writer.write({"epoch": epoch, "acc_seen": 0.5 + acc, "acc_absent": acc, "acc_absent_absent": 0.8,
                      "ausuc": 0.5, "n_seen": 10, "n_absent": 10, "acc_seen_seen": 0.9})  # fmt: skip
    with caplog.at_level(logging.INFO, logger="calib.figures"):
        written = write_dynamics_figures(tmp_path)
    assert set(written) == {"accuracies_vs_epoch", "nn_vs_ncm_gain"}
    assert "weight_norms skipped" in caplog.text and "logits_vs_epoch skipped" in caplog.text
    with pytest.raises(FileNotFoundError, match="no history"):
        write_dynamics_figures(tmp_path / "empty")


def test_unknown_format_is_named_before_drawing(run):
    run_dir, _ = run
    with pytest.raises(ValueError, match="formats must name file types"):
        write_dynamics_figures(run_dir, formats=("png", "gif87"))
