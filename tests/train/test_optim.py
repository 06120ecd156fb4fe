"""Optimizer registry and learning-rate schedules of calib.train."""

from __future__ import annotations

import math

import pytest
import torch
from timm.optim import AdaBelief
from torch import nn

from calib.train import (
    OPTIMIZERS,
    SCHEDULERS,
    cosine_lr,
    create_optimizer,
    create_scheduler,
    split_parameters,
)
from tests.helpers_train import make_model

EXPECTED_CLASS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adabelief": AdaBelief,
    "adadelta": torch.optim.Adadelta,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _groups(opt) -> dict[str, dict]:
    return {g["name"]: g for g in opt.param_groups}


def test_registry_holds_the_papers_seven_optimizers():
    assert set(OPTIMIZERS.names()) == set(EXPECTED_CLASS)


@pytest.mark.parametrize("name", sorted(EXPECTED_CLASS))
def test_each_optimizer_builds_and_steps(name):
    model = make_model()
    opt = create_optimizer(name, model)
    assert type(opt) is EXPECTED_CLASS[name]
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(8, 8), torch.arange(8) % 5
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    moved = [
        not torch.equal(b, p)
        for b, p in zip(before, model.parameters(), strict=True)
        if p.grad.abs().max() > 1e-4  # the bias before BatchNorm gets ~no gradient
    ]
    assert len(moved) >= 4 and all(moved)


@pytest.mark.parametrize("name", sorted(EXPECTED_CLASS))
def test_registry_defaults_are_applied(name):
    spec = OPTIMIZERS.get(name)
    groups = _groups(create_optimizer(name, make_model()))
    assert groups["backbone"]["lr"] == groups["backbone_no_decay"]["lr"] == spec.lr
    assert groups["head"]["lr"] == groups["head_no_decay"]["lr"] == spec.lr_head
    assert groups["backbone"]["weight_decay"] == groups["head"]["weight_decay"] == spec.weight_decay
    if spec.has_momentum:
        assert groups["backbone"]["momentum"] == spec.momentum


def test_sgd_defaults_are_nesterov_momentum_and_adaptive_ones_use_smaller_lr():
    sgd = create_optimizer("sgd", make_model()).param_groups[0]
    assert sgd["momentum"] == 0.9 and sgd["nesterov"] is True
    sgd_spec = OPTIMIZERS.get("sgd")
    for name in ("adam", "adamw", "adabelief", "rmsprop"):
        assert OPTIMIZERS.get(name).lr < sgd_spec.lr
    assert OPTIMIZERS.get("adam").weight_decay < sgd_spec.weight_decay
    assert 0.1 <= OPTIMIZERS.get("adadelta").lr <= 10


def test_head_and_backbone_get_their_own_lr():
    model = make_model()
    groups = _groups(create_optimizer("sgd", model, lr=1e-3, lr_head=1e-2, weight_decay=1e-4))
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert groups["backbone"]["lr"] == groups["backbone_no_decay"]["lr"] == 1e-3
    assert groups["head"]["lr"] == groups["head_no_decay"]["lr"] == 1e-2
    head = _ids(groups["head"]["params"]) | _ids(groups["head_no_decay"]["params"])
    assert head == _ids(model.head.parameters())
    backbone = _ids(groups["backbone"]["params"]) | _ids(groups["backbone_no_decay"]["params"])
    assert backbone == _ids(model.backbone.parameters())


def test_lr_head_defaults_to_lr():
    groups = _groups(create_optimizer("adam", make_model(), lr=3e-4))
    assert {g["lr"] for g in groups.values()} == {3e-4}


def test_lr_head_alone_keeps_the_registry_backbone_lr():
    groups = _groups(create_optimizer("sgd", make_model(), lr_head=0.2))
    assert groups["backbone"]["lr"] == OPTIMIZERS.get("sgd").lr and groups["head"]["lr"] == 0.2


