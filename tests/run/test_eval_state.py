"""calib-run with eval.logits=state: the extraction stages stream their logits into
SeenAbsentStates and cache those; the report, the premise, and the selectors alg, pcv, prior
and oracle come from the states.

A tiny digits run in both modes (the same plan but for eval.logits) must agree on every number
both report: the two are different computations (the whole-matrix functions against the
per-sample state), so floats are compared with tolerances. What state mode leaves out (NCM,
top-5 at a selector's γ, the probability section) is absent and said in meta; a stage that
needs the logits themselves is refused before any work; the stage keys of the two modes
differ, and a resumed state run reads its cached states.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from calib.data import dataset_targets
from calib.run import build_plan
from calib.run.identity import identity_leaves
from calib.run.settings import EvalConfig
from calib.run.stage_plan import check_state_mode
from tests.helpers_run import tiny_config

#: The tiny demo without the per-epoch evaluation (its history is the same in both modes).
BASE = ["eval.every_epochs=0"]


def _config(mode: str, overrides: list[str] = ()) -> dict:
    cfg = tiny_config([*BASE, *overrides])
    cfg["eval"]["logits"] = mode  # set in the mapping: the plan is built from it
    return cfg


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory):
    """``{mode: (plan, results, run_dir)}`` of the tiny demo in each mode."""
    torch.set_num_threads(1)
    out = {}
    for mode in ("full", "state"):
        run_dir = tmp_path_factory.mktemp(f"eval_{mode}") / "run"
        figures = ["eval.figures=true"] if mode == "state" else []  # the state run's figures
        plan = build_plan(_config(mode, figures), run_dir=run_dir)
        out[mode] = (plan, plan.run(), run_dir)
    return out


def _leaves(tree, path=()):
    """``{dotted path: value}`` of every number (and string) of a results tree."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_leaves(value, (*path, str(key))))
        return out
    return {".".join(path): tree}


def test_state_run_reports_the_numbers_of_the_full_run(both_modes):
    full, state = (both_modes[m][1] for m in ("full", "state"))
    a = {k: v for k, v in _leaves(full).items() if not k.startswith("meta.")}
    b = {k: v for k, v in _leaves(state).items() if not k.startswith("meta.")}
    shared = sorted(set(a) & set(b))
    assert len(shared) > 80
    for key in shared:
        x, y = a[key], b[key]
        if key in ("premise.message", "premise.ncm_absent_absent_pretrained",
                   "premise.ncm_absent_absent_finetuned"):  # fmt: skip
            continue  # the full run's premise names NCM U/U beside; the state run has none
        if isinstance(x, float) and not isinstance(x, bool):
            if math.isnan(x):
                assert math.isnan(y), key
            elif key.endswith(".gamma"):  # the selectors' γ, logit units
                assert math.isclose(y, x, rel_tol=1e-9, abs_tol=1e-12), (key, x, y)
            else:  # accuracies, AUSUC, premise fractions
                assert math.isclose(y, x, rel_tol=1e-9, abs_tol=1e-12), (key, x, y)
        else:
            assert y == x, key
    # every selector's γ is there, and equal
    assert (
        list(state["calibrated"]) == list(full["calibrated"]) == ["alg", "pcv", "prior", "oracle"]
    )
    # what only the full run has: the NCM columns, top-5 at a selector's γ, probabilities
    only_full = set(a) - set(b)
    assert only_full, "the full run reports more"
    for key in only_full:
        row, metric = key.split(".")[-2:]
        assert (
            key.startswith("probability.")
            or metric.startswith("ncm_")
            or (key.startswith("calibrated.") and metric.endswith("_top5"))
        ), key
    assert not set(b) - set(a)
    # top-5 at γ = 0 is kept (the pre-trained and fine-tuned rows)
    assert state["finetuned"]["acc_all_top5"] == pytest.approx(full["finetuned"]["acc_all_top5"])
    assert "probability" not in state and "probability" in full
    meta = state["meta"]
    assert meta["eval_logits"] == "state" and meta["config"]["eval"]["logits"] == "state"
    assert set(meta["not_computed"]) == {"probability", "ncm", "calibrated_topk"}
    assert state["premise"]["ncm_absent_absent_finetuned"] is None


