"""The harness carries one plan: the run's objects and its stages, planned once; the config's
shape declared once.

- :func:`calib.run.run_pipeline` takes a :class:`calib.run.RunPlan`; the plan's
  :class:`~calib.run.stage_plan.StagePlan` is computed when the plan is built and is the one the
  run uses (``plan_stages`` runs once per run).
- Which config keys can change a number is declared beside each key in the schema
  (``identity=False``); :data:`calib.run.identity.NON_IDENTITY_KEYS` is read from there. The
  drift tests below fail when a config key, the schema, the stage sections and the settings
  dataclasses stop agreeing.
- The tiny demo's stage keys are pinned: a change of any key is deliberate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from calib.run import EvalConfig, PCVConfig, RunPlan, build_plan, run_pipeline
from calib.run import pipeline as pipeline_module
from calib.run.identity import NON_IDENTITY_KEYS, digest, flatten, identity_leaves
from calib.run.schema import _TRAIN, SCHEMA, _Leaf, _Open, describe_key, non_identity_keys
from calib.run.stage_plan import STAGE_SECTIONS
from calib.train import TrainConfig
from tests.helpers_paper import compose_experiment, experiment_names
from tests.helpers_run import tiny_config

#: The stage keys of the tiny demo (tests.conftest.TINY). Hard-coded on purpose: a stage key is
#: a SHA-256 of the stage's inputs, and a folder written by an earlier run is only resumed while
#: its keys stay byte-identical, so any change of them must be deliberate and show here. They
#: depend on the data (sklearn's digits, MNIST-5k), the transforms' repr and the seeded initial
#: weights, all fixed here. Last changed on purpose by issue 24: every training and extraction
#: stage records the precision it computes in, resolved on the device (fp32 on this CPU), in
#: place of the ``amp`` settings as written (``finetune.amp``, ``eval.amp``, ... key no stage).
TINY_KEYS = {
    "extract/finetuned_test": "b889f878cf93f611fc8ea26337d111d9b846132d5e5af1546012e006d35cfc65",
    "extract/finetuned_train": "4aa286e9594f6ec3444aa3ace72bdfe18bc80ae7cab88e0669b1ffa10e8e5c23",
    "extract/pcv_split_0_heldout": "820348c51889070f50385eb579b02440f25f7d0481b103af9e579718a84dca2a",
    "extract/pcv_split_1_heldout": "51caa115ddd7787ab8c6a94c1a5baa32d36306f9be55bfa4771783ede2a2addb",
    "extract/pretrained_test": "5091da4b488c25c5a842f224c612b196e5839f032f9f80a547e89215aa280161",
    "extract/pretrained_train": "2c9d012f1524db033231e577b2cdd68e47a7757fd5dcba9169b917b89ac72498",
    "finetune": "b5b4e6988b8bd2c048c4bc33aa0a358bc4c6ff1fbd9368be654afac090327df9",
    "history": "c61871d8fe19d5116b7d17e634e473a11bdc82cdef032bcd544cae6d5b94de58",
    "pcv/split_0": "00dc40eab76f395d883212edbf6f9911ee8c4b401ed955d9fbe44249ce3885af",
    "pcv/split_1": "f2a028d346d0b8e251d4bd6c2bd26bd9f84343f8df75584e848ffa59029b941a",
    "selector/alg": "65c26f63c6905df9acd4f88b61fe235742108c415cccfc0034a74d24210f42a5",
    "selector/oracle": "5650cde309b99427cc7f3d706c5dc81b2ff8356716df5380ca17ab2fac487cf4",
    "selector/pcv": "4df337834b8660ec86e5142ca2a06039e38f5df2fffb32b7ad944ffdcefa3f34",
    "selector/prior": "f6042df954ecc406255a0e335d6f2d717770389c94154de8119529f4ffab3aef",
    "source": "053084a03080da2425ea9fc9c14d3dc0643ce64962f13344b2ac960003377910",
}  # fmt: skip

#: ``digest`` of the ``{stage: key}`` dicts of further variants, computed with TINY_KEYS: with
#: the config's leaves (as calib-run keys them) and with none (a plan built in Python).
VARIANT_DIGESTS = {
    ("tiny", "python"): "e94ddd7a73f7fe721dae824b134adfac37858f5b03ec4aec0fcc795c163cba71",
    ("wise_ft", "config"): "72a924d9436bd95b3a16f8ff6f468f01f60890dd6decd75c85133f774032d3d5",
    ("wise_ft", "python"): "2b2d3f4f8afedc7d85b35d7db07a6753bba5599dfba4dcb8eb8beccf4dc39261",
}


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    return build_plan(tiny_config(), run_dir=tmp_path_factory.mktemp("one_plan"))


def test_the_stage_keys_of_the_tiny_demo_are_unchanged(tiny_plan, tmp_path):
    assert digest(TINY_KEYS) == "d696c78a4bf085c8cba8b347c1acc8cb73467e9beebdd7266724eae3a1607fdf"
    assert tiny_plan.stages().keys() == TINY_KEYS
    assert digest(tiny_plan.stages({}).keys()) == VARIANT_DIGESTS["tiny", "python"]
    wise = build_plan(tiny_config(["finetune.method=wise_ft"]), run_dir=tmp_path)
    assert digest(wise.stages().keys()) == VARIANT_DIGESTS["wise_ft", "config"]
    assert digest(wise.stages({}).keys()) == VARIANT_DIGESTS["wise_ft", "python"]


def test_the_plan_carries_its_stages_and_the_run_plans_none(tmp_path, monkeypatch):
    calls = []
    real = pipeline_module.plan_stages

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(pipeline_module, "plan_stages", counting)
    plan = build_plan(tiny_config(), run_dir=tmp_path)
    assert len(calls) == 1 and plan.stage_plan is not None
    assert plan.stages() is plan.stage_plan
    results = plan.run()
    assert len(calls) == 1, "the run planned its stages again"
    assert results["meta"]["stage_keys"] == plan.stage_plan.keys()
    # what computed it: the resolved precisions, torch's versions, no GPU on this CPU run
    import torch

    meta = results["meta"]
    assert meta["precision"] == {"finetune": "fp32", "eval": "fp32", "source_train": "fp32"}
    env = meta["environment"]
    assert env["torch"] == torch.__version__ and env["cuda"] == torch.version.cuda
    assert env["gpu"] is None and env["gpu_capability"] is None
    assert meta["deterministic"] is False and meta["compile"] is False


def test_a_replaced_plan_plans_its_own_stages(tiny_plan):
    """dataclasses.replace does not carry the stage plan over: a changed setting is keyed."""
    longer = dataclasses.replace(tiny_plan.finetune, epochs=tiny_plan.finetune.epochs + 1)
    other = dataclasses.replace(tiny_plan, finetune=longer)
    assert other.stage_plan is None
    assert other.stages().finetune.key != tiny_plan.stages().finetune.key
    assert dataclasses.replace(tiny_plan).stages().keys() == tiny_plan.stages().keys()


def test_run_pipeline_takes_a_plan(tiny_plan):
    with pytest.raises(TypeError, match=r"run_pipeline takes a RunPlan.*got plan=\{'target'"):
        run_pipeline({"target": tiny_plan.target})
    with pytest.raises(TypeError, match="unexpected keyword argument 'target'"):
        run_pipeline(target=tiny_plan.target)  # the old signature


def test_a_python_plan_is_checked_when_built(tiny_plan):
    """A plan built in Python gets the defaults of the config and the same checks."""
    common = dict(
        target=tiny_plan.target,
        split=tiny_plan.split,
        make_model=tiny_plan.make_model,
        finetune=tiny_plan.finetune,
    )
    with pytest.raises(ValueError, match=r"source domain needs a source_train config"):
        RunPlan(**common, run_dir="x", source=tiny_plan.source)
    plan = RunPlan(**common, run_dir="x")
    assert plan.eval == EvalConfig() and plan.method.name == "full"
    assert plan.identity == {} and plan.run_dir.name == "x"


# ---------------------------------------------------------------- the config's shape, once


def _known(key: str) -> bool:
    """``key`` (dotted) is a leaf or section of SCHEMA, or lies inside an open section or a
    mapping-valued leaf (``sequence``: checked whole, by what reads it)."""
    spec = SCHEMA
    for part in key.split("."):
        if isinstance(spec, (_Open, _Leaf)):
            return True
        if not isinstance(spec, Mapping) or part not in spec:
            return False
        spec = spec[part]
    return True


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


@pytest.fixture(scope="module")
def composed() -> dict[str, dict]:
    """Every shipped experiment's composed config (with the smoke overrides' keys unset)."""
    return {name: compose_experiment(name, []) for name in experiment_names()}


def test_every_config_key_is_known_and_classified_once(composed):
    """Each leaf of every composed config is known to the schema, and is either a non-identity
    key (under exactly one NON_IDENTITY_KEYS entry) or an identity key that some stage reads
    (under a STAGE_SECTIONS prefix): never both, never neither."""
    prefixes = {p for ps in STAGE_SECTIONS.values() for p in ps}
    for name, cfg in composed.items():
        for key in flatten(cfg):
            assert _known(key), f"{name}: {key} is not in calib.run.schema.SCHEMA"
            excluded = [e for e in NON_IDENTITY_KEYS if _under(key, e)]
            read_by = [p for p in prefixes if _under(key, p)]
            assert len(excluded) <= 1, f"{name}: {key} is excluded twice: {excluded}"
            if excluded:
                assert key not in identity_leaves(cfg), key
            else:
                assert read_by, f"{name}: {key} keys no stage (add it to STAGE_SECTIONS)"


def test_the_identity_declarations_name_schema_keys():
    assert NON_IDENTITY_KEYS == non_identity_keys()
    assert len(set(NON_IDENTITY_KEYS)) == len(NON_IDENTITY_KEYS)
    for key in NON_IDENTITY_KEYS:
        assert describe_key(key), f"NON_IDENTITY_KEYS names {key}, which the schema does not know"
    for kind, prefixes in STAGE_SECTIONS.items():
        for prefix in prefixes:
            assert describe_key(prefix), f"STAGE_SECTIONS[{kind!r}] names unknown {prefix}"
    # the pseudo runs' fine-tuning overrides take the training keys, described like them
    assert describe_key("calibration.pcv.finetune.num_workers") == "data-loading processes"


def test_the_settings_dataclasses_match_the_schema():
    """A key added to a settings dataclass and not to the schema (or back) is refused at the
    first config that sets it; this catches it before."""
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    assert fields == set(SCHEMA["eval"])
    assert {f.name for f in dataclasses.fields(PCVConfig)} == set(SCHEMA["calibration"]["pcv"])
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(_TRAIN) <= train_fields
    # nesterov goes into optimizer_kwargs (calib.run.sections.build_train_config)
    assert set(SCHEMA["source_train"]) - train_fields == {"nesterov"}
    assert set(SCHEMA["finetune"]) - train_fields == {"lr_scale", "method", "method_options"}


def test_the_compute_switches_reach_every_training_and_key_no_stage(
    tiny_plan, tmp_path, monkeypatch
):
    """deterministic, cudnn_benchmark and compile go into every training config of the run
    (source, fine-tuning, pseudo runs) and change no stage key; deterministic sets cuBLAS's
    workspace before any CUDA work."""
    import os

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    switches = ["deterministic=true", "compile=true", "cudnn_benchmark=false", "dist_timeout_min=5"]
    plan = build_plan(tiny_config(switches), run_dir=tmp_path)
    pcv = plan.calibration.pcv
    for cfg in (plan.finetune, plan.source_train, (pcv and pcv.finetune) or plan.finetune):
        assert cfg.deterministic and cfg.compile and not cfg.cudnn_benchmark
    assert not tiny_plan.finetune.deterministic and tiny_plan.finetune.cudnn_benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert plan.stages().keys() == tiny_plan.stages().keys()
