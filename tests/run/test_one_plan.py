"""The harness carries one plan: the run's objects and its stages, planned once; the config's
shape declared once.

- :func:`calib.run.run_pipeline` takes a :class:`calib.run.RunPlan`; the plan's
  :class:`~calib.run.stage_plan.StagePlan` is computed when the plan is built and is the one the
  run uses (``plan_stages`` runs once per run).
- Which config keys can change a number is declared beside each key in the schema
  (``identity=False``); :data:`calib.run.identity.NON_IDENTITY_KEYS` is read from there. The
  drift tests below fail when a config key, the schema, the stage sections and the settings
  dataclasses stop agreeing.
- Moving to one plan changed no stage key: run folders of earlier runs stay valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from calib.run import EvalConfig, PCVConfig, RunPlan, build_plan, run_pipeline
from calib.run import pipeline as pipeline_module
from calib.run.identity import NON_IDENTITY_KEYS, digest, flatten, identity_leaves
from calib.run.schema import _TRAIN, SCHEMA, _Open, describe_key, non_identity_keys
from calib.run.stage_plan import STAGE_SECTIONS
from calib.train import TrainConfig
from tests.helpers_paper import compose_experiment, experiment_names
from tests.helpers_run import tiny_config

#: The stage keys of the tiny demo (tests.conftest.TINY), computed with the code before the
#: harness carried one plan: calib/run/{plan,pipeline,schema,identity}.py of commit 9c40c79
#: (``run_pipeline`` of ~20 keyword arguments, ``plan_stages`` called by the plan and again by
#: the run) on top of ba69415 (which put each selector's temperature setting into its stage
#: key, on purpose). Hard-coded on purpose: a stage
#: key is a SHA-256 of the stage's inputs, and a folder written by an earlier run is only
#: resumed while its keys stay byte-identical. They depend on the data (sklearn's digits,
#: MNIST-5k), the transforms' repr and the seeded initial weights, all fixed here.
TINY_KEYS = {
    "extract/finetuned_test": "92550bf887314cca48c7c9f6f1cd278b681d44dca324b944a2e5160eb82dcfaa",
    "extract/finetuned_train": "d67bff40259233136e48998eb570449a7025d8665c757e4cb01654b6fbd04a13",
    "extract/pcv_split_0_heldout": "426a58ac45031f525c5a7faa2b59aaa15bf8eb58b29280d4433ed8086d505284",
    "extract/pcv_split_1_heldout": "e9da7b3175dee21917306a1afaf6271dfea347e2531b9e8c74ed694e0eee5652",
    "extract/pretrained_test": "42429acc915afc1f3e8d20b225e1887b5cb394df64471f3b18ae1b7a0cb477d2",
    "extract/pretrained_train": "b171b81df4a5625691c3d022baaa2a59276915aabbd5742e03699d91b10ed7cc",
    "finetune": "8e34e02e03654d6fcb25f3329dc4eaf6127c8ac46a89a9a8ee98cf241a932703",
    "history": "48a12bdbcfe612ba13776b587a9e8825e0cc7be427f27875a28778cc5c306925",
    "pcv/split_0": "d45ebcab6c4d36a8a79d5446e25be35a1216231cfbf506770dfc2e77caf9ce41",
    "pcv/split_1": "6d0dd00ad69d060a14585e3fb771cb5e4fe19ab22997f86569b54b16e25b47c3",
    "selector/alg": "e424e959f726c5a19ce347640385c1f420e1be643b341b8a7489901b295eecdb",
    "selector/oracle": "721b1807618eef37c832da7d0b5a9faa804c5fee3271364c3f0de4a2ccfdbc78",
    "selector/pcv": "99346d71e9918f327339ed0b33eb1705a2af9a0dfa100bded6d075373ee534fd",
    "selector/prior": "78ee54b8f0c3f55cfaa0e745b8d716c593c2549e95aba03051662f7b57f2ca2d",
    "source": "3d86c7cbaf21a136a19f29167024053e8907b980b0f965bfd92454802f63ab4b",
}  # fmt: skip

#: ``digest`` of the ``{stage: key}`` dicts of further variants, from the same commit: with the
#: config's leaves (as calib-run keys them) and with none (a plan built in Python).
VARIANT_DIGESTS = {
    ("tiny", "python"): "b5b85e18471e43acd6ef03999f9134f073d4c4ce0fbe8539452b68b72050c0b6",
    ("wise_ft", "config"): "e1e3323bebe282fba636e12622ee82c61f25246fe2b8f689b95fd8ff730f9ef0",
    ("wise_ft", "python"): "ae54853041604a4be1d07c5b792a8be31c886f9fd1a15fe280638fc7af86af03",
}


@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory):
    return build_plan(tiny_config(), run_dir=tmp_path_factory.mktemp("one_plan"))


def test_the_stage_keys_of_the_tiny_demo_are_unchanged(tiny_plan, tmp_path):
    assert digest(TINY_KEYS) == "bb56ab18a45d637ae9b8399998323e16451e628057ce4c8152cd275b99f05c55"
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
    """``key`` (dotted) is a leaf or section of SCHEMA, or lies inside an open section."""
    spec = SCHEMA
    for part in key.split("."):
        if isinstance(spec, _Open):
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
