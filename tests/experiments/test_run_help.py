"""Every key `calib-run --help` lists carries a one-line description, from one source: the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import pytest
from omegaconf import OmegaConf

from calib.run.schema import SCHEMA, _Open, _Section, config_help, describe_key
from tests.helpers_paper import CONF, compose_config, experiment_names

#: The option groups; each option is composed on the demo (an experiment picks one of each).
GROUPS = ("dataset", "model", "optimizer", "scheduler", "calibration")


def _composed(experiment: str, overrides: list[str] = ()) -> dict:
    """The config ``calib-run --help experiment=... OVERRIDES`` lists: unresolved, no hydra."""
    cfg = OmegaConf.to_container(compose_config(experiment, overrides), resolve=False)
    cfg.pop("hydra", None)
    return cfg


def _keys(cfg: Mapping, prefix: str = "") -> list[str]:
    """Every dotted key of ``cfg``, sections included, in order."""
    out = []
    for key, value in cfg.items():
        out.append(f"{prefix}{key}")
        if isinstance(value, Mapping):
            out += _keys(value, f"{prefix}{key}.")
    return out


SHIPPED = [(name, []) for name in experiment_names()] + [
    ("digits_demo", [f"{group}={path.stem}"])
    for group in GROUPS
    for path in sorted((CONF / group).glob("*.yaml"))
]


@pytest.mark.parametrize(
    ("experiment", "overrides"), SHIPPED, ids=[f"{e} {' '.join(o)}" for e, o in SHIPPED]
)
def test_every_key_of_a_shipped_config_has_a_description(experiment, overrides):
    cfg = _composed(experiment, overrides)
    undescribed = [key for key in _keys(cfg) if not describe_key(key)]
    assert not undescribed, f"add a description to calib/run/schema.py for {undescribed}"
    lines = config_help(cfg).splitlines()
    assert len(lines) == len(_keys(cfg))  # one line a key
    for line in lines:
        text, _, description = line.partition("  # ")
        assert text.strip() and description.strip(), line
        assert description != "(unknown key)", line


def test_every_schema_entry_has_a_description():
    def walk(schema: Mapping, prefix: str) -> None:
        for key, spec in schema.items():
            if isinstance(spec, _Open):
                assert spec.help and spec.each, f"{prefix}{key}"
                assert all(spec.known.values()), f"{prefix}{key}"
            elif isinstance(spec, _Section):
                assert spec.help, f"{prefix}{key}"
                walk(spec, f"{prefix}{key}.")
            else:
                assert len(spec) == 3 and spec[2].strip(), f"{prefix}{key}"

    walk(SCHEMA, "")


def test_the_help_shows_the_values_as_yaml_with_the_description_after_them():
    cfg = _composed("digits_demo", ["finetune.epochs=3", "+model.kwargs.drop_rate=0.1"])
    text = config_help(cfg)
    lines = {line.split("  # ")[0].rstrip(): line.split("  # ")[1] for line in text.splitlines()}
    assert lines["finetune:"] == describe_key("finetune")
    assert lines["  epochs: 3"] == "number of epochs"
    assert lines["  seen: [0, 1, 2, 3, 4]"] == (
        "explicit: the seen classes (column indices or the target's class names)"
    )
    assert lines["cache_dir: ${oc.env:CALIB_CACHE_DIR,.cache/calib}"]
    assert lines["run_dir: null"] and lines["  sync_batchnorm: false"]
    # a key the shipped configs do not use, in an open section: that section's description
    assert (
        lines["    drop_rate: 0.1"]
        == "an argument of the model's builder (calib.models.create_model)"
    )
    # the YAML part reads back as the config itself
    plain = "\n".join(line.split("  # ")[0] for line in text.splitlines())
    assert OmegaConf.to_container(OmegaConf.create(plain), resolve=False) == cfg


def test_a_key_the_schema_does_not_know_is_marked_not_described():
    assert config_help({"bogus": 1}) == f"{'bogus: 1':<40}  # (unknown key)"
    assert describe_key("bogus") is None
    assert describe_key("dataset.bogus") is None  # an open section's unknown key
    assert describe_key("finetune.epochs") == "number of epochs"
    assert describe_key("dataset.root") == "folder of the data set on disk"


def test_calib_run_help_lists_every_key_with_its_description():
    done = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--help", "experiment=office_home_ar_cl"],
        cwd=CONF.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listing = done.stdout.split("== Config (override any key as key=value) ==\n")[1]
    listing = listing.split("\n\n")[0]
    assert listing == config_help(_composed("office_home_ar_cl"))
    assert "${oc.env:OFFICE_HOME_ROOT,data/office_home}" in listing  # $ is not a placeholder
