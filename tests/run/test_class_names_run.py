"""calib-run with class names: split.seen/absent and sequence.stages as the target's names, the
opt-in split.kind=infer, and the names in results.json, results.md, sequence.md and stages.png.

Two test datasets are registered (and removed again): the demo's digits with the names
"zero" … "nine" (the shipped digits are named "0" … "9"), and a target whose training set
holds only the digits 0–4 (for split.kind=infer).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from torch.utils.data import Subset

from calib.data import DATASETS, ClassSplit, dataset_targets
from calib.data.digits import DIGIT_CLASS_NAMES, digits_domain
from calib.run import build_plan
from calib.run.collate import collate_dir, find_runs
from calib.run.results import (
    class_record,
    classes_line,
    flatten_results,
    format_table,
    shown_class_names,
    write_results,
)
from calib.run.schema import ConfigError
from calib.run.sequence_run import (
    check_sequence_stages,
    plan_sequence,
    run_sequence,
    sequence_tables,
)
from tests.helpers_paper import CONF
from tests.helpers_run import TINY, tiny_config

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _named_digits(**kwargs):
    return dataclasses.replace(digits_domain(**kwargs), class_names=WORDS, name="digits_named")


def _digits_seen_only(**kwargs):
    """The digits with the training samples of 0–4 only (the test set has every digit)."""
    domain = digits_domain(**kwargs)
    rows = np.flatnonzero(dataset_targets(domain.train) < 5).tolist()
    return dataclasses.replace(
        domain, train=Subset(domain.train, rows), train_eval=None, class_names=WORDS,
        name="digits_seen_only",
    )  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _datasets():
    DATASETS.register("digits_named", _named_digits)
    DATASETS.register("digits_seen_only", _digits_seen_only)
    yield
    DATASETS.unregister("digits_named")
    DATASETS.unregister("digits_seen_only")


def _cfg(dataset="digits_named", **split):
    cfg = tiny_config(["eval.every_epochs=0"])
    cfg["dataset"] = {**cfg["dataset"], "name": dataset}
    cfg["split"] = {**cfg["split"], **split}
    return cfg


def _keys(plan):
    return {stage.name: stage.key for stage in plan.stages().all()}


# ---------------------------------------------------------------------- split.seen as names


def test_named_classes_key_the_run_as_their_indices(tmp_path):
    named = build_plan(_cfg(seen=["two", "zero", "one"], absent=["nine", 5]), tmp_path / "a")
    indexed = build_plan(_cfg(seen=[2, 0, 1], absent=[9, 5]), tmp_path / "b")
    assert named.split == indexed.split == ClassSplit.explicit([0, 1, 2], [5, 9], num_classes=10)
    # the config the run records (run.json, results' meta.config) holds the indices, in the
    # order given, so that every stage key is the same: the same numbers, served to both
    assert named.config["split"]["seen"] == [2, 0, 1]
    assert named.config["split"]["absent"] == [9, 5]
    assert named.meta["config"]["split"] == indexed.meta["config"]["split"]
    assert named.identity == indexed.identity
    assert _keys(named) == _keys(indexed)


def test_a_named_run_resumes_the_folder_of_its_indices_and_computes_the_same_numbers(demo_copy):
    """The demo (split.seen=[0..4] on the digits, whose names are "0" … "9") rerun with the
    names: nothing is refused, every stage is served and the numbers are the demo's."""
    plan, results, run_dir = demo_copy
    cfg = tiny_config(["eval.figures=true"])
    cfg["split"] = {**cfg["split"], "seen": ["0", "1", "2", "3", "4"]}
    named = build_plan(cfg, run_dir=run_dir)
    assert _keys(named) == _keys(plan)
    computed = sorted(run_dir.rglob("*.pt"))  # checkpoints and extractions
    assert any(p.parent.name == "extract" for p in computed)
    before = {p: p.stat().st_mtime_ns for p in computed}
    again = named.run()
    assert {p: p.stat().st_mtime_ns for p in computed} == before  # nothing recomputed
    records = json.loads((run_dir / "stages.json").read_text())["stages"]
    assert {name: r["key"] for name, r in records.items()} == _keys(plan)
    for row in ("pretrained", "finetuned"):
        assert again[row] == results[row]
    assert again["calibrated"] == results["calibrated"]


