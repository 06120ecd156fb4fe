"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each writer writes a temporary file in the destination's folder, flushes and
fsyncs it, then ``os.replace``-s it over the destination (atomic on POSIX and
Windows within one file system). A crash mid-write leaves at most a stray
``.tmp`` file beside the old, intact destination. The file gets the mode a plain
``open`` would give it (``0o666`` less the process umask), so a lab's group can read
results, checkpoints and calibrators alike.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save",
]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block exits cleanly.

    If the block raises, ``path`` is left untouched and the temporary file is removed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileExistsError:  # mkdir: a part of the parent path is a file
        raise NotADirectoryError(f"cannot write {path}: {path.parent} is not a folder") from None
    except OSError as err:
        raise type(err)(err.errno, f"cannot write {path}: {err.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0o600 files
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask (read by setting it, then restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def json_safe(value: Any) -> Any:
    """``value`` as strict-JSON types: numpy scalars and arrays, tuples and mappings converted,
    NaN and ±inf as ``None``.

    Raises:
        TypeError: a value JSON cannot hold (an object, a tensor, ...), named in the message.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def atomic_write_json(path: str | os.PathLike, obj: Any, **kwargs: Any) -> None:
    """Write ``obj`` as strict JSON (through :func:`json_safe`: NaN/inf become ``null``)."""
    kwargs.setdefault("indent", 2)
    atomic_write_text(path, json.dumps(json_safe(obj), allow_nan=False, **kwargs) + "\n")


def atomic_save(path: str | os.PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write a binary file through ``writer(fh)``, e.g. ``lambda f: torch.save(obj, f)``."""
    with atomic_open(path, "wb") as fh:
        writer(fh)
