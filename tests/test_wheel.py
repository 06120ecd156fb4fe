"""The package as a user installs it: a plain wheel in a fresh virtual environment.

The wheel must carry the command-line entry points and their configs (`calib-run --help`, a
tiny run and `calib-collate` from an empty folder), install no top-level name but ``calib``,
and still take a user's own configs through ``--config-dir``. The fresh environment reuses the
test environment's packages (torch and the rest) through a ``.pth`` line, so nothing is
downloaded; the editable calib there is not on that path (its ``.pth`` is not read from a
plain path entry), so the wheel's calib is the one imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers_run import TINY

REPO = Path(__file__).resolve().parents[1]
#: What a source tree copy leaves behind: builds, caches, run folders, the environment.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".hypothesis", ".cache", "outputs", "multirun", "runs", ".whl",
)  # fmt: skip


def _env() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH pointing into the clone."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> dict[str, Path]:
    """``{"wheel", "bin", "python", "empty"}``: the built wheel and a venv that installed it."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=NOT_SOURCE)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(root / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = (root / "dist").glob("calib-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # reuse this environment's packages (torch, hydra, ...): appended after the venv's own
    (Path(site) / "reuse_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    empty = root / "empty"
    empty.mkdir()
    return {"wheel": wheel, "bin": venv / "bin", "python": python, "empty": empty}


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_wheel_installs_no_top_level_name_but_calib(wheel_env):
    with zipfile.ZipFile(wheel_env["wheel"]) as whl:
        tops = {name.split("/")[0] for name in whl.namelist()}
        names = set(whl.namelist())
    assert tops == {"calib", wheel_env["wheel"].name.split("-py3")[0] + ".dist-info"}, tops
    assert "calib/conf/config.yaml" in names and "calib/experiments/run.py" in names
    assert "calib/conf/hydra/help/calib.yaml" in names


@pytest.mark.slow
def test_installed_calib_is_the_wheel_not_the_clone(wheel_env):
    done = _run(
        [str(wheel_env["python"]), "-c",
         "import calib, importlib.util as u; print(calib.__file__);"
         " print(u.find_spec('experiments') is None)"],
        cwd=wheel_env["empty"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, no_experiments = done.stdout.split()
    assert REPO not in Path(where).parents, where
    assert no_experiments == "True"  # the wheel adds no top-level `experiments`


@pytest.mark.slow
def test_installed_cli_helps_runs_and_collates_from_an_empty_folder(wheel_env):
    empty, bin_dir = wheel_env["empty"], wheel_env["bin"]
    helped = _run([str(bin_dir / "calib-run"), "--help"], cwd=empty, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "== Config groups" in helped.stdout and "digits_demo" in helped.stdout

    run_dir = empty / "run"
    done = _run(
        [str(bin_dir / "calib-run"), *TINY, f"run_dir={run_dir}", f"cache_dir={empty / 'cache'}"],
        cwd=empty,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert 0.0 <= results["finetuned"]["acc_all"] <= 1.0

    collated = _run([str(bin_dir / "calib-collate"), str(empty), "--no-figures"], cwd=empty)
    assert collated.returncode == 0, collated.stderr
    assert (empty / "collated.md").is_file()


@pytest.mark.slow
def test_installed_cli_takes_a_users_config_dir(wheel_env, tmp_path):
    own = tmp_path / "my_conf" / "model"
    own.mkdir(parents=True)
    (own / "my_cnn.yaml").write_text("name: digits_cnn\npretrained: false\nkwargs: {width: 7}\n")
    done = _run(
        [str(wheel_env["bin"] / "calib-run"), "--config-dir", str(tmp_path / "my_conf"),
         "model=my_cnn", "--cfg", "job"],
        cwd=wheel_env["empty"], timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "width: 7" in done.stdout


def test_a_folder_named_calib_in_the_working_directory_does_not_shadow_the_package(tmp_path):
    """A script run beside the clone (``./calib/`` = the repository, no ``__init__.py``) must
    import the installed calib, not the clone's root as a namespace package."""
    (tmp_path / "calib").symlink_to(REPO, target_is_directory=True)
    script = tmp_path / "script.py"
    script.write_text("import calib\nprint(calib.__file__)\nprint(calib.PseudoSplit.__name__)\n")
    done = _run([sys.executable, str(script)], cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    where, name = done.stdout.split()
    # the installed package (this clone's, or the one the environment installed), never the
    # namespace package of the folder beside the script
    assert where.endswith("__init__.py") and not where.startswith(str(tmp_path)), where
    assert name == "PseudoSplit"
