"""Shared fixtures: torch devices, a private source-model cache, and one tiny demo run.

The tiny demo run (the digits demo with one epoch per stage) is computed once per session and
shared by every test that only reads it; a test that changes a run folder works on a copy. The
pytest-xdist workers share the source-model cache and the demo run's training.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import sys
from pathlib import Path


def cuda_tests_selected(argv: list[str], addopts: str = "") -> bool:
    """Whether a pytest command line selects the CUDA-marked tests (``-m cuda``, ``-m "cuda and
    not slow"``; not ``-m "not cuda"``)."""
    args = [*shlex.split(addopts), *argv]
    for i, arg in enumerate(args):
        expr = args[i + 1] if arg == "-m" and i + 1 < len(args) else None
        expr = arg[2:] if expr is None and arg.startswith("-m") and len(arg) > 2 else expr
        if expr and re.search(r"(?<!not )\bcuda\b", expr):
            return True
    return False


# Every test computes on CPU unless the CUDA-marked ones are asked for (`pytest -m cuda`): with a
# GPU present, `device=auto` would move the tiny runs to CUDA bf16 and rank 1 of the two-process
# tests would ask for cuda:1. Hidden before torch is imported (CUDA counts its devices once);
# subprocesses inherit it, and the xdist workers inherit the controller's choice.
if not os.environ.get("PYTEST_XDIST_WORKER") and not cuda_tests_selected(
    sys.argv[1:], os.environ.get("PYTEST_ADDOPTS", "")
):
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers_run import tiny_config  # noqa: E402


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
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
            ],
        ),
    ]
)
def device(request) -> torch.device:
    """Each available torch device in turn."""
    return torch.device(request.param)


def _session_dir(tmp_path_factory) -> Path:
    """A folder of this test session shared by its pytest-xdist workers (each worker's
    ``basetemp`` is a subfolder of it); without xdist, the session's own ``basetemp``."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def _session_lock(path: Path):
    """An exclusive lock on ``path`` between the processes of the session (flock)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Source models go to a session cache, never into the checkout's .cache/. The workers
    share it (it is safe under concurrency: tests/run/test_source_cache.py), so each source
    setting is trained once per session, not once per worker."""
    cache = _session_dir(tmp_path_factory) / "calib_cache"
    cache.mkdir(exist_ok=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("CALIB_CACHE_DIR", str(cache))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``(plan, results, run_dir)`` of the tiny demo, figures and all, run once per session.
    Read-only.

    The first worker to get here runs it; the others take a copy of its finished folder and
    run the same plan on it, which trains nothing (every stage is done) and gives them their
    own plan and results.
    """
    from calib.run import build_plan

    torch.set_num_threads(1)
    cfg = tiny_config(["eval.figures=true"])
    shared = _session_dir(tmp_path_factory) / "demo_run"
    with _session_lock(shared.with_suffix(".lock")):
        if not (shared / "results.json").is_file():
            plan = build_plan(cfg, run_dir=shared)
            return plan, plan.run(), shared
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    shutil.copytree(shared, run_dir)
    plan = build_plan(cfg, run_dir=run_dir)
    return plan, plan.run(), run_dir


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the tiny demo's run folder: ``(plan, results, run_dir)``."""
    plan, results, run_dir = demo_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return plan, results, copy
