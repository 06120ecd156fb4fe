"""Stage identity: every setting that can change a number changes a stage key; the rest do not.

The composed config of the digits demo (and of a paper benchmark) is flipped one leaf at a
time. A leaf listed in ``NON_IDENTITY_KEYS`` must leave every stage key alone; every other leaf
must change at least one stage's key. The object-level identities (data fingerprints, training
settings, initial weights) are checked with real rebuilt plans for the settings that matter most.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from calib.run import NON_IDENTITY_KEYS, build_plan, identity_leaves
from calib.run.identity import LEGACY_DEFAULTS, dataset_fingerprint, digest, flatten
from tests.helpers_paper import compose_experiment
from tests.helpers_run import TINY


def _set(cfg: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(cfg)
    node = out
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return out


def _flip(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, list):
        return [*value, value[-1] if value else 1]
    if value is None:
        return 7
    if isinstance(value, dict):  # an empty mapping leaf
        return {"x": 1}
    raise AssertionError(f"no flip for {value!r}")


def _keys(plan, cfg) -> dict[str, str]:
    """The stage keys of ``plan``'s objects with ``cfg``'s identity leaves."""
    return plan.stages(identity_leaves(cfg)).keys()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg = compose_experiment("digits_demo", TINY)
    return cfg, build_plan(cfg, run_dir=tmp_path_factory.mktemp("identity"))


def _set_at(cfg: dict, key: str, value) -> dict:
    """Set a flattened key; an empty-mapping leaf gets a child."""
    return _set(cfg, key, value)


def test_every_identity_leaf_changes_a_stage_key(demo):
    cfg, plan = demo
    base = _keys(plan, cfg)
    leaves = flatten(cfg)
    assert len(leaves) > 60  # the whole composed config, not a sample of it
    unchanged = []
    for key, value in leaves.items():
        flipped = _keys(plan, _set_at(cfg, key, _flip(value)))
        # a key of LEGACY_DEFAULTS is an identity key left out at its legacy value only
        identity = key in identity_leaves(cfg) or key in LEGACY_DEFAULTS
        if identity and flipped == base:
            unchanged.append(key)
        if not identity:
            assert flipped == base, f"{key} is declared non-identity but changed a stage key"
    assert not unchanged, f"leaves that change no stage key: {unchanged}"


def test_non_identity_keys_are_few_and_named(demo):
    cfg, _ = demo
    leaves = flatten(cfg)
    excluded = sorted(set(leaves) - set(identity_leaves(cfg)) - set(LEGACY_DEFAULTS))
    assert set(excluded) == {
        k for k in leaves if any(k == e or k.startswith(e + ".") for e in NON_IDENTITY_KEYS)
    }
    # what may differ between two runs of the same numbers: where, how fast, under what name
    assert {"progress", "device", "name", "eval.batch_size", "cache_dir"} <= set(excluded)
    assert not {"seed", "finetune.epochs", "dataset.size"} & set(excluded)
    # the precision keys stages by the value it resolves to on the device, not as written; the
    # compute switches change speed or repeatable rounding only
    switches = {"deterministic", "cudnn_benchmark", "compile", "dist_timeout_min"}
    assert {"eval.amp", "finetune.amp", "source_train.amp", *switches} <= set(excluded)


def test_upstream_change_changes_every_downstream_key(demo):
    cfg, plan = demo
    base = _keys(plan, cfg)
    flipped = _keys(plan, _set(cfg, "source_train.lr", 0.5))
    assert all(flipped[name] != base[name] for name in base), "the source feeds every stage"
    flipped = _keys(plan, _set(cfg, "eval.every_epochs", 3))
    assert flipped["finetune"] == base["finetune"]  # evaluation settings: not the training
    assert flipped["history"] != base["history"]


TRAININGS = ("source", "finetune", "pcv/split_0", "pcv/split_1")
EXTRACTIONS = ("extract/pretrained_test", "extract/finetuned_train", "extract/pcv_split_0_heldout")


def test_settings_that_resolve_to_one_precision_share_every_stage(demo, tmp_path):
    """On the CPU amp auto and off both compute in fp32, eval.amp true and false too: one run."""
    cfg, plan = demo
    overrides = ["finetune.amp=off", "source_train.amp=false", "eval.amp=false"]
    other = build_plan(compose_experiment("digits_demo", [*TINY, *overrides]), run_dir=tmp_path)
    assert other.stages().keys() == plan.stages().keys()


def test_an_explicit_precision_keys_the_trainings_it_runs(demo, tmp_path):
    cfg, plan = demo
    other = build_plan(
        compose_experiment("digits_demo", [*TINY, "finetune.amp=bf16"]), run_dir=tmp_path
    )
    a, b = plan.stages().keys(), other.stages().keys()
    assert a["finetune"] != b["finetune"] and a["source"] == b["source"]
    assert other.stages().finetune.identity["settings"]["precision"] == "bf16"
    assert other.meta["precision"] == {"finetune": "bf16", "eval": "fp32", "source_train": "fp32"}


def test_the_resolved_precision_keys_every_training_extraction_and_the_source_cache(
    demo, monkeypatch, tmp_path
):
    """With a resolver that answers as a bf16 GPU would (no GPU here), every training and
    extraction stage, and the shared source model's cache entry, gets another key; a resolver
    that changes the extraction's precision only leaves the trainings alone."""
    from calib.run import stage_plan
    from calib.run.source_cache import SourceCache

    cfg, plan = demo
    base = plan.stages({}).keys()
    monkeypatch.setattr(stage_plan, "resolve_precision", lambda amp, device: "bf16")
    gpu = plan.stages({})
    for name in (*TRAININGS, *EXTRACTIONS, "history"):
        assert gpu.keys()[name] != base[name], name
    monkeypatch.undo()
    cache = SourceCache(tmp_path)
    assert cache.entry(gpu.pretrained) != cache.entry(plan.stages({}).pretrained)

    # eval.amp is True (a bool), the trainings' amp "auto": only the extractions resolve anew
    def eval_only(amp, device):
        return "fp16" if amp is True else "fp32"

    monkeypatch.setattr(stage_plan, "resolve_precision", eval_only)
    extraction_only = plan.stages({}).keys()
    for name in TRAININGS:
        assert extraction_only[name] == base[name], name
    for name in (*EXTRACTIONS, "history"):
        assert extraction_only[name] != base[name], name


