"""The paper's benchmarks end to end on tiny fake roots (CPU, offline, tiny random-init backbones).

Each benchmark experiment (conf/experiment/{office_home,imagenet_r,imagenet_s,vtab}_*.yaml)
is composed with Hydra's compose API, shrunk to a smoke version (a small CNN or a tiny CLIP
at 32×32 px, two iterations, two PCV splits) and run through calib.run.plan.build_plan on a
fake dataset root in the benchmark's real layout. Also: the VTAB-1k data module, the
missing-dataset message of `calib-run`, the paper-style table and the benchmark script.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from calib.data import (
    ClassSplit,
    DatasetNotFoundError,
    make_fake_root,
    shipped_vtab_tasks,
    vtab,
    vtab_class_names,
    vtab_class_split,
    vtab_task,
)
from calib.figures.dynamics import DYNAMICS_FIGURES
from calib.run.collate import collate_dir, paper_rows, paper_table
from calib.run.plan import build_plan
from calib.run.results import write_results
from tests.helpers_paper import (
    SMOKE,
    benchmark_classes,
    compose_experiment,
    fake_overrides,
)

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- VTAB-1k data


def test_vtab_shipped_class_names():
    tasks = shipped_vtab_tasks()
    expected = {"caltech101": 102, "cifar": 100, "dtd": 47, "oxford_flowers102": 102}
    expected.update({"oxford_iiit_pet": 37, "svhn": 10, "eurosat": 10, "resisc45": 45})
    for task, n in expected.items():
        names = vtab_class_names(task)
        assert task in tasks and len(names) == n == len(set(names)), task
        assert all(name and name == name.strip() and "_" not in name for name in names)
    assert vtab_class_names("cifar100")[:3] == ("apple", "aquarium fish", "baby")
    assert vtab_class_names("pets")[0] == "Abyssinian"
    assert vtab_class_names("dtd")[-1] == "zigzagged"
    assert vtab_task("pcam") == "patch_camelyon" and vtab_task("my_task") == "my_task"


def test_vtab_class_names_file_overrides_and_errors(tmp_path):
    (tmp_path / "dtd").mkdir()
    (tmp_path / "dtd" / "classnames.txt").write_text("rough\n\nsmooth\n  spotted \n")
    assert vtab_class_names("dtd", tmp_path) == ("rough", "smooth", "spotted")
    with pytest.raises(ValueError, match=r"no class names for VTAB task 'sun397'.*classnames\.txt"):
        vtab_class_names("sun397", tmp_path)
    (tmp_path / "dtd" / "classnames.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="more than once"):
        vtab_class_names("dtd", tmp_path)


def test_vtab_builder_on_fake_root(tmp_path):
    fake = make_fake_root("vtab", tmp_path, n_per_class=2, size=24, tasks=["pets", "svhn"])
    assert fake.num_images == 2 * 2 * (37 + 10)
    assert (tmp_path / "oxford_iiit_pet" / "train800val200.txt").is_file()
    dom = vtab(task="pets", size=16, **fake.builder_kwargs)
    assert dom.name == "vtab/oxford_iiit_pet" and dom.num_classes == 37
    assert dom.class_names == vtab_class_names("oxford_iiit_pet")
    assert sorted(set(dom.train.targets.tolist())) == list(range(37))
    assert len(dom.train) == len(dom.test) == 74
    x, y = dom.test[0]
    assert tuple(x.shape) == (3, 16, 16) and y == 0
    # a label beyond the class names is an error, not a silent extra class
    (tmp_path / "svhn" / "classnames.txt").write_text("\n".join(map(str, range(9))))
    with pytest.raises(ValueError, match="outside"):
        vtab(task="svhn", **fake.builder_kwargs)


def test_vtab_missing_task_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        vtab(root=tmp_path, task="cifar100")
    msg = str(info.value)
    assert "VTAB-1k task 'cifar'" in msg and "NOAH" in msg
    assert "<root>/<task>/train800val200.txt" in msg and "classnames.txt" in msg


def test_vtab_split_rule():
    split = vtab_class_split(37)
    assert (len(split.seen), len(split.absent)) == (18, 19)
    assert split == ClassSplit.random(37, 18, seed=0)
    with pytest.raises(ValueError, match="at least 2 each"):
        vtab_class_split(2)  # patch_camelyon


# ----------------------------------------------------------------------------- smoke runs


def check_results(run_dir: Path, split: ClassSplit, num_splits: int) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    assert {"pretrained", "finetuned", "calibrated", "meta"} <= set(results)
    assert {"alg", "pcv", "oracle"} <= set(results["calibrated"])
    for name, metrics in results["calibrated"].items():
        assert math.isfinite(metrics["gamma"]), name
    for metrics in [results["pretrained"], results["finetuned"], *results["calibrated"].values()]:
        for key in ("acc_all", "acc_seen", "acc_absent", "ausuc", "ncm_acc_all"):
            assert 0.0 <= metrics[key] <= 1.0, key
    assert results["meta"]["seen_classes"] == list(split.seen)
    assert results["meta"]["absent_classes"] == list(split.absent)
    assert sorted(p.name for p in (run_dir / "pcv").iterdir()) == [
        f"split_{j}" for j in range(num_splits)
    ]
    assert (run_dir / "results.md").is_file()
    return results


SMOKE_RUNS = [
    pytest.param("office_home", "office_home_ar_cl", id="office_home_ar_cl"),
    pytest.param("office_home", "office_home_rw_pr", id="office_home_rw_pr"),
    pytest.param("imagenet_r", "imagenet_r", id="imagenet_r"),
    pytest.param("imagenet_s", "imagenet_s", id="imagenet_s", marks=pytest.mark.slow),
    pytest.param("vtab", "vtab_dtd", id="vtab_dtd"),
]


@pytest.mark.parametrize(("kind", "experiment"), SMOKE_RUNS)
def test_benchmark_smoke_run(tmp_path, kind, experiment):
    if kind == "vtab":
        fake = make_fake_root("vtab", tmp_path / "data", tasks=["dtd"])
    else:
        fake = make_fake_root(kind, tmp_path / "data", classes=benchmark_classes(kind))
    # the per-epoch evaluation and the figures (off in SMOKE) on one benchmark, image lists and all
    full = experiment == "office_home_ar_cl"
    history = ["eval.every_epochs=1", "eval.figures=true"] if full else []
    cfg = compose_experiment(experiment, [*SMOKE, *fake_overrides(fake), *history])
    plan = build_plan(cfg, run_dir=tmp_path / "run")
    if kind == "vtab":
        expected = vtab_class_split(47)
    else:
        expected = ClassSplit.from_benchmark(kind, cfg["split"]["source"])
    assert plan.split == expected  # the paper's split (VTAB: our documented rule)
    plan.run()
    check_results(tmp_path / "run", expected, num_splits=2)
    rows = (tmp_path / "run" / "history.jsonl").read_text().splitlines() if history else []
    assert [json.loads(r)["epoch"] for r in rows] == ([0, 1] if history else [])
    figures = sorted(p.name for p in (tmp_path / "run").rglob("*.png"))
    assert len(figures) == (2 + len(DYNAMICS_FIGURES) if full else 0), figures
    if kind == "office_home":  # the source model was trained on the source domain first
        stages = json.loads((tmp_path / "run" / "stages.json").read_text())["stages"]
        assert stages["source"]["identity"]["data"]["type"] == "ImageListDataset"
        assert plan.source.name == f"office_home/{cfg['source']['domain']}"


METHOD_RUNS = [
    pytest.param("office_home", "office_home_ar_cl", "lp_ft", id="office_home_ar_cl-lp_ft"),
    pytest.param("vtab", "vtab_dtd", "wise_ft", id="vtab_dtd-wise_ft"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "experiment", "method"), METHOD_RUNS)
def test_benchmark_runs_another_method(tmp_path, kind, experiment, method):
    """`benchmarks/paper/*.sh ROOT finetune.method=...`: the paper configs run every method."""
    if kind == "vtab":
        fake = make_fake_root("vtab", tmp_path / "data", tasks=["dtd"])
    else:
        fake = make_fake_root(kind, tmp_path / "data", classes=benchmark_classes(kind))
    extra = [f"finetune.method={method}"]
    if method == "wise_ft":
        extra.append("+finetune.method_options.alpha_grid=[0,1]")
    cfg = compose_experiment(experiment, [*SMOKE, *fake_overrides(fake), *extra])
    results = build_plan(cfg, run_dir=tmp_path / "run").run()
    assert results["meta"]["method"] == method
    assert set(results["calibrated"]) == {"alg", "pcv", "prior", "oracle"}
    if method == "wise_ft":
        assert results["alpha_tradeoff"]["alpha"] == [0.0, 1.0]


def test_paper_split_on_a_root_with_few_classes(tmp_path):
    """Two seen and two absent classes with images, 61 of the 65 without: must still run."""
    fake = make_fake_root("office_home", tmp_path / "data")
    cfg = compose_experiment("office_home_ar_cl", [*SMOKE, *fake_overrides(fake)])
    plan = build_plan(cfg, run_dir=tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan.run()
    assert any("no training sample" in str(w.message) for w in caught)  # said, not hidden
    check_results(tmp_path / "run", ClassSplit.from_benchmark("office_home", "Ar"), 2)


def test_build_plan_takes_class_names_from_the_dataset(tmp_path):
    fake = make_fake_root("vtab", tmp_path / "data", tasks=["svhn"])
    cfg = compose_experiment("vtab_svhn", [*SMOKE, *fake_overrides(fake)])
    plan = build_plan(cfg, run_dir=tmp_path / "run")
    assert plan.make_model().head.out_features == 10


# ----------------------------------------------------------------------------- missing data


def test_missing_dataset_stops_calib_run_before_training(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        "experiment=office_home_ar_cl",
        "dataset.root=/nonexistent/office_home",
        f"run_dir={tmp_path / 'run'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        "progress=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-3000:]
    assert "Office-Home not found under /nonexistent/office_home" in out
    assert "https://www.hemanthdv.org/officeHomeDataset.html" in out
    assert "<root>/Art/<Class>/<file>.jpg" in out
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


# ----------------------------------------------------------------------------- collation


def fake_results(acc: float, selectors=("alg", "pcv", "prior", "oracle")) -> dict:
    def metrics(a, gamma=0.0):
        return {
            "gamma": gamma,
            "acc_seen": a,
            "acc_absent": a / 2,
            "acc_all": 0.75 * a,
            "hmean": 2 * a * (a / 2) / (a + a / 2),
            "ausuc": a / 4,
            "ncm_acc_all": math.nan,
        }

    return {
        "pretrained": metrics(acc / 2),
        "finetuned": metrics(acc),
        "calibrated": {name: metrics(acc + 0.1, gamma=1.5) for name in selectors},
        "meta": {},
    }


def test_paper_table_rows_and_average(tmp_path):
    write_results(fake_results(0.4), tmp_path / "office_home_ar_cl")
    write_results(fake_results(0.6, selectors=("alg", "oracle")), tmp_path / "office_home_ar_pr")
    per_setting, average = paper_rows(
        {"a": fake_results(0.4), "b": fake_results(0.6, ("alg", "oracle"))}
    )
    models = [r["model"] for r in per_setting]
    # a run without meta.method is plain fine-tuning (`full`); the oracle used U labels
    assert models[:5] == [
        "pre-trained",
        "full",
        "full + γ ALG",
        "full + γ PCV",
        "full + γ oracle †",
    ]
    assert models[5:] == ["pre-trained", "full", "full + γ ALG", "full + γ oracle †"]
    assert [r["uses_absent_labels"] for r in per_setting[:5]] == [False] * 4 + [True]
    by_model = {r["model"]: r for r in average}
    assert by_model["full"]["n"] == 2 and by_model["full + γ PCV"]["n"] == 1
    assert by_model["full"]["acc_seen"] == pytest.approx(0.5)
    assert by_model["full + γ PCV"]["acc_seen"] == pytest.approx(0.5)
    assert by_model["full"]["gamma"] is None and by_model["full"]["ncm_acc_all"] is None

    text = collate_dir(tmp_path, paper=True, figures=False)
    assert text == (tmp_path / "collated_paper.md").read_text()
    assert "**office_home_ar_cl**" in text and "Average over 2 settings" in text
    header = next(line for line in text.splitlines() if "Acc S/Y" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "model", "γ", "Acc S/Y", "Acc U/Y", "Acc Y/Y", "hmean", "AUSUC", "NCM Y/Y",
    ]  # fmt: skip
    alg = next(line for line in text.splitlines() if line.startswith("| full + γ ALG"))
    assert [c.strip() for c in alg.strip("|").split("|")][1:4] == ["+1.500", "50.0", "25.0"]
    assert text.rstrip().splitlines()[-1].startswith("† uses labels of the absent classes U")
    csv = (tmp_path / "collated_paper.csv").read_text().splitlines()
    assert len(csv) == 1 + 5 + 4 + 5  # header, two settings, the average of five models
    assert "Average" not in paper_table({"only": fake_results(0.4)})  # one setting: no average


# ----------------------------------------------------------------------------- the script


@pytest.mark.slow
def test_office_home_script_runs_every_pair_and_prints_the_table(tmp_path):
    fake = make_fake_root("office_home", tmp_path / "data", classes=range(65))
    out = tmp_path / "multirun"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "CALIB_PAPER_DIR": str(out),
        "OMP_NUM_THREADS": "1",
    }
    smoke = [o for o in SMOKE if not o.startswith(("calibration.", "dataset."))]
    cmd = [
        str(REPO / "benchmarks" / "paper" / "office_home.sh"),
        str(fake.root),
        "model=smoke_cnn",
        *smoke,
        "dataset.size=16",
        # keys that the default experiment lacks take ++ in a multirun over experiments
        f"++dataset.list_dir={fake.list_dir}",
        "++calibration.pcv.num_splits=1",  # PCV runs; its k splits are tested elsewhere
        "hydra.sweep.subdir=${name}",  # the lists' path would otherwise name the folders
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    pairs = ["ar_cl", "ar_pr", "ar_rw", "rw_ar", "rw_cl", "rw_pr"]
    bench = out / "office_home"
    assert sorted(p.parent.name for p in bench.rglob("results.json")) == [
        f"office_home_{p}" for p in pairs
    ]
    assert "Average over 6 settings" in done.stdout
    assert done.stdout.endswith((bench / "collated_paper.md").read_text())  # printed last
    ar_cl = json.loads((bench / "office_home_ar_cl" / "results.json").read_text())
    assert ar_cl["meta"]["source"] == "office_home/Art"
    assert ar_cl["meta"]["seen_classes"] == list(
        ClassSplit.from_benchmark("office_home", "Ar").seen
    )
    assert np.isfinite(ar_cl["calibrated"]["pcv"]["gamma"])
