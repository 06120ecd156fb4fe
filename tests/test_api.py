"""The public API of DESIGN.md: every name resolves, is documented and type-hinted."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import calib

DESIGN_NAMES = [
    "accuracy_report",
    "seen_absent_curve",
    "ausuc",
    "LogitBiasCalibrator",
    "CalibratedClassifier",
    "calibrate",
]


@pytest.mark.parametrize("name", calib.__all__)
def test_public_name_resolves_with_docstring(name):
    obj = getattr(calib, name)
    if name != "__version__":
        assert inspect.getdoc(obj), f"calib.{name} has no docstring"


@pytest.mark.parametrize("name", DESIGN_NAMES)
def test_design_functions_are_type_hinted(name):
    obj = getattr(calib, name)
    fn = obj.__init__ if inspect.isclass(obj) else obj
    params = [p for p in inspect.signature(fn).parameters.values() if p.name not in ("self",)]
    unannotated = [
        p.name
        for p in params
        if p.annotation is inspect.Parameter.empty
        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    assert not unannotated, f"calib.{name}: parameters without type hints: {unannotated}"


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute"):
        calib.not_a_thing  # noqa: B018


@pytest.fixture(scope="module")
def every_module_imported() -> dict:
    """A fresh interpreter that imported ``calib`` and each of its modules and subpackages:
    ``{"modules": [their names], "public": calib.__all__, "hydra": whether Hydra was loaded}``.

    ``calib.experiments`` is left out: it is the command line (the repository's
    ``experiments/``, shipped inside the package), the one place that imports Hydra."""
    code = (
        "import importlib, json, pkgutil, sys, calib\n"
        "mods = [m.name for m in pkgutil.iter_modules(calib.__path__) if m.name != 'experiments']\n"
        "[importlib.import_module('calib.' + m) for m in mods]\n"
        "print(json.dumps({'modules': mods, 'public': list(calib.__all__),"
        " 'hydra': 'hydra' in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_library_never_imports_hydra(every_module_imported):
    assert {"metrics", "rules", "selectors", "estimator", "run", "train"} <= set(
        every_module_imported["modules"]
    )
    assert every_module_imported["hydra"] is False


def test_no_public_name_is_shadowed_by_a_submodule(every_module_imported):
    """`import calib.<module>` sets an attribute on calib: no public name may be a module name."""
    shadowed = set(every_module_imported["modules"]) & set(every_module_imported["public"])
    assert not shadowed


def test_the_command_line_ships_inside_the_package():
    """``calib/experiments`` and ``calib/conf`` are the top-level ``experiments/`` and ``conf/``
    (links), so an installed wheel carries its entry points and configs under ``calib``."""
    from pathlib import Path

    root = Path(calib.__file__).parent
    assert (root / "experiments").resolve() == (root.parent / "experiments").resolve()
    assert (root / "conf").resolve() == (root.parent / "conf").resolve()
    assert (root / "conf" / "config.yaml").is_file()