def test_sgd_without_momentum_drops_the_registry_nesterov():
    sgd = create_optimizer("sgd", make_model(), momentum=0.0).param_groups[0]
    assert sgd["momentum"] == 0.0 and sgd["nesterov"] is False


def test_biases_and_norm_parameters_get_no_weight_decay():
    model = make_model()
    groups = _groups(create_optimizer("adamw", model, weight_decay=0.05))
    one_d = _ids(p for p in model.parameters() if p.ndim <= 1)
    no_decay = _ids(groups["backbone_no_decay"]["params"]) | _ids(groups["head_no_decay"]["params"])
    assert no_decay == one_d
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert groups["backbone"]["weight_decay"] == 0.05
    bn = model.backbone[1]
    assert {id(bn.weight), id(bn.bias), id(model.head.bias)} <= no_decay


def test_model_without_head_is_all_backbone_and_frozen_params_are_left_out():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    groups = split_parameters(model)
    assert groups["head"] == [] and groups["head_no_decay"] == []
    kept = _ids(groups["backbone"]) | _ids(groups["backbone_no_decay"])
    assert kept == _ids(p for p in model.parameters() if p.requires_grad)
    opt = create_optimizer("sgd", model, lr=0.1, lr_head=0.5)
    assert {g["lr"] for g in opt.param_groups} == {0.1}


def test_head_name_none_disables_the_split():
    groups = split_parameters(make_model(), head_name=None)
    assert groups["head"] == [] and groups["head_no_decay"] == []


def test_kwargs_override_registry_defaults():
    opt = create_optimizer("sgd", make_model(), momentum=0.5, nesterov=False)
    assert opt.param_groups[0]["momentum"] == 0.5 and opt.param_groups[0]["nesterov"] is False
    opt = create_optimizer("adam", make_model(), betas=(0.8, 0.9))
    assert tuple(opt.param_groups[0]["betas"]) == (0.8, 0.9)


def test_sgd_without_momentum_drops_nesterov():
    opt = create_optimizer("sgd", make_model(), momentum=0.0)
    assert opt.param_groups[0]["nesterov"] is False


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"lr_head": 0}, "lr_head must be > 0"),
        ({"weight_decay": -1e-4}, "weight_decay must be >= 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"momentum": -0.1}, "momentum must be >= 0"),
        ({"lr": True}, "lr must be a finite number"),
    ],
)
def test_bad_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_optimizer("sgd", make_model(), **kwargs)


def test_momentum_for_an_optimizer_without_one_is_rejected():
    with pytest.raises(ValueError, match="'adam' takes no momentum"):
        create_optimizer("adam", make_model(), momentum=0.9)


def test_unknown_optimizer_lists_known_keys():
    with pytest.raises(KeyError, match="unknown optimizer 'adamx'.*Known: adabelief"):
        create_optimizer("adamx", make_model())


def test_unknown_optimizer_argument_names_the_optimizer():
    with pytest.raises(TypeError, match="optimizer 'adagrad' rejected"):
        create_optimizer("adagrad", make_model(), nesterov=True)


def test_all_frozen_model_is_rejected():
    model = make_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        create_optimizer("sgd", model)


def test_head_attribute_that_is_not_a_module_is_rejected():
    model = nn.Linear(3, 2)
    model.head = "linear"
    with pytest.raises(TypeError, match="model.head is a str"):
        split_parameters(model)


# -- schedules ---------------------------------------------------------------------------