def test_state_runs_keep_no_logits_and_key_their_own_stages(both_modes):
    (full_plan, _, full_dir), (state_plan, _, state_dir) = both_modes["full"], both_modes["state"]
    fk, sk = full_plan.stages().keys(), state_plan.stages().keys()
    for name in ("extract/pretrained_test", "extract/finetuned_test", "extract/finetuned_train",
                 "extract/pcv_split_0_heldout", "selector/alg", "selector/oracle"):  # fmt: skip
        assert fk[name] != sk[name], name
    for name in ("finetune", "pcv/split_0", "pcv/split_1"):  # the trainings are the same
        assert fk[name] == sk[name], name
    assert "extract/pretrained_train" in fk and "extract/pretrained_train" not in sk
    c = full_plan.split.num_classes
    for name in sk:
        if not name.startswith("extract/"):
            continue
        data = torch.load(state_dir / f"{name}.pt", weights_only=True)
        assert "logits" not in data and data["stage_key"] == sk[name]
        for column in data["state"].values():  # per-sample numbers, never C of them
            assert column.ndim == 1 or column.shape[1] < c, name
        assert "logits" in torch.load(full_dir / f"{name}.pt", weights_only=True)
    # the curve is drawn from the states; the reliability figure needs probabilities
    assert (state_dir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (state_dir / "reliability.png").exists()
    # ALG's state: the S rows of the fine-tuning data only, with its terms and no gaps
    alg = torch.load(state_dir / "extract/finetuned_train.pt", weights_only=True)["state"]
    assert set(alg) == {"alg", "alg_flag", "label"}
    assert np.isin(alg["label"].numpy(), full_plan.split.seen).all()


def test_a_resumed_state_run_reads_its_cached_states(both_modes, tmp_path, monkeypatch, capsys):
    import calib.run.runner as runner

    _, results, run_dir = both_modes["state"]
    copy_dir = tmp_path / "run"
    shutil.copytree(run_dir, copy_dir)

    def no_extraction(*args, **kwargs):
        raise AssertionError("a cached state was recomputed")

    monkeypatch.setattr(runner, "extract_state", no_extraction)
    again = build_plan(_config("state"), run_dir=copy_dir).run()
    for key in ("pretrained", "finetuned", "calibrated", "premise"):
        assert again[key] == results[key], key
    printed = capsys.readouterr().out
    assert "eval.logits=state: no probabilities, NCM or top-5 at a selector's γ" in printed


def test_corrections_stop_the_run_at_its_start(tmp_path):
    run_dir = tmp_path / "run"
    match = r"calibration.corrections=\['wa'\] needs the full logits .* set eval.logits=full"
    with pytest.raises(ValueError, match=match):
        build_plan(_config("state", ["calibration.corrections=[wa]"]), run_dir=run_dir)
    assert not run_dir.exists()  # nothing trained, nothing written


def test_wise_ft_alpha_tradeoff_from_states_equals_the_logits(tmp_path):
    """WiSE-FT's α trade-off streams each α's test data into a state: the same path, areas."""
    torch.set_num_threads(1)
    wise = ["finetune.method=wise_ft", "+finetune.method_options.alpha_grid=[0,0.5,1]",
            "calibration.selectors=[alg,oracle]"]  # fmt: skip
    out = {}
    for mode in ("full", "state"):
        out[mode] = build_plan(_config(mode, wise), run_dir=tmp_path / mode).run()
    a, b = out["full"]["alpha_tradeoff"], out["state"]["alpha_tradeoff"]
    assert a.keys() == b.keys() and b["alpha"] == [0.0, 0.5, 1.0]
    for key, value in a.items():
        np.testing.assert_allclose(b[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
    state = torch.load(tmp_path / "state" / "extract" / "alpha_0.5_test.pt", weights_only=True)
    assert "logits" not in state and "gap" in state["state"]


def test_the_calibrators_carry_the_class_names(both_modes):
    from calib.estimator.calibrator import LogitBiasCalibrator

    for mode in ("full", "state"):
        plan, _, run_dir = both_modes[mode]
        cal = LogitBiasCalibrator.load(run_dir / "calibrators" / "alg.json")
        assert tuple(cal.class_names_) == tuple(plan.target.class_names), mode


def test_the_probability_reader_refuses_a_state_folder(both_modes):
    from calib.run.saved_run import load_saved_run

    with pytest.raises(ValueError, match="was run with eval.logits=state"):
        load_saved_run(both_modes["state"][2])


def test_a_selector_without_a_state_is_refused():
    """A registered selector that reads the logits (tests/plugin_selector.py's median_gap)
    cannot be fed a state: refused in state mode, fine in full mode; fixed needs no data."""
    import tests.plugin_selector  # noqa: F401  (registers median_gap)
    from calib.run.settings import CalibrationConfig, MethodConfig

    calibration = CalibrationConfig(selectors=("alg", "median_gap"))
    with pytest.raises(ValueError, match="lists 'median_gap', which reads the logits themselves"):
        check_state_mode(calibration, MethodConfig(), EvalConfig(logits="state"))
    check_state_mode(calibration, MethodConfig(), EvalConfig())  # full: anything goes
    fixed = CalibrationConfig(selectors=("fixed",), options={"fixed": {"gamma": 1.0}})
    check_state_mode(fixed, MethodConfig(), EvalConfig(logits="state"))


def test_full_is_no_identity_leaf_and_keys_what_it_did():
    """eval.logits=full, the behaviour from before the key, changes no leaf and no stage key
    (run folders made before it resume); state is a leaf."""
    cfg = tiny_config(BASE)
    without = copy.deepcopy(cfg)
    without["eval"].pop("logits", None)
    with_full = copy.deepcopy(cfg)
    with_full["eval"]["logits"] = "full"
    assert identity_leaves(with_full) == identity_leaves(without)
    assert "eval.logits" not in identity_leaves(cfg)  # the config's default: full
    assert identity_leaves(_config("state"))["eval.logits"] == "state"
    # the command line's override reaches the plan
    assert build_plan(tiny_config(["eval.logits=state"]), run_dir=None).eval.logits == "state"


def test_a_python_plan_keys_its_state_stages_too(tmp_path):
    """Without a config (no identity leaves) the extraction stages are keyed by the state's
    settings themselves."""
    import dataclasses

    plan = build_plan(_config("full"), run_dir=tmp_path / "a")
    python = dataclasses.replace(plan, config={})
    streamed = dataclasses.replace(python, eval=dataclasses.replace(plan.eval, logits="state"))
    a, b = python.stages().keys(), streamed.stages().keys()
    assert a["extract/finetuned_test"] != b["extract/finetuned_test"]
    assert a["finetune"] == b["finetune"]
    identity = streamed.stages().extracts["finetuned_test"].identity["state"]
    assert identity["topk"] == [5] and identity["gammas"] == [0.0] and not identity["alg"]


@pytest.mark.slow  # two processes, ~15 s
def test_under_torchrun_each_rank_streams_its_shard_and_the_states_are_synced(tmp_path):
    """`torchrun` (2 gloo processes): each extraction's state holds every sample, in data-set
    order (the labels of the data set), written once; the results are printed once."""
    root = Path(__file__).resolve().parents[2]
    tiny = [
        "source_train.epochs=1", "source_train.iters_per_epoch=8", "finetune.epochs=1",
        "finetune.iters_per_epoch=4", "eval.every_epochs=0", "eval.figures=false",
        "calibration.pcv.num_splits=1", "device=cpu", "progress=false", "eval.logits=state",
    ]  # fmt: skip
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "experiments.run", *tiny, f"run_dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("eval.logits=state: no probabilities") == 1  # rank 0 prints
    plan = build_plan(tiny_config(tiny), run_dir=None)
    test_labels = dataset_targets(plan.target.test)
    for tag in ("pretrained_test", "finetuned_test"):
        state = torch.load(run_dir / "extract" / f"{tag}.pt", weights_only=True)["state"]
        np.testing.assert_array_equal(state["label"].numpy(), test_labels)
    train = dataset_targets(plan.target.train_eval)
    alg = torch.load(run_dir / "extract" / "finetuned_train.pt", weights_only=True)["state"]
    np.testing.assert_array_equal(alg["label"].numpy(), train[np.isin(train, plan.split.seen)])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["meta"]["world_size"] == 2 and results["meta"]["eval_logits"] == "state"
    assert set(results["calibrated"]) == {"alg", "pcv", "prior", "oracle"}


def test_a_class_balanced_report_from_the_states_equals_the_full_one(both_modes, tmp_path):
    """eval.average=macro (recomputed from the cached stages): the states' class-balanced rows
    and curves equal the full run's."""
    out = {}
    for mode in ("full", "state"):
        run_dir = tmp_path / mode
        shutil.copytree(both_modes[mode][2], run_dir)
        out[mode] = build_plan(_config(mode, ["eval.average=macro"]), run_dir=run_dir).run()
    full, state = out["full"], out["state"]
    assert state["meta"]["average"] == "macro"
    for row in ("pretrained", "finetuned", *(f"calibrated.{n}" for n in state["calibrated"])):
        a = full[row] if "." not in row else full["calibrated"][row.split(".")[1]]
        b = state[row] if "." not in row else state["calibrated"][row.split(".")[1]]
        for key, value in b.items():
            assert math.isclose(value, a[key], rel_tol=1e-9, abs_tol=1e-12), (row, key)
    assert state["finetuned"]["acc_all"] != both_modes["state"][1]["finetuned"]["acc_all"]
