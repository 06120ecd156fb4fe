"""The history under 2 processes (gloo, as torchrun runs them): gathered data, rank 0 writes once."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from calib.dynamics import read_history
from tests.helpers_distributed import run_group


def _worker(rank: int, world: int, run_dir: str, weights: str) -> None:
    from tests.helpers_dynamics import make_model, tiny_run

    pre = make_model()
    pre.load_state_dict(torch.load(weights))  # the one-process pre-trained model
    tiny_run(Path(run_dir) / "run", every=2, epochs=3, model=pre)


@pytest.mark.slow  # two processes start and join a group: several seconds
def test_two_process_history_is_whole_and_written_once(tmp_path):
    from tests.dynamics.test_evaluator import _assert_row_matches, _independent_row
    from tests.helpers_dynamics import pretrained_model

    pre = pretrained_model()
    torch.save(pre.state_dict(), tmp_path / "pre.pt")
    run_group(_worker, 2, str(tmp_path), str(tmp_path / "pre.pt"))
    run_dir = tmp_path / "run"
    rows = read_history(run_dir)
    assert [r["epoch"] for r in rows] == [0, 2, 3]
    assert rows[0]["n_samples"] == 120 and rows[0]["n_train"] == 180  # gathered, not one shard
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 3
    _assert_row_matches(rows[0], _independent_row(pre))
    model = copy.deepcopy(pre)
    model.load_state_dict(torch.load(run_dir / "finetune" / "checkpoints" / "final.pt"))
    _assert_row_matches(rows[-1], _independent_row(model))
