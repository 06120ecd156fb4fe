"""Every registered optimizer trains in both training sections, chosen from the command line.

One rule for the optimizer keys of ``finetune`` (the ``optimizer`` group) and ``source_train``:
null is the chosen optimizer's own default, so the shipped configs run with any optimizer; a
value that is set and that the optimizer does not take is refused, naming the key.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
import torch

from calib.run import ConfigError, build_plan
from calib.train import OPTIMIZERS, TrainConfig, create_optimizer
from calib.train.optim import optimizer_arguments, resolve_optimizer_settings
from tests.helpers_paper import CONF
from tests.helpers_run import TINY, tiny_config

#: The torch.optim class (or timm's, for AdaBelief) each registered optimizer builds.
CLASSES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "adabelief": "AdaBelief",
    "adadelta": "Adadelta",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
}


def test_the_table_covers_every_registered_optimizer():
    assert sorted(CLASSES) == sorted(OPTIMIZERS.names())


def _built(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer the trainer builds from ``cfg`` (calib.train.trainer)."""
    return create_optimizer(
        cfg.optimizer,
        model,
        lr=cfg.lr,
        lr_head=cfg.lr_head,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        **cfg.optimizer_kwargs,
    )


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_optimizer_runs_in_source_train_and_finetune(tmp_path, name):
    # `calib-run source_train.optimizer=NAME optimizer=NAME` on the demo, with the shipped
    # defaults of every other key: the plan's dry run builds both stages' optimizers.
    plan = build_plan(
        tiny_config([f"source_train.optimizer={name}", f"optimizer={name}"]),
        run_dir=tmp_path / "run",
    )
    spec = resolve_optimizer_settings(name)
    for stage in (plan.source_train, plan.finetune):
        assert stage.optimizer == name
        assert stage.momentum == spec["momentum"]  # the optimizer's own, None for adam & co.
        assert stage.optimizer_kwargs == spec["kwargs"]  # nothing shipped was added
        optimizer = _built(stage, plan.make_model())
        assert type(optimizer).__name__ == CLASSES[name]
    # the source section's own lr (not the registry's) still applies to any optimizer
    assert plan.source_train.lr == plan.config["source_train"]["lr"]


def test_the_shipped_source_training_is_still_sgd_with_nesterov_momentum(tmp_path):
    plan = build_plan(tiny_config(), run_dir=tmp_path / "run")
    st = plan.source_train
    assert (st.optimizer, st.momentum, st.optimizer_kwargs) == ("sgd", 0.9, {"nesterov": True})
    assert st.weight_decay == 5e-4
    group = _built(st, plan.make_model()).param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.9, True)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["source_train.optimizer=rmsprop", "source_train.momentum=0.5"], {"momentum": 0.5}),
        (["source_train.nesterov=false"], {"nesterov": False}),
        (
            ["source_train.optimizer=adam", "+source_train.optimizer_kwargs.betas=[0.8,0.9]"],
            {"betas": (0.8, 0.9)},
        ),
        (["optimizer=rmsprop", "optimizer.momentum=0.5"], {"momentum": 0.5}),
        (["optimizer=adam", "+optimizer.kwargs.amsgrad=true"], {"amsgrad": True}),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_value_the_optimizer_takes_reaches_it(tmp_path, overrides, expected):
    plan = build_plan(tiny_config(overrides), run_dir=tmp_path / "run")
    stage = plan.source_train if overrides[0].startswith(("source", "+source")) else plan.finetune
    group = _built(stage, plan.make_model()).param_groups[0]
    for arg, value in expected.items():
        got = tuple(group[arg]) if isinstance(value, tuple) else group[arg]
        assert got == value, arg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["source_train.optimizer=adam", "source_train.momentum=0.9"],
            "source_train.momentum=0.9: source_train.optimizer=adam takes no momentum; it takes "
            "lr, lr_head, weight_decay and the kwargs amsgrad, betas,",
        ),
        (
            ["source_train.optimizer=rmsprop", "source_train.nesterov=true"],
            "source_train.nesterov=True: source_train.optimizer=rmsprop takes no nesterov",
        ),
        (
            ["+source_train.optimizer_kwargs.betas=[0.9,0.99]"],
            "source_train.optimizer_kwargs.betas=[0.9, 0.99]: source_train.optimizer=sgd "
            "takes no betas",
        ),
        (
            ["optimizer=adam", "optimizer.momentum=0.9"],
            "optimizer.momentum=0.9: optimizer=adam takes no momentum",
        ),
        (
            ["optimizer=adagrad", "+optimizer.kwargs.nesterov=true"],
            "optimizer.kwargs.nesterov=True: optimizer=adagrad takes no nesterov",
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_set_value_the_optimizer_does_not_take_is_refused(tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        build_plan(tiny_config(overrides), run_dir=run_dir)
    text = str(err.value)
    assert message in text and "\n" not in text
    key = text.split("=", 1)[0]
    assert f"set {key}=null" in text or f"remove it (~{key})" in text  # how to set it
    assert not run_dir.exists()


def test_train_config_refuses_a_kwarg_its_optimizer_does_not_take():
    with pytest.raises(ValueError, match=r"optimizer 'adam' does not take nesterov \(it takes"):
        TrainConfig(optimizer="adam", optimizer_kwargs={"nesterov": True})
    assert TrainConfig(optimizer="adam", optimizer_kwargs={"amsgrad": True}).optimizer_kwargs == {
        "amsgrad": True
    }


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_registry_defaults_are_arguments_of_their_optimizer(name):
    # refused_arguments takes a registry kwarg without looking at the class: this is why
    spec = OPTIMIZERS.get(name)
    assert set(spec.kwargs) <= set(optimizer_arguments(name))
    assert "momentum" not in optimizer_arguments(name)  # a field of its own
    if spec.torch_class is not None:  # momentum is refused exactly where the class has none
        takes = inspect.signature(getattr(torch.optim, spec.torch_class)).parameters
        assert spec.has_momentum == ("momentum" in takes)


@pytest.mark.slow
def test_calib_run_trains_the_source_with_adam_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            *TINY,
            "source_train.optimizer=adam",
            f"run_dir={run_dir}",
        ],
        cwd=CONF.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    settings = json.loads((run_dir / "stages.json").read_text())["stages"]["source"]["identity"]
    assert settings["settings"]["optimizer"] == "adam"
    assert settings["settings"]["momentum"] is None
    assert (run_dir / "results.json").is_file()
