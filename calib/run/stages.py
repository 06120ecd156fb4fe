"""The stage records of a run folder: which stage was computed from which inputs.

``run_dir/stages.json`` maps each stage (``source``, ``finetune``, ``pcv/split_0``,
``extract/finetuned_test``, ``selector/alg``, ...) to its key and identity (see
:mod:`calib.run.identity`). Before a run does any work, :meth:`StageStore.check` compares every
stage it is about to compute with the record: a stage recorded with another key means the
folder holds numbers of another run, and the run is refused with every changed input named —
never served, never silently overwritten. ``run_dir/run.json`` records the config leaves
that make up the run's identity, so the refusal names config keys (``finetune.epochs``).

Only rank 0 writes; every write is atomic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calib import distributed
from calib.io import atomic_write_json
from calib.run.identity import canonical_json, diff_leaves, digest, flatten, format_changes

__all__ = ["Stage", "StageStore", "StaleRunError"]

RUN_FORMAT = "calib-run/1"
STAGES_FORMAT = "calib-stages/1"
# Outputs of a run folder written by calib versions without stage records.
_LEGACY_OUTPUTS = ("finetune", "extract", "calibrators", "results.json")


class StaleRunError(ValueError):
    """The run folder holds results of a run with other settings; nothing was computed."""


@dataclass(frozen=True)
class Stage:
    """One step of a run: its name (a path below the run folder) and its identity."""

    name: str
    identity: Mapping[str, Any] = field(hash=False)

    def __post_init__(self) -> None:  # plain JSON values: what is hashed is what is recorded
        object.__setattr__(self, "identity", json.loads(canonical_json(self.identity)))

    @property
    def key(self) -> str:
        return digest(self.identity)


class StageStore:
    """Stage records under ``run_dir`` (``stages.json``, ``run.json``)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.stages_file = self.run_dir / "stages.json"
        self.run_file = self.run_dir / "run.json"

    # -- reading --------------------------------------------------------------------------
    def _read(self, path: Path, fmt: str) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise StaleRunError(f"{path} is unreadable ({err}); delete the run folder") from None
        if not isinstance(data, dict) or data.get("format") != fmt:
            raise StaleRunError(f"{path} is not a calib {fmt} record; delete the run folder")
        return data

    def records(self) -> dict[str, Any]:
        data = self._read(self.stages_file, STAGES_FORMAT)
        return {} if data is None else dict(data.get("stages", {}))

    # -- checks before any work -----------------------------------------------------------
    def check_config(self, leaves: Mapping[str, Any]) -> None:
        """Refuse when ``run.json`` records other identity leaves (naming every changed key)."""
        data = self._read(self.run_file, RUN_FORMAT)
        if data is None:
            return
        changes = diff_leaves(data.get("identity", {}), leaves)
        if changes:
            raise StaleRunError(
                f"run folder {self.run_dir} holds a run with other settings: "
                f"{format_changes(changes)}. Delete the folder, or choose another run_dir, "
                "to run with the new settings."
            )

    def check(self, stages: Iterable[Stage]) -> None:
        """Refuse when a stage about to run is recorded with another key.

        Raises:
            StaleRunError: naming each such stage and the inputs that changed.
        """
        records = self.records()
        if not records and not self.run_file.exists():
            legacy = [n for n in _LEGACY_OUTPUTS if (self.run_dir / n).exists()]
            if legacy:
                raise StaleRunError(
                    f"run folder {self.run_dir} holds {', '.join(legacy)} without stage records "
                    "(written by an older calib): its numbers cannot be matched to settings. "
                    "Delete the folder, or choose another run_dir."
                )
        stale = []
        for stage in stages:
            old = records.get(stage.name)
            if old is not None and old.get("key") != stage.key:
                changes = diff_leaves(flatten(old.get("identity", {})), flatten(stage.identity))
                stale.append(f"{stage.name} ({format_changes(changes, limit=8) or 'key'})")
        if stale:
            raise StaleRunError(
                f"run folder {self.run_dir} holds stages computed from other inputs: "
                f"{'; '.join(stale)}. Delete the folder, or choose another run_dir."
            )

    # -- writing (rank 0) -----------------------------------------------------------------
    def write_config(self, leaves: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        if distributed.is_main():
            payload = {"format": RUN_FORMAT, "identity": dict(leaves), "config": config}
            atomic_write_json(self.run_file, payload)

    def record(self, stage: Stage, **extra: Any) -> None:
        """Record ``stage`` (before it starts: a resumed stage is then checked against it)."""
        if not distributed.is_main():
            return
        records = self.records()
        records[stage.name] = {"key": stage.key, "identity": stage.identity, **extra}
        atomic_write_json(self.stages_file, {"format": STAGES_FORMAT, "stages": records})
