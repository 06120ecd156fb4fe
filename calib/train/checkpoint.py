"""Checksummed, atomically written training checkpoints and the files of a training run.

A checkpoint file is one header line followed by a ``torch.save`` payload::

    calib-checkpoint/1 sha256=<64 hex digits> bytes=<payload length>\\n<payload>

:func:`load_checkpoint` checks the header, the length and the SHA-256 of the payload before
unpickling it (``weights_only=True``), so a truncated, overwritten or foreign file raises
:class:`CheckpointError` naming the file: it is never loaded half-way and never silently
replaced by a fresh start. Files are written with :func:`calib.io.atomic_save`: a crash during
a save leaves the previous checkpoint in place, intact.

Layout of a run directory (see :class:`RunFiles`)::

    run_dir/checkpoints/last.pt    end of the latest finished epoch: model, optimizer,
                                   scheduler, grad scaler, RNG states, history, config
    run_dir/checkpoints/final.pt   plain ``torch.save(model.state_dict())`` of the trained model
    run_dir/checkpoints/done       JSON marker written last: config, history, final.pt's SHA-256
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from calib.io import atomic_save, atomic_write_json

__all__ = [
    "CheckpointError",
    "ConfigMismatchError",
    "RunFiles",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "fingerprint",
    "file_sha256",
    "check_settings",
    "write_done",
    "read_done",
]

MAGIC = b"calib-checkpoint/1"
DONE_FORMAT = "calib-train-done/1"
_HEADER = re.compile(rb"calib-checkpoint/1 sha256=([0-9a-f]{64}) bytes=(\d+)\n")
_MAX_HEADER = 128


class CheckpointError(RuntimeError):
    """A checkpoint or run file is corrupt, foreign, or belongs to a different configuration."""


class ConfigMismatchError(ValueError):
    """``train`` was called on a run directory started with different settings."""


@dataclass(frozen=True)
class RunFiles:
    """The files :func:`calib.train.train` keeps under ``run_dir``."""

    run_dir: Path

    @property
    def checkpoints(self) -> Path:
        return Path(self.run_dir) / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def final(self) -> Path:
        return self.checkpoints / "final.pt"

    @property
    def done(self) -> Path:
        return self.checkpoints / "done"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) with a checksum header."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    header = b"%s sha256=%s bytes=%d\n" % (
        MAGIC,
        hashlib.sha256(payload).hexdigest().encode(),
        len(payload),
    )

    def write(fh: IO[bytes]) -> None:
        fh.write(header)
        fh.write(payload)

    atomic_save(path, write)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint`, verifying it first.

    Raises:
        CheckpointError: empty, not a calib checkpoint, truncated, checksum mismatch, or
            unreadable payload. The message names the file.
    """
    path = Path(path)
    data = path.read_bytes()
    fix = "delete it to restart this run from scratch, or restore a good copy"
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty; {fix}")
    newline = data.find(b"\n", 0, _MAX_HEADER)
    match = _HEADER.fullmatch(data[: newline + 1]) if newline >= 0 else None
    if match is None:
        raise CheckpointError(
            f"{path} is not a calib checkpoint (missing or damaged '{MAGIC.decode()}' header); {fix}"
        )
    digest, size = match.group(1).decode(), int(match.group(2))
    payload = memoryview(data)[newline + 1 :]
    if len(payload) != size:
        what = "truncated" if len(payload) < size else "has trailing bytes"
        raise CheckpointError(
            f"checkpoint {path} is {what}: {len(payload)} payload bytes, header says {size}; {fix}"
        )
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupt: SHA-256 mismatch; {fix}")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # checksum passed, so this is a foreign or incompatible payload
        raise CheckpointError(f"checkpoint {path} could not be unpickled: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(settings: dict[str, Any]) -> str:
    """Hex SHA-256 of ``settings`` as canonical JSON (sorted keys)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def check_settings(source: Path, stored: dict[str, Any], settings: dict[str, Any]) -> None:
    """Raise :class:`ConfigMismatchError` listing the keys where ``settings`` differ from ``stored``.

    ``stored`` are the settings recorded in ``source`` (a checkpoint or the done marker).
    """
    if fingerprint(stored) == fingerprint(settings):
        return
    keys = sorted(set(stored) | set(settings))
    changes = [
        f"{k}: {stored.get(k, '<unset>')!r} -> {settings.get(k, '<unset>')!r}"
        for k in keys
        if stored.get(k, "<unset>") != settings.get(k, "<unset>")
    ] or ["(values equal, types differ)"]
    raise ConfigMismatchError(
        f"{source} was written with different training settings ({'; '.join(changes)}). "
        "Use a new run_dir for new settings, or restore the original ones to resume."
    )


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and every CUDA device), numpy and ``random`` RNG states, checkpoint-safe.

    Only tensors and plain Python values, so the checkpoint loads with ``weights_only=True``.
    """
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002 (the global RNG)
    version, internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    keys = np_state["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002 (the global RNG)
        ("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["gauss"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states[: torch.cuda.device_count()]])


def write_done(files: RunFiles, *, settings: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Write the ``done`` marker (after ``final.pt``): its presence means the run is complete."""
    atomic_write_json(
        files.done,
        {
            "format": DONE_FORMAT,
            "fingerprint": fingerprint(settings),
            "settings": settings,
            "history": history,
            "final_sha256": file_sha256(files.final),
        },
    )


def read_done(files: RunFiles) -> dict[str, Any]:
    """Read and check the ``done`` marker and ``final.pt`` against the SHA-256 it records."""
    try:
        done = json.loads(files.done.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"run marker {files.done} is unreadable: {err}") from err
    if not isinstance(done, dict) or done.get("format") != DONE_FORMAT:
        raise CheckpointError(f"{files.done} is not a calib run marker ({DONE_FORMAT})")
    if not files.final.exists():
        raise CheckpointError(f"{files.done} marks the run complete but {files.final} is missing")
    if file_sha256(files.final) != done.get("final_sha256"):
        raise CheckpointError(
            f"final weights {files.final} do not match the SHA-256 recorded in {files.done}: "
            "the file is corrupt or was replaced"
        )
    return done