def _lrs(
    name: str, base: list[float], total: int, warmup: int = 0, min_lr: float = 0.0, steps=None
):
    """The per-group lr used at each step 0..steps-1."""
    params = [nn.Parameter(torch.zeros(1)) for _ in base]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, base, strict=True)])
    sched = create_scheduler(name, opt, total, warmup, min_lr=min_lr)
    out = []
    for _ in range(total if steps is None else steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_registry_holds_cosine_and_constant():
    assert set(SCHEDULERS.names()) == {"cosine", "constant"}


def test_cosine_matches_the_formula_per_group():
    total, base = 10, [1e-3, 1e-2]
    got = _lrs("cosine", base, total, steps=total + 3)
    for t, row in enumerate(got):
        for b, lr in zip(base, row, strict=True):
            expected = 0.5 * b * (1 + math.cos(math.pi * min(t, total) / total))
            assert lr == pytest.approx(expected, rel=1e-12, abs=1e-18)
    assert got[0] == pytest.approx(base)
    assert got[total] == pytest.approx([0.0, 0.0], abs=1e-18)


def test_cosine_with_warmup_and_floor():
    total, warmup, base, floor = 12, 3, 0.1, 0.01
    got = [row[0] for row in _lrs("cosine", [base], total, warmup, floor)]
    assert got[:3] == pytest.approx([base / 3, 2 * base / 3, base])
    for t in range(warmup, total):
        p = (t - warmup) / (total - warmup)
        assert got[t] == pytest.approx(floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * p)))
    assert got == pytest.approx([cosine_lr(t, base, total, warmup, floor) for t in range(total)])
    assert min(got[warmup:]) > floor


def test_constant_with_warmup():
    got = [row[0] for row in _lrs("constant", [0.2], 8, warmup=4)]
    assert got == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 0), "total_steps must be an int >= 1"),
        ((10, -1), "warmup_steps must be an int >= 0"),
        ((10, 11), r"warmup_steps \(11\) exceeds total_steps \(10\)"),
        ((10.0, 0), "total_steps must be an int"),
    ],
)
def test_bad_schedule_arguments(args, match):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=match):
        create_scheduler("cosine", opt, *args)


def test_negative_min_lr_and_unknown_schedule_are_rejected():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="min_lr"):
        create_scheduler("cosine", opt, 10, min_lr=-1.0)
    with pytest.raises(KeyError, match="unknown scheduler 'step'"):
        create_scheduler("step", opt, 10)


def _state(opt) -> tuple:
    groups = [{**g, "params": [id(p) for p in g["params"]]} for g in opt.param_groups]
    return type(opt), dict(opt.defaults), groups


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("sgd", {}),
        ("sgd", {"momentum": 0.0}),
        ("sgd", {"lr": 0.1, "nesterov": False, "dampening": 0.1}),
        ("adam", {}),
        ("adam", {"betas": (0.8, 0.9), "eps": 1e-6, "amsgrad": True}),
        ("adamw", {"weight_decay": 0.1}),
        ("adadelta", {"rho": 0.8}),
        ("adagrad", {}),
        ("adagrad", {"lr_decay": 0.01}),
        ("rmsprop", {}),
        ("rmsprop", {"momentum": 0.5, "centered": True}),
    ],
)
def test_torch_optimizers_are_built_exactly_as_timm_builds_them(name, kwargs, monkeypatch):
    """Built without importing timm, yet the same class, defaults and groups as through timm."""
    from timm.optim import create_optimizer_v2

    from calib.train import optim

    spec = OPTIMIZERS.get(name)
    assert spec.torch_class is not None
    model = make_model()
    direct = create_optimizer(name, model, **kwargs)
    via_timm = optim.OptimizerSpec(
        spec.timm_name,
        lr=spec.lr,
        lr_head=spec.lr_head,
        weight_decay=spec.weight_decay,
        momentum=spec.momentum,
        kwargs=spec.kwargs,
    )  # the same spec without torch_class: built by create_optimizer_v2
    monkeypatch.setitem(OPTIMIZERS._items, name, via_timm)
    built = []

    def spy(*args, **kw):
        built.append(create_optimizer_v2(*args, **kw))
        return built[-1]

    monkeypatch.setattr("timm.optim.create_optimizer_v2", spy)
    reference = create_optimizer(name, model, **kwargs)
    assert built, "the reference must come from timm"
    assert _state(direct) == _state(reference)


def test_only_adabelief_needs_timm():
    assert [k for k in OPTIMIZERS.names() if OPTIMIZERS.get(k).torch_class is None] == ["adabelief"]
