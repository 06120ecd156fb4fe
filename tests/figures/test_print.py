"""Figures a paper can print: the data behind each figure (not its pixels)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from calib.figures.classes import class_weight_norms, plot_weight_norms
from calib.figures.curves import plot_curves_at_epochs
from calib.figures.epochs import accuracy_series, plot_epoch_series, update_similarity_series
from calib.figures.reliability import run_reliability_series
from calib.figures.sweep import SWEEP_METRICS, plot_sweep
from calib.metrics.curve import seen_absent_curve


def rows(n=4):
    out = []
    for e in range(n):
        out.append({"epoch": e, "acc_seen": 0.5 + 0.1 * e, "acc_absent": 0.4 - 0.1 * e,
                    "alg_acc_absent": 0.45, "ausuc": 0.3,
                    "update_cos_absent_absent": None if e == 0 else 0.05 * e,
                    "update_cos_seen_absent": None if e == 0 else -0.02 * e})  # fmt: skip
    return out


def test_accuracies_show_absent_accuracy_after_gamma_in_percent():
    s = accuracy_series(rows())
    np.testing.assert_allclose(s.values["alg_acc_absent"], [45.0] * 4)  # 100 × 0.45
    assert "after γ" in s.labels["alg_acc_absent"]
    assert not any("S ∪ U" in label for label in s.labels.values())
    ax = plot_epoch_series(s, title="digits")
    assert "/" not in ax.get_title().split("—")[-1]  # the domain, no path


def test_update_similarity_range_fits_the_data_from_epoch_one():
    ax = plot_epoch_series(update_similarity_series(rows()))
    assert ax.get_xlim()[0] > 0  # epoch 0 has no update: no empty tick there
    lo, hi = ax.get_ylim()
    assert -0.2 < lo < -0.06 and 0.15 < hi < 0.3  # the data ±, 0 in view; not −1…1


def test_weight_norms_axis_does_not_start_at_zero_and_names_classes():
    head = {"weight_norm": np.array([1.5, 1.6, 1.4, 1.45]), "seen": [0, 1], "absent": [2, 3]}
    pre = {"weight_norm": np.array([1.5, 1.5, 1.5, 1.5])}
    data = class_weight_norms(head, 3, pre, order="index")
    ax = plot_weight_norms(data, class_names=["cat", "dog", "owl", "emu"])
    lo, hi = ax.get_ylim()
    assert 1.3 < lo < 1.4 and 1.6 < hi < 1.7
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "owl", "emu"]


def test_every_requested_epoch_is_drawn_and_a_selection_says_so():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 200)
    curves = {e: seen_absent_curve(rng.normal(size=(200, 6)), y, range(3)) for e in (0, 1, 3)}
    ax = plot_curves_at_epochs(curves, title="digits", of=4)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [lab.split(" (")[0] for lab in labels[:3]] == ["epoch 0 = pre-trained", "epoch 1",
                                                          "epoch 3"]  # fmt: skip
    assert all(lab.count("(") <= 1 for lab in labels)  # no doubled parentheses
    assert "3 of 4 evaluated epochs" in ax.get_title()


def _group(label, n, shift):
    stat = lambda v: SimpleNamespace(mean=v, std=0.01, n=n)  # noqa: E731
    metrics = lambda d: {m: stat(0.5 + d) for m in SWEEP_METRICS}  # noqa: E731
    return SimpleNamespace(label=label, runs=[], stats={"fine-tuned": metrics(shift),
                                                       "alg": metrics(shift + 0.1)})  # fmt: skip


def test_sweep_shows_the_cost_of_gamma_and_bars_only_for_several_seeds():
    fig = plot_sweep([_group("lr=0.1", 1, 0.0), _group("lr=0.01", 1, 0.05)])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Acc U/Y", "Acc S/Y", "Acc Y/Y", "AUSUC"]
    assert all(not ax.containers for ax in fig.axes)  # one seed: no error bars
    assert "one seed" in fig.axes[0].get_xlabel()
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [50.0, 55.0])  # in %
    fig = plot_sweep([_group("lr=0.1", 3, 0.0)])
    assert fig.axes[0].containers  # three seeds: the spread drawn


def test_run_reliability_shows_every_selector():
    entry = lambda g: {"gamma": g, "temperature": 1.5,  # noqa: E731
                       "gamma_and_T": {"temperature_seen": 1.5, "temperature_absent": 1.5}}  # fmt: skip
    series = run_reliability_series({"calibrated": {"alg": entry(1.0), "pcv": entry(2.0)}})
    assert series == {"fine-tuned": (0.0, 1.0), "+ γ (alg)": (1.0, 1.0), "+ γ (pcv)": (2.0, 1.0),
                      "+ γ + T (pcv, T = 1.50)": (2.0, (1.5, 1.5))}  # fmt: skip
