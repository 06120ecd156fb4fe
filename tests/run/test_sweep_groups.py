"""Sweep grouping: swept keys, labels, mean ± sample std over seeds (against numpy), figures."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from calib.figures.sweep import group_history_curves, sweep_series
from calib.run.sweep_groups import (
    Stat,
    flatten_config,
    format_grouped_table,
    group_runs,
    grouped_rows,
    swept_keys,
)

OPTIMIZERS = {"adam": (1e-3, 0.0), "sgd": (1e-2, 5e-4)}
SEEDS = (0, 1, 2)


def _config(opt, seed, i):
    lr, wd = OPTIMIZERS[opt]
    return {
        "optimizer": {"name": opt, "lr": lr, "weight_decay": wd},
        "seed": seed,
        "finetune": {"epochs": 8, "batch_size": 32, "seed": seed},
        "dataset": {"name": "digits", "classes": [0, 1, 2]},
        "run_dir": f"/outputs/sweep/{i}",
        "hydra": {"job": {"num": i}},
    }


@pytest.fixture(scope="module")
def runs():
    rng = np.random.default_rng(0)
    out = {}
    for i, (opt, seed) in enumerate((o, s) for o in OPTIMIZERS for s in SEEDS):
        ft = {"acc_absent": rng.uniform(0, 0.3), "ausuc": rng.uniform(0.5, 0.9), "gamma": 0.0}
        out[f"{i}"] = {
            "pretrained": {"acc_absent": 0.6, "ausuc": 0.45},
            "finetuned": ft,
            "calibrated": {
                "alg": {
                    "acc_absent": rng.uniform(0.3, 0.7),
                    "ausuc": ft["ausuc"],
                    "gamma": rng.normal(5),
                },
                "oracle": {
                    "acc_absent": rng.uniform(0.5, 0.8),
                    "ausuc": ft["ausuc"],
                    "gamma": rng.normal(8),
                },
            },
            "meta": {"config": _config(opt, seed, i)},
        }
    return out


def test_swept_keys_are_the_differing_ones(runs):
    assert swept_keys(runs) == [
        "finetune.seed", "optimizer.lr", "optimizer.name", "optimizer.weight_decay", "seed",
    ]  # fmt: skip
    assert flatten_config({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": {},
    }


def test_groups_average_over_seeds_only(runs):
    groups = group_runs(runs, metrics=("acc_absent", "ausuc", "gamma"))
    # one label per optimizer, naming only what was swept (the co-varying lr/wd are implied)
    assert [g.label for g in groups] == ["optimizer=adam", "optimizer=sgd"]
    for group, opt in zip(groups, OPTIMIZERS, strict=True):
        names = [n for n, r in runs.items() if r["meta"]["config"]["optimizer"]["name"] == opt]
        assert group.runs == tuple(names) and group.values["optimizer.name"] == opt
        for variant, key in (("fine-tuned", "finetuned"), ("pre-trained", "pretrained")):
            values = np.array([runs[n][key]["acc_absent"] for n in names])
            stat = group.stats[variant]["acc_absent"]
            assert stat.mean == pytest.approx(values.mean())
            assert stat.std == pytest.approx(np.std(values, ddof=1)) and stat.n == 3
        gammas = np.array([runs[n]["calibrated"]["alg"]["gamma"] for n in names])
        assert group.stats["alg"]["gamma"] == Stat(
            pytest.approx(gammas.mean()), pytest.approx(gammas.std(ddof=1)), 3
        )
    assert set(groups[0].stats) == {"pre-trained", "fine-tuned", "alg", "oracle"}


def test_labels_with_two_swept_keys_and_explicit_by(runs):
    changed = {n: {**r, "meta": {"config": {**r["meta"]["config"], "finetune": {**r["meta"]["config"]["finetune"], "epochs": 4 + int(n) % 2 * 4}}}}
               for n, r in runs.items()}  # fmt: skip
    labels = [g.label for g in group_runs(changed)]
    assert "finetune.epochs=4, optimizer=adam" in labels and len(labels) == 4
    by = group_runs(runs, by=["optimizer.lr"])
    assert [g.label for g in by] == ["optimizer.lr=0.001", "optimizer.lr=0.01"]
    with pytest.raises(ValueError, match=r"no run has config key\(s\) \['optimiser'\]"):
        group_runs(runs, by=["optimiser"])


def test_one_group_when_only_seeds_differ_and_missing_config_is_named(runs):
    adam = {n: r for n, r in runs.items() if r["meta"]["config"]["optimizer"]["name"] == "adam"}
    (group,) = group_runs(adam)
    assert group.label == "all runs" and len(group.runs) == 3
    with pytest.raises(ValueError, match="run 'x' has no meta.config"):
        group_runs({"x": {"finetuned": {}}})


def test_nan_and_missing_values_are_left_out_and_one_value_has_nan_std(runs):
    few = copy.deepcopy({n: r for n, r in list(runs.items())[:3]})
    few["1"]["finetuned"]["acc_absent"] = float("nan")
    del few["2"]["finetuned"]["ausuc"]
    (group,) = group_runs(few, metrics=("acc_absent", "ausuc"))
    assert group.stats["fine-tuned"]["acc_absent"].n == 2
    assert group.stats["fine-tuned"]["ausuc"].n == 2
    single = group_runs({"0": runs["0"]}, metrics=("acc_absent",))[0].stats["fine-tuned"][
        "acc_absent"
    ]
    assert single.n == 1 and math.isnan(single.std)


def test_grouped_rows_and_table(runs):
    groups = group_runs(runs, metrics=("acc_absent", "gamma"))
    rows = grouped_rows(groups)
    assert len(rows) == 2 * 4 and rows[0]["group"] == "optimizer=adam" and rows[0]["n_runs"] == 3
    row = next(r for r in rows if r["group"] == "optimizer=sgd" and r["variant"] == "alg")
    assert row["acc_absent"] == groups[1].stats["alg"]["acc_absent"].mean
    assert (
        row["acc_absent_std"] == groups[1].stats["alg"]["acc_absent"].std
        and row["acc_absent_n"] == 3
    )
    assert row["optimizer.name"] == "sgd"
    table = format_grouped_table(rows, metrics=("acc_absent", "gamma"))
    mean, std = row["acc_absent"], row["acc_absent_std"]
    assert f"{100 * mean:.1f} ± {100 * std:.1f}" in table and "fine-tuned + γ (alg)" in table
    assert max(len(line) for line in table.splitlines()) < 100  # no 105-character labels


def test_sweep_series_and_history_curves(runs):
    groups = group_runs(runs, metrics=("ausuc",))
    series = sweep_series(groups, "ausuc")
    assert list(series) == ["pre-trained", "fine-tuned", "alg", "oracle"]
    np.testing.assert_allclose(
        series["fine-tuned"]["mean"], [g.stats["fine-tuned"]["ausuc"].mean for g in groups]
    )
    histories = {
        "a": {"r1": [{"epoch": 0, "acc_absent": 0.6}, {"epoch": 2, "acc_absent": 0.2}],
              "r2": [{"epoch": 0, "acc_absent": 0.4}, {"epoch": 2, "acc_absent": None}, {"epoch": 4, "acc_absent": 0.1}]},
    }  # fmt: skip
    curves = group_history_curves(histories, "acc_absent")
    epochs, mean = curves["a"]["mean"]
    np.testing.assert_array_equal(epochs, [0, 2])
    np.testing.assert_allclose(mean, [0.5, 0.2])  # NaN skipped; epoch 4 is not in every run
    np.testing.assert_array_equal(curves["a"]["runs"]["r2"][0], [0, 2, 4])


def test_sweep_figures(runs, tmp_path):
    from calib.figures.files import save_figure
    from calib.figures.style import MODEL_LOOKS, SELECTOR_LOOKS
    from calib.figures.sweep import plot_sweep, plot_sweep_histories

    groups = group_runs(runs)
    fig = plot_sweep(groups, metrics=("ausuc", "acc_absent"), title="optimizer sweep")
    ausuc_ax, absent_ax = fig.axes[:2]
    # AUSUC does not depend on γ: the selectors are not repeated there
    # one swept key: its values as ticks, its name on the axis
    assert [t.get_text() for t in ausuc_ax.get_xticklabels()] == ["adam", "sgd"]
    assert ausuc_ax.get_xlabel().startswith("optimizer (mean ± sample std over 3 seeds)")
    assert len(ausuc_ax.containers) == 2 and len(absent_ax.containers) == 4
    alg = absent_ax.containers[2]
    np.testing.assert_allclose(
        alg.lines[0].get_ydata(), [100 * g.stats["alg"]["acc_absent"].mean for g in groups]
    )
    assert alg.lines[0].get_marker() == SELECTOR_LOOKS["alg"].marker
    assert absent_ax.containers[1].lines[0].get_color() == MODEL_LOOKS["fine-tuned"].color
    assert (
        "%" in absent_ax.get_ylabel() and "optimizer sweep" in fig.texts[0].get_text()
        if fig.texts
        else True
    )
    save_figure(fig, tmp_path / "sweep.png")
    histories = {"optimizer=adam": {"r1": [{"epoch": 0, "ausuc": 0.4}, {"epoch": 1, "ausuc": 0.8}]}}
    ax = plot_sweep_histories(histories, "ausuc", title="optimizer sweep")
    np.testing.assert_allclose(ax.get_lines()[-1].get_ydata(), [40.0, 80.0])
    assert "(%)" in ax.get_ylabel()


def test_histories_by_group_and_written_sweep_figures(runs, tmp_path):
    from calib.figures.sweep import histories_by_group, write_sweep_figures

    groups = group_runs(runs, metrics=("ausuc", "acc_absent"))
    rows = [
        {"epoch": 0, "acc_absent": 0.6, "ausuc": 0.5},
        {"epoch": 1, "acc_absent": 0.1, "ausuc": 0.7},
    ]
    by_group = histories_by_group(groups, {"0": rows, "1": rows, "4": [], "5": rows})
    assert by_group == {"optimizer=adam": {"0": rows, "1": rows}, "optimizer=sgd": {"5": rows}}
    written = write_sweep_figures(tmp_path, groups, by_group, title="sweep", formats=("png",))
    assert sorted(written) == ["sweep", "sweep_acc_absent_vs_epoch", "sweep_ausuc_vs_epoch"]
    assert all(p.exists() and p.stat().st_size > 1000 for paths in written.values() for p in paths)
    assert list(write_sweep_figures(tmp_path / "b", groups)) == ["sweep"]


def test_bad_figure_arguments_are_named(runs, tmp_path):
    from calib.figures.sweep import plot_sweep, write_sweep_figures

    groups = group_runs(runs, by="optimizer.name")  # one key as a string
    assert [g.label for g in groups] == ["optimizer=adam", "optimizer=sgd"]
    with pytest.raises(ValueError, match="metrics is empty"):
        plot_sweep(groups, metrics=())
    with pytest.raises(ValueError, match=r"formats must name file types .*'jpgx'"):
        write_sweep_figures(tmp_path, groups, formats=("jpgx",))