def test_the_stages_resolve_the_precision_on_the_run_device(demo, monkeypatch):
    """plan_stages resolves each precision on the device it is given (here one that no default
    would pick)."""
    from calib.run import stage_plan

    _, plan = demo
    seen = []
    monkeypatch.setattr(
        stage_plan, "resolve_precision", lambda amp, device: seen.append(device) or "fp32"
    )
    stage_plan.plan_stages(
        target=plan.target, split=plan.split, model_identity={"class": "x", "weights": "y"},
        finetune=plan.finetune, method=plan.method, calibration=plan.calibration,
        eval_cfg=plan.eval, source=plan.source, source_train=plan.source_train,
        device=torch.device("meta"),
    )  # fmt: skip
    assert len(seen) >= 4 and {str(d) for d in seen} == {"meta"}


@pytest.mark.parametrize(
    ("override", "changed", "kept"),
    [
        ("split.seen=[0,1,2,3,5]", "finetune", "source"),
        ("dataset.size=12", "extract/pretrained_test", "source"),
        ("source.size=12", "source", None),
        ("finetune.epochs=2", "finetune", "extract/pretrained_test"),
        ("optimizer.lr=0.002", "finetune", "source"),
        ("calibration.pcv.holdout_fraction=0.3", "pcv/split_0", "finetune"),
        ("+calibration.options.oracle.criterion=hmean", "selector/oracle", "selector/alg"),
        ("seed=3", "source", None),
    ],
)
def test_objects_alone_key_the_stages(demo, tmp_path, override, changed, kept):
    """Without any config leaves (a Python caller of run_pipeline), the built objects —
    data fingerprints, training settings, initial weights — still key every stage."""
    _, plan = demo
    other = build_plan(compose_experiment("digits_demo", [*TINY, override]), run_dir=tmp_path)

    def keys(p):
        return p.stages({}).keys()

    a, b = keys(plan), keys(other)
    assert a[changed] != b[changed], override
    if kept is not None:
        assert a[kept] == b[kept], override


def test_dataset_fingerprint_sees_samples_labels_and_transform():
    from torch.utils.data import Subset

    from calib.data import TensorImageDataset

    images = torch.zeros(6, 1, 4, 4)
    base = TensorImageDataset(images, np.arange(6) % 3)
    fp = digest(dataset_fingerprint(base))
    assert digest(dataset_fingerprint(TensorImageDataset(images, np.arange(6) % 2))) != fp
    other = images.clone()
    other[0, 0, 0, 0] = 1.0
    assert digest(dataset_fingerprint(TensorImageDataset(other, np.arange(6) % 3))) != fp
    assert digest(dataset_fingerprint(Subset(base, [0, 1]))) != digest(
        dataset_fingerprint(Subset(base, [0, 2]))
    )


def test_running_a_copy_of_a_plan_leaves_the_plans_keys(demo, tmp_path):
    """RunPlan.run trains a copy of the plan's model: the keys stay those of the untrained one."""
    import dataclasses

    cfg, plan = demo
    before = plan.stages().keys()
    dataclasses.replace(plan, run_dir=tmp_path / "run").run()
    assert plan.stages().keys() == before
