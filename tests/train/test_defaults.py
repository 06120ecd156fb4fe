"""The optimizer defaults live in one place, the registry; TrainConfig resolves them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from calib.train import OPTIMIZERS, TrainConfig, create_optimizer, train
from calib.train import trainer as loop
from calib.train.optim import OptimizerSpec, resolve_optimizer_settings
from tests.helpers_train import make_dataset, make_model

CONF_OPTIMIZER = Path(__file__).resolve().parents[2] / "conf" / "optimizer"


@pytest.fixture
def swap_spec():
    """Replace a registry entry for one test: ``swap_spec("sgd", lr=...)``; restored after."""
    saved = {}

    def swap(name: str, **changes) -> OptimizerSpec:
        saved.setdefault(name, OPTIMIZERS.get(name))
        spec = dataclasses.replace(saved[name], **changes)
        OPTIMIZERS.register(name, spec, override=True)
        return spec

    yield swap
    for name, spec in saved.items():
        OPTIMIZERS.register(name, spec, override=True)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_train_config_holds_the_registry_numbers(name):
    spec = OPTIMIZERS.get(name)
    cfg = TrainConfig(optimizer=name)
    assert (cfg.lr, cfg.lr_head, cfg.weight_decay, cfg.momentum) == (
        spec.lr,
        spec.lr_head,
        spec.weight_decay,
        spec.momentum,
    )
    assert cfg.optimizer_kwargs == dict(spec.kwargs)
    settings = cfg.settings()
    assert (settings["lr"], settings["lr_head"], settings["weight_decay"]) == (
        spec.lr,
        spec.lr_head,
        spec.weight_decay,
    )


def test_the_papers_sgd_is_the_registry_default():
    # Mai et al. / Tu et al. release: SGD Nesterov m=0.9, lr 1e-4 backbone / 1e-3 head, wd 5e-4
    cfg = TrainConfig(optimizer="sgd")
    assert (cfg.lr, cfg.lr_head, cfg.weight_decay, cfg.momentum) == (1e-4, 1e-3, 5e-4, 0.9)
    assert cfg.optimizer_kwargs == {"nesterov": True}


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_train_builds_the_optimizer_create_optimizer_builds_by_default(name, monkeypatch):
    """train() from TrainConfig(optimizer=k) and create_optimizer(k) agree group by group."""
    built = []

    def spy(*args, **kwargs):
        built.append(create_optimizer(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(loop, "create_optimizer", spy)
    cfg = TrainConfig(optimizer=name, iters_per_epoch=1, batch_size=8, scheduler="constant")
    train(make_model(), make_dataset(), cfg, progress=False, log=lambda line: None)
    reference = create_optimizer(name, make_model())
    keys = ("name", "initial_lr", "weight_decay", "momentum", "nesterov", "alpha", "rectify")
    for group in reference.param_groups:
        group.setdefault("initial_lr", group["lr"])  # what the scheduler adds in train()
    assert type(built[0]) is type(reference)
    assert [{k: g.get(k) for k in keys} for g in built[0].param_groups] == [
        {k: g.get(k) for k in keys} for g in reference.param_groups
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"lr": 1e-4, "lr_head": 1e-3}),
        ({"lr": 0.01}, {"lr": 0.01, "lr_head": 0.01}),  # one explicit lr = one lr everywhere
        ({"lr": 0.01, "lr_head": 0.5}, {"lr": 0.01, "lr_head": 0.5}),
        ({"lr_head": 0.5}, {"lr": 1e-4, "lr_head": 0.5}),
    ],
)
def test_lr_resolution_rule(swap_spec, given, expected):
    swap_spec("sgd", lr=1e-4, lr_head=1e-3)
    cfg = TrainConfig(optimizer="sgd", **given)
    assert (cfg.lr, cfg.lr_head) == (expected["lr"], expected["lr_head"])


def test_explicit_values_win_and_kwargs_merge_over_the_registry():
    cfg = TrainConfig(
        optimizer="sgd", weight_decay=0.0, momentum=0.5, optimizer_kwargs={"dampening": 0.1}
    )
    assert (cfg.weight_decay, cfg.momentum) == (0.0, 0.5)
    assert cfg.optimizer_kwargs == {"nesterov": True, "dampening": 0.1}
    assert TrainConfig(optimizer_kwargs={"nesterov": False}).optimizer_kwargs == {"nesterov": False}


def test_zero_momentum_turns_the_registry_nesterov_off_and_trains():
    cfg = TrainConfig(optimizer="sgd", momentum=0.0, iters_per_epoch=1, batch_size=8)
    assert cfg.optimizer_kwargs == {"nesterov": False}
    train(make_model(), make_dataset(), cfg, progress=False, log=lambda line: None)


def test_resolving_is_idempotent():
    for name in OPTIMIZERS.names():
        cfg = TrainConfig(optimizer=name, momentum=0.0 if name == "sgd" else None)
        assert TrainConfig(**dataclasses.asdict(cfg)) == cfg
        again = resolve_optimizer_settings(
            name,
            lr=cfg.lr,
            lr_head=cfg.lr_head,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            kwargs=cfg.optimizer_kwargs,
        )
        assert again == {
            "lr": cfg.lr,
            "lr_head": cfg.lr_head,
            "weight_decay": cfg.weight_decay,
            "momentum": cfg.momentum,
            "kwargs": cfg.optimizer_kwargs,
        }


@pytest.mark.parametrize(
    "change",
    [
        {"lr": 2e-4},
        {"lr_head": 2e-3},
        {"weight_decay": 1e-3},
        {"momentum": 0.8},
        {"kwargs": {"nesterov": False}},
    ],
)
def test_a_changed_registry_default_changes_the_fingerprint(swap_spec, change):
    before = TrainConfig(optimizer="sgd").settings()
    spec = swap_spec("sgd", **change)
    after = TrainConfig(optimizer="sgd").settings()
    assert after != before
    field, value = next(iter(change.items()))
    key = {"kwargs": "optimizer_kwargs"}.get(field, field)
    assert after[key] == (dict(spec.kwargs) if field == "kwargs" else value)
    assert {k: v for k, v in after.items() if k != key} == {
        k: v for k, v in before.items() if k != key
    }


def test_with_lr_scale_multiplies_both_lrs_and_keeps_the_rest():
    cfg = TrainConfig(optimizer="adamw", weight_decay=0.1, epochs=3)
    scaled = cfg.with_lr_scale(10.0)
    assert (scaled.lr, scaled.lr_head) == (cfg.lr * 10.0, cfg.lr_head * 10.0)
    assert (cfg.lr, cfg.lr_head) == (OPTIMIZERS.get("adamw").lr, OPTIMIZERS.get("adamw").lr_head)
    rest = {k: v for k, v in dataclasses.asdict(scaled).items() if k not in ("lr", "lr_head")}
    assert rest == {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("lr", "lr_head")}
    assert cfg.with_lr_scale(1.0) == cfg


@pytest.mark.parametrize("scale", [0, -1.0, math.nan, math.inf, "abc", True, None])
def test_with_lr_scale_refuses_a_bad_scale_naming_it(scale):
    with pytest.raises(ValueError, match=r"lr_scale must be a number > 0, got"):
        TrainConfig().with_lr_scale(scale)


def test_a_scaled_lr_that_overflows_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"TrainConfig.lr must be a number > 0 or None, got inf"):
        TrainConfig(lr=1e300).with_lr_scale(1e10)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr": 0.0}, "OptimizerSpec.lr"),
        ({"lr_head": -1.0}, "OptimizerSpec.lr_head"),
        ({"weight_decay": -1e-4}, "OptimizerSpec.weight_decay"),
        ({"momentum": 1.0}, "OptimizerSpec.momentum"),
        ({"kwargs": {"lr": 0.1}}, "OptimizerSpec.kwargs"),
    ],
)
def test_a_bad_spec_is_refused_at_registration(changes, field):
    with pytest.raises(ValueError, match=field):
        OptimizerSpec("sgd", **{"lr": 1e-3, **changes})


def test_a_spec_without_head_lr_uses_its_lr_and_defaults_is_kwargs():
    spec = OptimizerSpec("adam", lr=3e-4, kwargs={"eps": 1e-6})
    assert spec.lr_head == 3e-4 and spec.defaults == {"eps": 1e-6}


@pytest.mark.parametrize("path", sorted(CONF_OPTIMIZER.glob("*.yaml")), ids=lambda p: p.stem)
def test_optimizer_configs_hold_no_numbers(path):
    """conf/optimizer/*.yaml name a registry key and leave every default to it."""
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] in OPTIMIZERS
    assert cfg == {
        "name": cfg["name"],
        "lr": None,
        "lr_head": None,
        "weight_decay": None,
        "momentum": None,
        "kwargs": {},
    }
    assert "calib/train/optim.py" in path.read_text()  # the comment says where the numbers are


def _demo_finetune(tmp_path, overrides: list[str]) -> TrainConfig:
    from calib.run.plan import build_plan
    from tests.helpers_paper import compose_config

    return build_plan(
        compose_config("digits_demo", ["progress=false", *overrides]), run_dir=tmp_path
    ).finetune


def test_calib_run_optimizer_overrides_reach_the_train_config(tmp_path):
    ft = _demo_finetune(tmp_path, ["optimizer=adamw", "optimizer.weight_decay=0.1"])
    assert (ft.optimizer, ft.weight_decay, ft.momentum) == ("adamw", 0.1, None)


def test_calib_run_scales_the_registry_lrs_by_lr_scale(tmp_path):
    spec = OPTIMIZERS.get("sgd")
    ft = _demo_finetune(tmp_path, ["optimizer=sgd", "finetune.lr_scale=10"])
    assert (ft.lr, ft.lr_head) == (spec.lr * 10, spec.lr_head * 10)


def test_python_and_calib_run_train_the_same_run(tmp_path):
    """`TrainConfig(optimizer="sgd")` and `calib-run optimizer=sgd` fingerprint alike."""
    ft = _demo_finetune(tmp_path, ["optimizer=sgd", "finetune.lr_scale=1"])
    same = TrainConfig(
        optimizer="sgd",
        epochs=ft.epochs,
        batch_size=ft.batch_size,
        iters_per_epoch=ft.iters_per_epoch,
        seed=ft.seed,
    )
    assert same.settings() == ft.settings()
