"""Checkpoints: checksummed format, corruption detection, atomic saves, settings checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import calib.train.checkpoint as ckpt
from calib.train import CheckpointError, ConfigMismatchError, TrainConfig, train
from calib.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from tests.helpers_train import make_dataset, make_model


def _state(value: float = 1.0) -> dict:
    return {"epoch": 3, "weights": torch.full((4, 4), value), "history": [{"loss": 0.5}]}


def test_round_trip(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state(2.0))
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["history"] == [{"loss": 0.5}]
    assert torch.equal(back["weights"], torch.full((4, 4), 2.0))
    assert path.read_bytes().startswith(b"calib-checkpoint/1 sha256=")


def test_truncated_file_is_detected(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{path}.* is truncated"):
        load_checkpoint(path)


def test_truncated_inside_the_header_is_detected(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(CheckpointError, match=rf"{path} is not a calib checkpoint"):
        load_checkpoint(path)


def test_flipped_byte_is_detected(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path} is corrupt: SHA-256 mismatch"):
        load_checkpoint(path)


def test_random_bytes_and_empty_file_are_detected(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=rf"{path} is not a calib checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{path} is empty"):
        load_checkpoint(path)


def test_plain_torch_save_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    torch.save(_state(), path)
    with pytest.raises(CheckpointError, match="not a calib checkpoint"):
        load_checkpoint(path)


class _FailAfter:
    """A file object that raises once more than ``limit`` bytes were written."""

    def __init__(self, fh, limit: int) -> None:
        self.fh, self.left = fh, limit

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.left:
            self.fh.write(data[: self.left])
            raise OSError("simulated crash in the middle of a checkpoint write")
        self.left -= len(data)
        return self.fh.write(data)


def test_crash_during_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    real_atomic_save = ckpt.atomic_save

    def crashing_atomic_save(target, writer):
        real_atomic_save(target, lambda fh: writer(_FailAfter(fh, 200)))

    monkeypatch.setattr(ckpt, "atomic_save", crashing_atomic_save)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, _state(5.0))
    assert torch.equal(load_checkpoint(path)["weights"], torch.full((4, 4), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no stray temporary file


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    # The global numpy RNG is the point here (user augmentations draw from it).
    path = tmp_path / "rng.pt"
    torch.manual_seed(1)
    np.random.seed(2)  # noqa: NPY002
    random.seed(3)
    save_checkpoint(path, {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    torch.manual_seed(99)
    np.random.seed(99)  # noqa: NPY002
    random.seed(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])  # noqa: NPY002
    assert random.random() == expected[2]


# -- through train() ---------------------------------------------------------------------

CFG = dict(epochs=4, batch_size=8, iters_per_epoch=2, lr=0.05, seed=1)


class _Crash(Exception):
    pass


def _crash_after(epochs_done: int):
    """A ``log`` callback that raises on the line of epoch ``epochs_done + 1``, before its save."""

    def log(line: str) -> None:
        if f"epoch {epochs_done + 1}/" in line:
            raise _Crash(line)

    return log


def _interrupted_run(run_dir, epochs_done: int = 2, **overrides):
    with pytest.raises(_Crash):
        train(
            make_model(),
            make_dataset(),
            TrainConfig(**{**CFG, **overrides}),
            run_dir=run_dir,
            progress=False,
            log=_crash_after(epochs_done),
        )
    last = run_dir / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["epoch"] == epochs_done
    return last


def _train(run_dir, **overrides):
    return train(
        make_model(),
        make_dataset(),
        TrainConfig(**{**CFG, **overrides}),
        run_dir=run_dir,
        progress=False,
        log=lambda line: None,
    )


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_train_refuses_a_corrupt_checkpoint(tmp_path, damage):
    last = _interrupted_run(tmp_path)
    data = last.read_bytes()
    if damage == "truncate":
        last.write_bytes(data[:-100])
    else:
        last.write_bytes(np.random.default_rng(1).bytes(len(data)))
    with pytest.raises(CheckpointError, match=str(last)):
        _train(tmp_path)
    assert not (tmp_path / "checkpoints" / "done").exists()  # not silently restarted


def test_train_refuses_changed_settings_naming_them(tmp_path):
    _interrupted_run(tmp_path)
    with pytest.raises(ConfigMismatchError, match=r"lr: 0\.05 -> 0\.1.*new run_dir"):
        _train(tmp_path, lr=0.1)
    with pytest.raises(ConfigMismatchError, match="dataset_size: 64 -> 40"):
        train(make_model(), make_dataset(40), TrainConfig(**CFG), run_dir=tmp_path, progress=False)


def test_num_workers_is_not_part_of_the_settings(tmp_path):
    _interrupted_run(tmp_path)
    result = _train(tmp_path, num_workers=1)
    assert result.resumed_from == 2 and len(result.history) == 4


def test_finished_run_refuses_changed_settings(tmp_path):
    _train(tmp_path)
    with pytest.raises(ConfigMismatchError, match="epochs: 4 -> 5"):
        _train(tmp_path, epochs=5)


def test_finished_run_with_corrupt_final_weights_is_detected(tmp_path):
    _train(tmp_path)
    final = tmp_path / "checkpoints" / "final.pt"
    final.write_bytes(final.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=rf"final weights {final} do not match"):
        _train(tmp_path)


def test_checkpoint_of_another_model_is_reported(tmp_path):
    last = _interrupted_run(tmp_path)
    other = make_model(hidden=12)
    with pytest.raises(CheckpointError, match=rf"{last} does not fit"):
        train(other, make_dataset(), TrainConfig(**CFG), run_dir=tmp_path, progress=False)
