"""Every experiment config composes with Hydra's compose API and builds a RunPlan.

Builds use tiny fake roots in each benchmark's layout (calib.data.make_fake_root) and skip
weight downloads (model.pretrained=false); the VTAB experiments build with the tiny CLIP,
except one slow test that builds the real ViT-B/32. The released hyperparameters of the
paper's benchmarks are checked against the values in the design brief.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from calib.data import ClassSplit, make_fake_root, vtab_class_names, vtab_class_split
from calib.run import sections
from calib.run.plan import build_plan
from calib.train import TrainConfig
from tests.helpers_paper import (
    benchmark_kind,
    compose_config,
    compose_experiment,
    experiment_names,
)

EXPERIMENTS = experiment_names()
ABSTRACT = [n for n in EXPERIMENTS if n.endswith("_base")]
RUNNABLE = [n for n in EXPERIMENTS if n not in ABSTRACT]
OFFICE_HOME_PAIRS = {
    "office_home_ar_cl": ("Art", "Clipart"),
    "office_home_ar_pr": ("Art", "Product"),
    "office_home_ar_rw": ("Art", "Real_World"),
    "office_home_rw_ar": ("Real_World", "Art"),
    "office_home_rw_cl": ("Real_World", "Clipart"),
    "office_home_rw_pr": ("Real_World", "Product"),
}
VTAB_TASKS = {
    "vtab_caltech101": "caltech101",
    "vtab_cifar100": "cifar",
    "vtab_dtd": "dtd",
    "vtab_flowers102": "oxford_flowers102",
    "vtab_pets": "oxford_iiit_pet",
    "vtab_svhn": "svhn",
    "vtab_eurosat": "eurosat",
    "vtab_resisc45": "resisc45",
}


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    """One tiny fake root per benchmark kind (a few classes: enough to build, not to run)."""
    base = tmp_path_factory.mktemp("fake")
    roots = {kind: make_fake_root(kind, base / kind) for kind in ("office_home", "imagenet_r")}
    roots["imagenet_s"] = make_fake_root("imagenet_s", base / "imagenet_s")
    roots["vtab"] = make_fake_root("vtab", base / "vtab", n_per_class=1, tasks=VTAB_TASKS.values())
    return roots


def test_the_benchmarks_have_their_experiments():
    assert set(OFFICE_HOME_PAIRS) | set(VTAB_TASKS) | {"imagenet_r", "imagenet_s"} <= set(RUNNABLE)
    assert {n for n in RUNNABLE if n.startswith("office_home")} == set(OFFICE_HOME_PAIRS)
    assert {n for n in RUNNABLE if n.startswith("vtab")} == set(VTAB_TASKS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    cfg = compose_config(experiment)
    for group in ("dataset", "model", "optimizer", "scheduler", "calibration", "split", "finetune"):
        assert group in cfg, group
    if experiment in ABSTRACT:  # a base leaves its children what differs (domains, task)
        with pytest.raises(OmegaConfBaseException, match="Missing mandatory value"):
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    else:
        assert cfg.name == experiment
        assert OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize("experiment", RUNNABLE)
def test_experiment_builds(experiment, fake_roots, tmp_path):
    kind = benchmark_kind(experiment)
    overrides = ["progress=false", "device=cpu"]
    if experiment == "fashion_shift":  # the Debian package may be absent: a fake root
        from calib.data.fashion import make_fake_fashion_root

        fake = make_fake_fashion_root(tmp_path / "fashion", n_train=40, n_test=20)
        overrides.append(f"++dataset.root={fake}")
    if kind is not None:
        fake = fake_roots[kind]
        overrides += ["model.pretrained=false", f"dataset.root={fake.root}"]
        if kind == "vtab":  # the tiny CLIP takes 32 × 32 images (the dry run checks)
            overrides += ["model=tiny_clip", "dataset.size=32"]
        else:
            overrides.append(f"dataset.list_dir={fake.list_dir}")
    cfg = compose_experiment(experiment, overrides)
    if cfg.get("sequence") is not None:  # a sequence: its first stage is a run
        from calib.run.sequence_run import plan_sequence

        cfg = plan_sequence(cfg, tmp_path)[0].config
    plan = build_plan(cfg, run_dir=tmp_path)
    assert plan.name == experiment and plan.run_dir == tmp_path
    assert plan.target.num_classes == plan.split.num_classes
    assert plan.make_model().head.out_features == plan.target.num_classes


def _finetune_optimizer(cfg: dict) -> TrainConfig:
    """The optimizer settings the composed ``optimizer`` group trains with (nulls = registry)."""
    opt = cfg["optimizer"]
    return TrainConfig(
        optimizer=opt["name"],
        lr=opt["lr"],
        lr_head=opt["lr_head"],
        weight_decay=opt["weight_decay"],
        momentum=opt["momentum"],
        optimizer_kwargs=opt["kwargs"],
    )


@pytest.mark.parametrize("experiment", sorted(OFFICE_HOME_PAIRS))
def test_office_home_released_defaults(experiment):
    cfg = compose_experiment(experiment)
    source, target = OFFICE_HOME_PAIRS[experiment]
    assert (cfg["source"]["domain"], cfg["dataset"]["domain"]) == (source, target)
    source_spec = sections.source_spec(cfg)  # every dataset key the source does not set
    assert source_spec == {**cfg["dataset"], "domain": source}
    assert cfg["split"] == {**cfg["split"], "kind": "benchmark", "benchmark": "office_home"}
    assert cfg["split"]["source"] == source  # the class order depends on the source domain
    split = ClassSplit.from_benchmark("office_home", source)
    assert (len(split.seen), len(split.absent)) == (30, 35)
    assert cfg["model"]["name"] == "resnet50.tv_in1k" and cfg["model"]["pretrained"] is True
    opt = _finetune_optimizer(cfg)
    assert (opt.optimizer, opt.lr, opt.lr_head, opt.weight_decay) == ("sgd", 1e-4, 1e-3, 5e-4)
    assert opt.momentum == 0.9 and opt.optimizer_kwargs == {"nesterov": True}
    assert cfg["scheduler"]["name"] == "cosine"
    ft = cfg["finetune"]
    assert (ft["epochs"], ft["iters_per_epoch"], ft["batch_size"], ft["lr_scale"]) == (
        20,
        500,
        64,
        1.0,
    )
    st = sections.build_train_config(  # not released: the fine-tuning's settings
        cfg["source_train"], optimizer=None, scheduler=None, seed=0, key="source_train"
    )
    assert (st.optimizer, st.lr, st.lr_head, st.weight_decay) == ("sgd", 1e-4, 1e-3, 5e-4)
    assert (st.momentum, st.optimizer_kwargs, st.scheduler) == (0.9, {"nesterov": True}, "cosine")
    assert (st.epochs, st.iters_per_epoch, st.batch_size) == (20, 500, 64)
    assert "pcv" in cfg["calibration"]["selectors"] and cfg["calibration"]["pcv"]["num_splits"] >= 2


@pytest.mark.parametrize("experiment", ["imagenet_r", "imagenet_s"])
def test_imagenet_released_defaults(experiment):
    cfg = compose_experiment(experiment)
    assert cfg["dataset"]["name"] == experiment and cfg["source"] is None
    assert cfg["split"]["kind"] == "benchmark" and cfg["split"]["benchmark"] == experiment
    split = ClassSplit.from_benchmark(experiment)
    n = 100 if experiment == "imagenet_r" else 500
    assert (len(split.seen), len(split.absent), split.num_classes) == (n, n, 1000)
    if experiment == "imagenet_r":  # U = exactly the absent R classes; 800 columns in neither
        assert len(split.other) == 800
    assert cfg["model"]["name"] == "resnet50.tv_in1k" and cfg["model"]["pretrained"] is True
    opt = _finetune_optimizer(cfg)
    assert (opt.optimizer, opt.lr, opt.lr_head, opt.weight_decay) == ("sgd", 1e-4, 1e-3, 1e-4)
    ft = cfg["finetune"]
    assert (ft["epochs"], ft["iters_per_epoch"], ft["batch_size"]) == (50, 500, 64)


@pytest.mark.parametrize("experiment", sorted(VTAB_TASKS))
def test_vtab_split_and_head(experiment):
    cfg = compose_experiment(experiment)
    task = VTAB_TASKS[experiment]
    assert cfg["dataset"]["task"] == task
    num_classes = len(vtab_class_names(task))
    split = cfg["split"]
    built = sections.build_split(split, num_classes)
    assert built == vtab_class_split(num_classes)  # half seen, by the documented seeded rule
    model = cfg["model"]
    assert (
        model["name"] == "clip_zero_shot" and model["kwargs"]["clip_model"] == "ViT-B-32-quickgelu"
    )
    assert model["pretrained"] is True and model["kwargs"]["class_names"] == "from_dataset"
    assert all(t.count("{}") == 1 for t in model["kwargs"]["templates"])
    assert cfg["dataset"]["resize"] == cfg["dataset"]["size"] == 224  # CLIP's preprocessing


@pytest.mark.slow
def test_vtab_builds_the_real_clip_vit_b32(fake_roots, tmp_path):
    """The VTAB config's own model (random weights: no download), a 102-row zero-shot head.

    One prompt template instead of the config's two: the text tower's 102 prompts per template
    take most of this test's time (the templates are checked by the test above)."""
    fake = fake_roots["vtab"]
    overrides = [
        "model.pretrained=false",
        f"dataset.root={fake.root}",
        "model.kwargs.templates=['a photo of a {}.']",
    ]
    cfg = compose_experiment("vtab_caltech101", overrides)
    plan = build_plan(cfg, run_dir=tmp_path)
    model = plan.model  # built once by the plan's dry run (one batch went through it)
    assert model.head.out_features == 102 and model.name == "clip_zero_shot:ViT-B-32-quickgelu"
