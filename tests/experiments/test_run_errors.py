"""The entry points answer a user's mistake with one line naming it, never a traceback.

Covered here: Hydra's own refusals (a typo in a key gets calib's "did you mean" before Hydra's
advice to append it), and file-system errors (a run folder below a file, a read-only run
folder, a collation output below a file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _calib_run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "calib.experiments.run", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_typo_in_a_key_gets_did_you_mean_not_hydras_append_advice(tmp_path):
    done = _calib_run("finetune.epoch=3", f"run_dir={tmp_path / 'run'}")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "did you mean finetune.epochs?" in output
    assert "+finetune.epoch" not in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_an_unknown_config_option_is_one_line(tmp_path):
    done = _calib_run("optimizer=sgdd", f"run_dir={tmp_path / 'run'}")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Could not find 'optimizer/sgdd'" in output and "adam" in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_a_run_folder_below_a_file_is_named_in_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    done = _calib_run(f"run_dir={afile / 'run'}")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert str(afile) in output and "Traceback" not in output
    assert afile.read_text() == "mine\n"


def test_a_read_only_run_folder_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    """Hydra writes its config record into the run folder first; in a folder the user may not
    write (root may write anywhere, so the refusal is injected where Hydra writes)."""
    import hydra.core.utils

    from experiments import run

    def refuse(cfg, filename, output_dir):
        raise PermissionError(13, "Permission denied", str(Path(output_dir) / filename))

    monkeypatch.setattr(hydra.core.utils, "_save_config", refuse)
    monkeypatch.setattr(sys, "argv", ["calib-run", f"run_dir={tmp_path / 'run'}"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    with pytest.raises(SystemExit) as stop:
        run.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("calib-run: ") and "Permission denied" in err
    assert str(tmp_path / "run") in err and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o500)
    try:
        done = _calib_run(f"run_dir={run_dir}")
    finally:
        run_dir.chmod(0o700)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Permission denied" in output and "Traceback" not in output


def test_collate_output_below_a_file_is_one_line(demo_copy, tmp_path):
    from experiments.collate import main

    assert demo_copy[2].parent == tmp_path  # a run folder to collate
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--out", str(afile / "tab"), "--no-figures"])
    message = str(stop.value.code)
    assert message.startswith("calib-collate: ") and str(afile) in message
    assert afile.read_text() == "mine\n"
