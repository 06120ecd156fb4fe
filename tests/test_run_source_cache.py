"""Finished source models are shared: trained once per source setting, safe under concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from calib.run import build_plan
from calib.run.source_cache import SourceCache
from calib.run.stages import Stage
from tests.conftest import tiny_config
from tests.helpers_paper import CONF


def test_a_sweep_trains_its_source_model_once(demo_run, tmp_path, caplog):
    """Another point of a sweep (another optimizer) loads the demo's source model."""
    _, results, run_dir = demo_run
    other = build_plan(tiny_config(["optimizer=adam"]), run_dir=tmp_path / "adam")
    with caplog.at_level("INFO", logger="calib.train"):
        other.run()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("source epoch" in m for m in messages)
    assert any("source: run already finished" in m for m in messages)
    keys = [
        json.loads((d / "stages.json").read_text())["stages"]["source"]
        for d in (run_dir, tmp_path / "adam")
    ]
    assert keys[0]["key"] == keys[1]["key"]
    entry = Path(keys[0]["cache"]) / "source" / keys[0]["key"]
    assert (entry / "checkpoints" / "final.pt").is_file()
    assert not (tmp_path / "adam" / "source").exists()  # not trained again in the run folder


_WORKER = textwrap.dedent(
    """
    import sys
    from calib.run.source_cache import SourceCache
    from calib.run.stages import Stage
    from calib.train import TrainConfig, train
    from tests.helpers_train import RESUME_CONFIG, SlowDataset, make_dataset, make_model

    cache, out = sys.argv[1], sys.argv[2]
    stage = Stage("source", {"stage": "source", "test": 1})
    with SourceCache(cache).hold(stage) as entry:
        result = train(make_model(), SlowDataset(make_dataset(48), 0.002),
                       TrainConfig(**RESUME_CONFIG), run_dir=entry, progress=False, log=lambda l: None)
    open(out, "w").write("loaded" if result.already_done else "trained")
    """
)


def test_concurrent_processes_train_one_source_model(tmp_path):
    """Two processes reach the same entry at once: one trains, the other waits and loads."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path / f"out{i}")],
            cwd=CONF.parent,
            env={**os.environ, "PYTHONPATH": str(CONF.parent)},  # `tests` is importable
        )
        for i in range(2)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    outcomes = sorted((tmp_path / f"out{i}").read_text() for i in range(2))
    assert outcomes == ["loaded", "trained"]
    entry = SourceCache(tmp_path / "cache").entry(Stage("source", {"stage": "source", "test": 1}))
    assert (entry / "checkpoints" / "done").is_file()
