"""The training history of a run folder: ``history.jsonl``, ``history.csv`` and ``history/*.npz``.

Layout in the run folder::

    history.jsonl                  one JSON row per evaluated epoch (the source of truth)
    history.csv                    the same rows as a table (rewritten from the JSON rows)
    history/curve_epoch<k>.npz     the seen–absent curve of epoch k (gamma, acc_seen, ...)
    history/head_epoch<k>.npz      the head's per-class weight norms of epoch k

Resumable without gaps or duplicates: writing epoch e keeps only the rows (and array files)
of epochs before e, then adds e. The training loop calls back in increasing epoch order from
its resume point, so the files always hold a prefix of the uninterrupted run's history. Only
rank 0 writes (:func:`calib.distributed.is_main`); every file is replaced atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calib import distributed
from calib.io import atomic_open, atomic_write_text, json_safe

__all__ = ["HistoryWriter", "read_history", "read_epoch_arrays", "epochs_with_arrays"]

JSONL_NAME, CSV_NAME, ARRAYS_DIR = "history.jsonl", "history.csv", "history"
_ARRAY_FILE = re.compile(r"^(?P<kind>[a-z_]+)_epoch(?P<epoch>\d+)\.npz$")


def _parse_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not valid JSON ({err})") from err
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise ValueError(f"{path}, line {number}: a history row needs an integer 'epoch'")
        rows.append({k: (math.nan if v is None else v) for k, v in row.items()})
    return rows


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The history rows of ``run_dir`` in epoch order (``[]`` when it has none).

    Values as written; undefined ones (``null`` in the file) are NaN.

    Raises:
        ValueError: a line that is not a JSON row with an integer ``epoch``, or epochs that
            are not strictly increasing (a file not written by :class:`HistoryWriter`).
    """
    path = Path(run_dir) / JSONL_NAME
    if not path.exists():
        return []
    rows = _parse_rows(path)
    epochs = [row["epoch"] for row in rows]
    if any(b <= a for a, b in zip(epochs[:-1], epochs[1:], strict=True)):
        raise ValueError(f"{path}: epochs are not strictly increasing: {epochs}")
    return rows


def epochs_with_arrays(run_dir: str | os.PathLike, kind: str) -> list[int]:
    """The epochs for which ``history/<kind>_epoch<k>.npz`` exists, ascending."""
    folder = Path(run_dir) / ARRAYS_DIR
    if not folder.is_dir():
        return []
    found = (_ARRAY_FILE.match(p.name) for p in folder.iterdir())
    return sorted(int(m["epoch"]) for m in found if m and m["kind"] == kind)


def read_epoch_arrays(run_dir: str | os.PathLike, kind: str, epoch: int) -> dict[str, np.ndarray]:
    """The arrays of ``history/<kind>_epoch<epoch>.npz`` (``kind``: ``curve`` or ``head``).

    Raises:
        FileNotFoundError: no such file (naming the epochs that have one).
    """
    path = Path(run_dir) / ARRAYS_DIR / f"{kind}_epoch{int(epoch)}.npz"
    if not path.exists():
        have = epochs_with_arrays(run_dir, kind)
        raise FileNotFoundError(f"{path} does not exist; {kind} arrays exist for epochs {have}")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in json_safe(rows):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


class HistoryWriter:
    """Writes the history of ``run_dir`` (see the module docstring); a no-op off rank 0.

    Args:
        run_dir: the run folder (created on the first write).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)

    @property
    def jsonl_path(self) -> Path:
        return self.run_dir / JSONL_NAME

    @property
    def csv_path(self) -> Path:
        return self.run_dir / CSV_NAME

    def array_path(self, kind: str, epoch: int) -> Path:
        return self.run_dir / ARRAYS_DIR / f"{kind}_epoch{int(epoch)}.npz"

    def write(
        self,
        row: Mapping[str, Any],
        arrays: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Record ``row`` (with an integer ``epoch`` e) and its ``arrays`` ({kind: {name: array}}).

        Rows and array files of epochs ≥ e already on disk are dropped first (a resumed run
        repeats them). Returns the rows now in the history (the ones on disk
        plus ``row``) on rank 0, ``[]`` on the other ranks, which write nothing.
        """
        epoch = row.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"a history row needs an integer epoch >= 0, got {epoch!r}")
        epoch = int(epoch)
        if not distributed.is_main():
            return []
        rows = [r for r in read_history(self.run_dir) if r["epoch"] < epoch]
        rows.append(dict(row) | {"epoch": epoch})
        for kind, values in (arrays or {}).items():
            if not _ARRAY_FILE.match(f"{kind}_epoch0.npz"):
                raise ValueError(f"array kind must be lower-case letters and '_', got {kind!r}")
            with atomic_open(self.array_path(kind, epoch), "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in values.items()})
        self._drop_arrays_after(epoch, keep=set(arrays or {}))
        lines = (json.dumps(json_safe(r), allow_nan=False) for r in rows)
        atomic_write_text(self.jsonl_path, "".join(line + "\n" for line in lines))
        atomic_write_text(self.csv_path, _csv_text(rows))
        return rows

    def _drop_arrays_after(self, epoch: int, keep: set[str]) -> None:
        """Remove array files of epochs > ``epoch`` (and of ``epoch`` for kinds not rewritten)."""
        folder = self.run_dir / ARRAYS_DIR
        if not folder.is_dir():
            return
        for path in folder.iterdir():
            m = _ARRAY_FILE.match(path.name)
            if m and (
                int(m["epoch"]) > epoch or (int(m["epoch"]) == epoch and m["kind"] not in keep)
            ):
                path.unlink(missing_ok=True)
