"""HistoryWriter: rows in JSONL and CSV, array files, resume without gaps or duplicates."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest

from calib.dynamics import HistoryWriter, epochs_with_arrays, read_epoch_arrays, read_history


def _row(epoch, value):
    return {"epoch": epoch, "acc_seen": value, "gamma_alg": float("nan"), "ncm_means": "train"}


def _arrays(epoch):
    return {"curve": {"gamma": np.array([0.0, np.inf]), "acc_seen": np.array([1.0, epoch])}}


def test_rows_and_arrays_round_trip(tmp_path):
    writer = HistoryWriter(tmp_path)
    for epoch in (0, 2, 4):
        writer.write(_row(epoch, epoch / 10), _arrays(epoch))
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == [0, 2, 4]
    assert [r["acc_seen"] for r in rows] == [0.0, 0.2, 0.4]
    assert all(math.isnan(r["gamma_alg"]) for r in rows)  # NaN → null → NaN
    with open(tmp_path / "history.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [float(r["acc_seen"]) for r in table] == [0.0, 0.2, 0.4]
    assert table[0]["gamma_alg"] == "" and table[0]["ncm_means"] == "train"
    assert epochs_with_arrays(tmp_path, "curve") == [0, 2, 4]
    np.testing.assert_array_equal(read_epoch_arrays(tmp_path, "curve", 2)["acc_seen"], [1.0, 2.0])
    assert not [n for n in os.listdir(tmp_path) + os.listdir(tmp_path / "history") if ".tmp" in n]


def test_rewriting_an_epoch_drops_it_and_everything_after(tmp_path):
    writer = HistoryWriter(tmp_path)
    for epoch in range(5):
        writer.write(_row(epoch, 0.1), _arrays(epoch))
    # a run killed after epoch 4's row, resumed from its epoch-2 checkpoint: epoch 3 again
    rows = writer.write(_row(3, 0.9), _arrays(3))
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert [r["epoch"] for r in read_history(tmp_path)] == [0, 1, 2, 3]
    assert read_history(tmp_path)[-1]["acc_seen"] == 0.9
    assert epochs_with_arrays(tmp_path, "curve") == [0, 1, 2, 3]
    with open(tmp_path / "history.csv") as fh:
        assert len(fh.read().splitlines()) == 1 + 4
    writer.write(_row(0, 0.5))  # a fresh run: epoch 0 again, no arrays
    assert [r["epoch"] for r in read_history(tmp_path)] == [0]
    assert epochs_with_arrays(tmp_path, "curve") == []


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert HistoryWriter(tmp_path).write(_row(0, 0.1), _arrays(0)) == []
    assert os.listdir(tmp_path) == []


def test_missing_history_is_empty_and_bad_files_are_named(tmp_path):
    assert read_history(tmp_path) == []
    (tmp_path / "history.jsonl").write_text('{"epoch": 0}\n{"epoch": 0}\n')
    with pytest.raises(ValueError, match="not strictly increasing"):
        read_history(tmp_path)
    (tmp_path / "history.jsonl").write_text('{"epoch": 0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        read_history(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"arrays exist for epochs \[\]"):
        read_epoch_arrays(tmp_path, "curve", 3)


@pytest.mark.parametrize("epoch", [None, -1, 2.0, True])
def test_a_row_needs_an_integer_epoch(tmp_path, epoch):
    with pytest.raises(ValueError, match="integer epoch"):
        HistoryWriter(tmp_path).write({"epoch": epoch})
