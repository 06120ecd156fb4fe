"""Finished source models are shared: trained once per source setting, safe under concurrency."""

from __future__ import annotations

import json
import time
from pathlib import Path

from calib.run import build_plan
from calib.run.source_cache import SourceCache
from calib.run.stages import Stage
from calib.train import TrainConfig, train
from tests.helpers_distributed import run_processes
from tests.helpers_run import tiny_config
from tests.helpers_train import RESUME_CONFIG, SlowDataset, make_dataset, make_model


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


def _hold_and_train(i: int, cache: str, out: str) -> None:
    stage = Stage("source", {"stage": "source", "test": 1})
    with SourceCache(cache).hold(stage) as entry:
        result = train(
            make_model(),
            SlowDataset(make_dataset(48), 0.002),
            TrainConfig(**RESUME_CONFIG),
            run_dir=entry,
            progress=False,
            log=lambda line: None,
        )
    Path(out, f"out{i}").write_text("loaded" if result.already_done else "trained")


def test_concurrent_processes_train_one_source_model(tmp_path):
    """Two processes reach the same entry at once: one trains, the other waits and loads."""
    run_processes(_hold_and_train, 2, str(tmp_path / "cache"), str(tmp_path))
    outcomes = sorted((tmp_path / f"out{i}").read_text() for i in range(2))
    assert outcomes == ["loaded", "trained"]
    entry = SourceCache(tmp_path / "cache").entry(Stage("source", {"stage": "source", "test": 1}))
    assert (entry / "checkpoints" / "done").is_file()


def _wait_in_group(rank: int, world: int, cache: str, out: str) -> None:
    stage = Stage("source", {"stage": "source", "test": 2})
    Path(out, f"ready{rank}").write_text("")
    with SourceCache(cache).hold(stage, poll_s=0.1):
        Path(out, f"held{rank}").write_text(str(time.monotonic()))


def test_every_rank_waits_for_a_busy_entry_on_the_file_system(tmp_path):
    """While another job holds the entry (here this test process, for three times the group's
    timeout once both ranks are at it), rank 0 waits for the lock and rank 1 for rank 0, neither
    in a collective: a barrier would fail after the group's 2 s timeout."""
    import datetime
    import fcntl
    import threading

    from tests.helpers_distributed import run_group

    cache = tmp_path / "cache"
    entry = SourceCache(cache).entry(Stage("source", {"stage": "source", "test": 2}))
    entry.mkdir(parents=True)
    with open(entry / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        released = []

        def release() -> None:
            while not all((tmp_path / f"ready{r}").exists() for r in range(2)):
                time.sleep(0.05)
            time.sleep(6)
            released.append(time.monotonic())
            fcntl.flock(lock, fcntl.LOCK_UN)

        thread = threading.Thread(target=release)
        thread.start()
        try:
            run_group(
                _wait_in_group, 2, str(cache), str(tmp_path),
                timeout=datetime.timedelta(seconds=2),
            )  # fmt: skip
        finally:
            thread.join()
    held = [float((tmp_path / f"held{r}").read_text()) for r in range(2)]
    assert min(held) >= released[0]  # nobody went in before the other job let go
    assert not (entry / ".holder").exists()  # the token goes with the lock
