"""Shared fixtures: torch devices, a private source-model cache, and one tiny demo run.

The tiny demo run (the digits demo with one epoch per stage) is computed once per session and
shared by every test that only reads it; a test that changes a run folder works on a copy.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from tests.helpers_paper import compose_experiment

#: The digits demo at one epoch per stage and two PCV splits: the whole pipeline in seconds.
#: Without figures (drawing them took half of such a run): the tests that look at a run's
#: figures draw them (the shared :func:`demo_run` does).
TINY = [
    "progress=false",
    "source_train.epochs=1",
    "finetune.epochs=1",
    "calibration.pcv.num_splits=2",
    "eval.figures=false",
]


def pytest_configure(config):
    # Under pytest-xdist (`make test`: one worker per core) each worker computes on one thread:
    # two workers with torch's default of one thread per core would oversubscribe the cores.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
    # The tests check that figures are written whole, not their resolution: a third of the
    # default's dots per inch halves the time the many run folders (and the calib-run
    # subprocesses, which inherit it) spend drawing.
    os.environ.setdefault("CALIB_FIGURE_DPI", "50")


def pytest_collection_modifyitems(config, items):
    # The slow tests first (stable order otherwise): spread over the workers while the many
    # quick ones fill the gaps, instead of one slow test holding a worker at the end.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ),
    ]
)
def device(request) -> torch.device:
    """Each available torch device in turn."""
    return torch.device(request.param)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Source models go to a session cache, never into the checkout's .cache/."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CALIB_CACHE_DIR", str(tmp_path_factory.mktemp("calib_cache")))
    yield
    mp.undo()


def tiny_config(overrides: list[str] = ()) -> dict:
    """The resolved config of the tiny demo plus ``overrides``."""
    return compose_experiment("digits_demo", [*TINY, *overrides])


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``(plan, results, run_dir)`` of the tiny demo, figures and all, run once per session.
    Read-only."""
    from calib.run import build_plan

    run_dir = tmp_path_factory.mktemp("demo") / "run"
    torch.set_num_threads(1)
    plan = build_plan(tiny_config(["eval.figures=true"]), run_dir=run_dir)
    results = plan.run()
    return plan, results, run_dir


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the tiny demo's run folder: ``(plan, results, run_dir)``."""
    plan, results, run_dir = demo_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return plan, results, copy