def test_a_misspelt_name_stops_before_any_work_with_a_did_you_mean(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        build_plan(_cfg(seen=["zero", "tow"]), run_dir)
    message = str(err.value)
    assert message == "split.seen: 'tow' is not a class name; did you mean 'two'?"
    with pytest.raises(ConfigError, match=r"^split.absent: 'Five' is not a class name; did you"):
        build_plan(_cfg(seen=["zero"], absent=["Five"]), run_dir)
    assert not run_dir.exists()


def test_calib_run_names_a_misspelt_class_in_one_line_before_any_work(tmp_path):
    """On the digits (named "0" … "9") a Hydra override ``split.seen=[0,1,2x]``: "2x" is a
    string, not a class."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "experiments.run", *TINY, "split.seen=[0,1,2x]",
           f"run_dir={run_dir}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        cmd, cwd=CONF.parent, env=env, capture_output=True, text=True, timeout=180
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "split.seen: '2x' is not a class name; did you mean '2'?" in output
    assert "Traceback" not in output
    assert not (run_dir / "stages.json").exists() and not (run_dir / "run.json").exists()


def test_the_schema_takes_names_and_infer():
    from calib.run.schema import check_config

    check_config(_cfg(seen=["zero", 1], absent=None))
    check_config(_cfg(kind="infer", seen=None, absent=None))
    with pytest.raises(ConfigError, match=r"split.seen"):
        check_config(_cfg(seen=["zero", 1.5]))


# ---------------------------------------------------------------------- split.kind=infer


def test_infer_takes_s_from_the_target_training_labels_and_logs_it(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="calib.classes"):
        plan = build_plan(
            _cfg("digits_seen_only", kind="infer", seen=None, absent=None), tmp_path / "run"
        )
    labels = dataset_targets(plan.target.train)
    assert plan.split.seen == tuple(np.unique(labels).tolist()) == (0, 1, 2, 3, 4)
    assert plan.split.absent == (5, 6, 7, 8, 9)
    lines = [r.getMessage() for r in caplog.records if r.name == "calib.classes"]
    assert lines == [
        f"seen classes inferred from {labels.size} target training labels: "
        "5 classes: 0 zero, 1 one, 2 two, 3 three, 4 four"
    ]


def test_infer_is_refused_where_every_class_is_trained_on_or_with_keys_of_another_kind(tmp_path):
    with pytest.raises(ConfigError, match=r"target training labels cover all 10 classes"):
        build_plan(_cfg(kind="infer", seen=None, absent=None), tmp_path / "a")
    with pytest.raises(
        ConfigError,
        match=r"^split.seen is not used with split.kind=infer \(it takes none\); set it to null",
    ):
        build_plan(_cfg(kind="infer", seen=[0, 1], absent=None), tmp_path / "b")


# ---------------------------------------------------------------------- sequences

STAGES = [[0, 1, 2], [0, 1, 2, 3, 4]]
NAMED_STAGES = [["zero", "one", "two"], ["two", "one", "zero", "three", 4]]


def _sequence(stages):
    cfg = _cfg()
    cfg["sequence"] = {"stages": copy.deepcopy(stages)}
    return cfg


def test_named_sequence_stages_give_the_keys_of_their_indices(tmp_path):
    named = plan_sequence(_sequence(NAMED_STAGES), tmp_path)
    indexed = plan_sequence(_sequence(STAGES), tmp_path)
    assert [s.classes for s in named] == [tuple(c) for c in STAGES]
    assert [s.key for s in named] == [s.key for s in indexed]
    assert [s.config["split"]["seen"] for s in named] == STAGES


def test_a_misspelt_stage_name_is_named_with_a_did_you_mean(tmp_path):
    with pytest.raises(
        ConfigError, match=r"^sequence.stages\[1\]: 'thre' is not a class name; did you mean"
    ):
        plan_sequence(_sequence([["zero"], ["zero", "thre"]]), tmp_path)
    with pytest.raises(
        ConfigError, match=r"sequence.stages\[1\] = \['zero'\] drops class\(es\) \[1"
    ):
        check_sequence_stages([["zero", "one"], ["zero"]], WORDS)
    with pytest.raises(ConfigError, match=r"stages\[0\] must hold class indices ≥ 0 \(or, with"):
        check_sequence_stages([["zero"]])  # names without the target's names


@pytest.mark.slow
def test_a_named_sequence_runs_and_names_its_classes(tmp_path):
    """Two tiny stages given by name: sequence.json records the names, sequence.md the classes
    each stage adds, each stage's results.json its mapping."""
    cfg = _sequence(NAMED_STAGES)
    cfg["eval"] = {**cfg["eval"], "figures": True}
    out = run_sequence(cfg, tmp_path)
    assert [s["classes"] for s in out["stages"]] == STAGES
    record = json.loads((tmp_path / "sequence.json").read_text())
    assert record["class_names"] == list(WORDS)
    assert [s["classes"] for s in record["stages"]] == STAGES
    text = (tmp_path / "sequence.md").read_text()
    assert "added to S: 2 classes: 3 three, 4 four." in text
    assert "Classes: S = 5 classes: 0 zero, 1 one, 2 two, 3 three, 4 four; U = 5 classes" in text
    second = json.loads((tmp_path / "stage_2" / "results.json").read_text())
    assert second["classes"] == {"names": list(WORDS), "seen": STAGES[1], "absent": [5, 6, 7, 8, 9]}
    assert (tmp_path / "stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _fake_results(acc: float) -> dict:
    row = {"acc_all": acc, "acc_seen": 0.9, "acc_absent": 0.1, "hmean": 0.2}
    return {"finetuned": row, "calibrated": {"alg": {**row, "gamma": 1.0}}}


def test_sequence_md_names_the_classes_each_stage_adds(tmp_path):
    stages = plan_sequence(_sequence(STAGES), tmp_path)
    results = [_fake_results(0.5), _fake_results(0.6)]
    text = sequence_tables(stages, results, WORDS)
    first, second = text.split("## stage 2")
    assert "added to S" not in first  # its table lists S and U when its results have names
    assert "added to S: 2 classes: 3 three, 4 four.\n" in second
    plain = sequence_tables(stages, results, DIGIT_CLASS_NAMES)  # names = indices: no line
    assert plain == sequence_tables(stages, results) and "added to S" not in plain


def test_the_stage_figure_names_the_classes_each_stage_adds(tmp_path):
    from calib.figures.files import save_figure
    from calib.figures.stages import plot_stage_series, stage_classes_text, stage_series

    assert stage_classes_text(0, [0, 1, 2], (), WORDS) == "1: zero, one, two"
    assert stage_classes_text(1, [0, 1, 2, 3, 4], [0, 1, 2], WORDS) == "2: +three, four"
    assert stage_classes_text(2, [0, 1], [0, 1], WORDS) == "3: nothing added"
    assert stage_classes_text(1, range(10), [0], WORDS, limit=3) == "2: +one, two, three, … (+6)"
    reports = [
        {"finetuned": r["finetuned"], **r["calibrated"]}
        for r in (_fake_results(0.5), _fake_results(0.6))
    ]
    series = stage_series(reports, before="finetuned", seen_classes=STAGES, class_names=WORDS)
    assert series.stages == ("1\n|S|=3", "2\n|S|=5")  # the ticks as without names
    assert series.classes == ("1: zero, one, two", "2: +three, four")
    assert stage_series(reports, before="finetuned", seen_classes=STAGES).classes is None
    with pytest.raises(ValueError, match=r"class_names labels the stages' classes: it needs"):
        stage_series(reports, before="finetuned", class_names=WORDS)
    fig = plot_stage_series(series, title="digits_named")
    assert fig.get_supxlabel() == "Classes of each stage: 1: zero, one, two; 2: +three, four"
    path = tmp_path / "stages.png"
    save_figure(fig, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- results


def test_class_record_and_the_results_md_line(tmp_path):
    split = ClassSplit.explicit([2, 0], num_classes=4)
    record = class_record(split, ["cat", "dog", "fox", "emu"])
    assert record == {"names": ["cat", "dog", "fox", "emu"], "seen": [0, 2], "absent": [1, 3]}
    assert class_record(split, None)["names"] is None
    with pytest.raises(ValueError, match=r"class_names has 2 names but the split is for 4"):
        class_record(split, ["cat", "dog"])
    results = {**_fake_results(0.5), "classes": record}
    line = "Classes: S = 2 classes: 0 cat, 2 fox; U = 2 classes: 1 dog, 3 emu."
    assert classes_line(results) == line
    assert format_table(results).endswith(f"\n\n{line}")
    # no names, names that are the indices, or results of an older version: no line
    for classes in (class_record(split, None), class_record(split, ["0", "1", "2", "3"])):
        assert classes_line({**results, "classes": classes}) is None
    assert classes_line(_fake_results(0.5)) is None
    assert shown_class_names(DIGIT_CLASS_NAMES) is None and shown_class_names(WORDS) == WORDS
    # results.json keeps the mapping; the CSV files leave the names out, keep S and U
    write_results(results, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["classes"] == record
    assert (tmp_path / "results.md").read_text().rstrip("\n").endswith(line)
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert "classes.seen" in header and "classes.absent" in header
    assert "classes.names" not in header
    assert flatten_results(results)["classes.seen"] == "0 2"


def test_collate_reads_runs_with_and_without_the_mapping(tmp_path):
    split = ClassSplit.explicit([0, 1], num_classes=3)
    new = {**_fake_results(0.5), "classes": class_record(split, ["a b", "c", "d"])}
    write_results(new, tmp_path / "new")
    write_results(_fake_results(0.7), tmp_path / "old")  # written before results["classes"]
    assert set(find_runs(tmp_path)) == {"new", "old"}
    text = collate_dir(tmp_path, figures=False)
    assert "| new" in text and "| old" in text
    wide = (tmp_path / "collated_wide.csv").read_text().splitlines()[0].split(",")
    assert "classes.seen" in wide and "classes.names" not in wide


def test_results_json_records_the_class_mapping(demo_run):
    plan, results, run_dir = demo_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    expected = {
        "names": list(DIGIT_CLASS_NAMES),
        "seen": list(plan.split.seen),
        "absent": list(plan.split.absent),
    }
    assert results["classes"] == on_disk["classes"] == expected
    assert expected["seen"] == [0, 1, 2, 3, 4]
