"""calib-collate on a synthetic sweep: grouping by swept keys, short labels, mean ± std (numpy),
the written tables and figures, and the command line's errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from calib.run.collate import collate_dir, find_runs, short_labels, sweep_groups, sweep_title
from calib.run.results import write_results

OPTIMIZERS = {"sgd": (1e-2, 5e-4), "adam": (1e-3, 0.0), "rmsprop": (1e-3, 0.0)}
SEEDS = (0, 1, 2)


def _config(opt: str, seed: int, i: int) -> dict:
    lr, wd = OPTIMIZERS[opt]
    return {
        "name": f"demo_{i}",  # the run's label: never a swept key
        "seed": seed,
        "device": "cpu" if i % 2 else "auto",  # cannot change a number
        "run_dir": f"/out/{i}",
        "eval": {"batch_size": 64 + i, "every_epochs": 1},
        "optimizer": {"name": opt, "lr": lr, "weight_decay": wd},
        "finetune": {"epochs": 8},
    }


def _metrics(rng: np.random.Generator, gamma: float = 0.0) -> dict:
    keys = ("acc_all", "acc_seen", "acc_absent", "hmean", "ausuc", "ncm_acc_all")
    return {"gamma": gamma, **{k: float(rng.uniform(0.1, 0.9)) for k in keys}}


@pytest.fixture()
def sweep(tmp_path):
    """9 runs (3 optimizers × 3 seeds) in Hydra-like folders; the first 4 have a history."""
    rng = np.random.default_rng(0)
    for i, (opt, seed) in enumerate((o, s) for o in OPTIMIZERS for s in SEEDS):
        results = {
            "pretrained": _metrics(rng),
            "finetuned": _metrics(rng),
            "calibrated": {"alg": _metrics(rng, float(rng.normal(4))), "oracle": _metrics(rng, 6)},
            "meta": {"config": _config(opt, seed, i)},
        }
        folder = tmp_path / "sweep" / f"{i}"
        write_results(results, folder)
        if i < 4:
            rows = [
                {"epoch": e, "acc_absent": 0.6 - 0.1 * e + 0.01 * i, "ausuc": 0.5}
                for e in (0, 1, 2)
            ]
            (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "sweep"


def test_groups_labels_and_ignored_keys(sweep):
    runs = find_runs(sweep)
    groups = sweep_groups(runs)
    # name, device, run_dir and eval.batch_size differ across runs but cannot change a number;
    # optimizer.lr (shared by adam and rmsprop) is implied by the optimizer: not in the label
    assert [g.label for g in groups] == ["optimizer=sgd", "optimizer=adam", "optimizer=rmsprop"]
    assert [len(g.runs) for g in groups] == [3, 3, 3]
    labels = short_labels(runs)
    assert labels["0"] == "optimizer=sgd, seed=0" and labels["8"] == "optimizer=rmsprop, seed=2"
    assert sweep_title(sweep, runs) == f"{sweep}, swept: optimizer, seed"


def test_grouped_means_and_stds_against_numpy(sweep):
    runs = find_runs(sweep)
    collate_dir(sweep, figures=False)
    with open(sweep / "collated_groups.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 4  # 3 groups × (pre-trained, fine-tuned, alg, oracle)
    for row in rows:
        names = [n for n, r in runs.items()
                 if r["meta"]["config"]["optimizer"]["name"] == row["group"].split("=")[1]]  # fmt: skip
        section, sel = {"pre-trained": ("pretrained", None), "fine-tuned": ("finetuned", None)}.get(
            row["variant"], ("calibrated", row["variant"])
        )
        for metric in ("acc_absent", "ausuc", "gamma"):
            values = np.array(
                [
                    runs[n][section][metric] if sel is None else runs[n][section][sel][metric]
                    for n in names
                ]  # fmt: skip
            )
            assert float(row[metric]) == pytest.approx(values.mean(), abs=1e-12)
            if values.std() > 0:
                assert float(row[f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1))
            assert int(row[f"{metric}_n"]) == 3


def test_markdown_long_and_grouped_tables(sweep):
    runs = find_runs(sweep)
    text = collate_dir(sweep, figures=False)
    assert text + "\n" == (sweep / "collated.md").read_text()
    assert text.startswith(f"**9 run(s) in {sweep}, swept: optimizer, seed**")
    long_part, grouped = text.split("**Mean ± sample std over seeds, 3 group(s)**")
    cells = [
        [c.strip() for c in x.strip("|").split("|")]
        for x in long_part.splitlines()
        if x.startswith("| opt")
    ]
    assert ["optimizer=adam, seed=1", "fine-tuned + γ (alg)"] in [c[:2] for c in cells]
    assert {c[0] for c in cells} == {f"optimizer={o}, seed={s}" for o in OPTIMIZERS for s in SEEDS}
    adam = [runs[n]["finetuned"]["acc_absent"] for n in ("3", "4", "5")]
    cell = f"{100 * np.mean(adam):.1f} ± {100 * np.std(adam, ddof=1):.1f}"
    line = next(
        x
        for x in grouped.splitlines()
        if x.startswith("| optimizer=adam ") and "| fine-tuned  " in x
    )
    assert cell in line
    with open(sweep / "collated.csv", newline="") as fh:
        long_rows = list(csv.DictReader(fh))
    assert len(long_rows) == 9 * 4 and long_rows[0]["folder"] == "0"
    assert long_rows[0]["run"] == "optimizer=sgd, seed=0"


def test_figures_written_with_histories(sweep):
    collate_dir(sweep)
    names = sorted(p.name for p in (sweep / "figures").iterdir())
    assert names == ["sweep.png", "sweep_acc_absent_vs_epoch.png", "sweep_ausuc_vs_epoch.png"]
    assert all((sweep / "figures" / n).stat().st_size > 1000 for n in names)


def test_the_command_line(sweep, capsys):
    from experiments.collate import main

    main([str(sweep), "--no-figures", "--metrics", "acc_absent,ausuc"])
    out = capsys.readouterr().out
    assert "optimizer=rmsprop" in out and "absent" in out and "NCM" not in out
    assert not (sweep / "figures").exists()
    with pytest.raises(SystemExit, match=r"calib-collate: metrics \['acc_absnt'\] are in no run"):
        main([str(sweep), "--no-figures", "--metrics", "acc_absnt"])
    (sweep.parent / "empty").mkdir()
    with pytest.raises(SystemExit, match="no results.json below"):
        main([str(sweep.parent / "empty")])
    with pytest.raises(SystemExit, match="is not a folder"):
        main([str(sweep.parent / "missing")])


def test_a_bad_figure_dpi_stops_before_any_table(sweep, monkeypatch):
    from experiments.collate import main

    monkeypatch.setenv("CALIB_FIGURE_DPI", "sharp")
    with pytest.raises(SystemExit, match="calib-collate: CALIB_FIGURE_DPI must be a positive"):
        main([str(sweep)])
    assert not list(sweep.glob("collated*")) and not (sweep / "figures").exists()
    main([str(sweep), "--no-figures"])  # no figure, no resolution needed
    assert (sweep / "collated.csv").exists()


def test_one_run_folder_is_its_own_sweep(sweep):
    """DIR may be a run folder itself: its name labels it, its history is found."""
    run = sweep / "0"
    text = collate_dir(run)
    assert text.startswith(f"**1 run(s) in {run}**") and "| 0   " in text
    assert (run / "figures" / "sweep_ausuc_vs_epoch.png").is_file()
