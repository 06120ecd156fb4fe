"""A bad config stops before any work, with one line naming the key and the value given."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from calib.run import ConfigError, build_plan
from tests.helpers_paper import CONF
from tests.helpers_run import TINY, tiny_config

BAD = [
    ("model.weights=/nonexistent/w.pt", "invalid model: weights file not found: /nonexistent/w.pt"),
    ("finetune.lr_scale=abc", "finetune.lr_scale must be a number > 0, got 'abc'"),
    ("optimizer.lr=abc", "optimizer.lr must be a number > 0 or null, got 'abc'"),
    ("seed=abc", "seed must be an integer ≥ 0, got 'abc'"),
    ("eval.batch_size=abc", "eval.batch_size must be an integer ≥ 1, got 'abc'"),
    ("eval.amp=abc", "eval.amp must be true or false, got 'abc'"),
    ("progress=maybe", "progress must be true or false or one of 'auto', got 'maybe'"),
    (
        "+finetune.lr_scal=2",
        "unknown config key finetune.lr_scal (did you mean finetune.lr_scale?)",
    ),
    ("split.n_seen=3", "split.n_seen is not used with split.kind=explicit"),
    ("+optimizer.kwargs.foo=1", "optimizer.kwargs.foo=1: optimizer=sgd takes no foo; it takes"),
    ("scheduler.warmup_iters=100000", "scheduler: warmup_iters (100000) exceeds the run's"),
    ("model.kwargs.in_chans=3", "does not go through model 'digits_cnn'"),
    ("calibration.selectors=[alg,magic]", "unknown selector 'magic'"),
    ("+calibration.options.prior.bogus=1", "calibration.options.prior"),
    ("calibration.pcv.holdout_fraction=1.5", "pcv.holdout_fraction must be a number in (0, 1)"),
    ("dataset.name=no_such_data", "no_such_data"),
    ("dataset.size=1.5", "invalid dataset: size must be an integer ≥ 1, got 1.5"),
    ("source.size=abc", "invalid source: size must be an integer ≥ 1, got 'abc'"),
    ("model.name=no_such_model_xyz", "no_such_model_xyz"),
    ("imports=[no_such_module_xyz]", "imports: cannot import 'no_such_module_xyz'"),
]
if not torch.cuda.is_available():
    BAD.append(("device=cuda", "device=cuda: this machine has no CUDA device"))


@pytest.mark.parametrize(("override", "message"), BAD, ids=[o for o, _ in BAD])
def test_bad_value_stops_at_start_naming_the_key(tmp_path, override, message):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        build_plan(tiny_config([override]), run_dir=run_dir)
    assert message in str(err.value)
    assert "\n" not in str(err.value)  # one line
    assert not run_dir.exists()  # nothing was trained or written


def test_a_refused_change_prints_one_line_without_traceback(demo_copy):
    _, _, run_dir = demo_copy
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        *TINY,
        "finetune.epochs=3",
        f"run_dir={run_dir}",
    ]
    done = subprocess.run(
        cmd, cwd=CONF.parent, env=env, capture_output=True, text=True, timeout=180
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "finetune.epochs: 1 → 3" in output
    assert "Traceback" not in output


def test_help_is_fast_and_lists_only_runnable_experiments():
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--help"],
        cwd=CONF.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - start < 30  # a sanity bound; the speed itself is benchmarked
    listing = done.stdout.split("== Config groups")[1].split("== Config (")[0]
    flat = " ".join(listing.split())
    for group in ("experiment", "dataset", "model", "optimizer", "scheduler", "calibration"):
        names = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        assert f"{group}: {', '.join(names)}" in flat, group
    assert "_base" not in listing and "base:" not in listing
    assert "fine-tune a pre-trained classifier" in done.stdout


def test_a_bad_figure_dpi_stops_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIB_FIGURE_DPI", "sharp")
    with pytest.raises(
        ConfigError, match="CALIB_FIGURE_DPI must be a positive integer, got 'sharp'"
    ):
        build_plan(tiny_config(), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
