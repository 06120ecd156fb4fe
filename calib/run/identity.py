"""What a stage's numbers depend on, as a key: canonical JSON of its inputs, hashed.

A run is a chain of stages (source model → fine-tuning → extractions → selector fits → report).
Each stage's *identity* is a plain dict of everything that can change its numbers — its own
settings, the keys of the stages it reads, the data it sees (dataset settings and a fingerprint
of the sample list and transforms), the model settings — and its *key* is the SHA-256 of that
dict's canonical JSON. A stage whose recorded key differs from the current one is never served.

The config keys that cannot change a number are declared once, beside their type and meaning
in the config schema (:mod:`calib.run.schema`), and listed in :data:`NON_IDENTITY_KEYS`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from calib.run.schema import non_identity_keys

__all__ = [
    "NON_IDENTITY_KEYS",
    "RESOLVED_KEYS",
    "REPORT_KEYS",
    "LEGACY_DEFAULTS",
    "canonical_json",
    "digest",
    "flatten",
    "identity_leaves",
    "diff_leaves",
    "format_changes",
    "dataset_fingerprint",
    "array_digest",
]

#: Config keys (dotted; a key covers everything below it) that change where or how fast a run
#: computes, never what it computes. Everything else is part of some stage's identity. Declared
#: with each key in :data:`calib.run.schema.SCHEMA` (``identity=False``), read from there.
NON_IDENTITY_KEYS: tuple[str, ...] = non_identity_keys()

#: The non-identity keys that key the stages through what they resolve to on the run's device:
#: the precision (:func:`calib.train.resolve_precision`; ``amp: auto`` is fp32 on a CPU, bf16 or
#: fp16 on a GPU). Two values that resolve alike share every stage, so they are no identity leaf;
#: two that do not (bf16 and fp16 on a GPU) compute other numbers, so they still name the run
#: folder (Hydra's ``override_dirname``), unlike the keys that never change a number.
RESOLVED_KEYS: tuple[str, ...] = tuple(
    k for k in NON_IDENTITY_KEYS if k.rsplit(".", 1)[-1] == "amp"
)

#: The non-identity keys that change the report but no stage: it is recomputed from the cached
#: stages on every run (how accuracies are averaged, the corrections fitted beside the
#: selectors), or the run is not one plan (a sequence runs one plan per stage, each keyed by
#: its own classes and its predecessor, :mod:`calib.run.sequence_run`). Rerunning a folder with
#: another value recomputes its results from the same stages; they still name the run folder,
#: so that a sweep over them keeps one folder per value.
REPORT_KEYS: tuple[str, ...] = ("eval.average", "calibration.corrections", "sequence")


def _plain(value: Any) -> Any:
    """JSON-able form: mappings with str keys, tuples as lists, numpy scalars as Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no whitespace, floats as Python's shortest repr."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(value: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"finetune.epochs": 8, ...}``: every leaf of a nested mapping under its dotted key.

    Lists are leaves; an empty mapping is a leaf (``{}``), so that adding a key to it shows.
    """
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = _plain(value)
    return out


def _excluded(key: str, excluded: Iterable[str]) -> bool:
    return any(key == e or key.startswith(e + ".") for e in excluded)


#: Identity keys added after run folders existed, with the value that computes what those
#: folders computed: at that value a key is no leaf, so that their records still match and
#: they resume; any other value is a leaf (it keys the stages and names the folder).
LEGACY_DEFAULTS: dict[str, Any] = {"eval.logits": "full"}


def identity_leaves(
    cfg: Mapping[str, Any], excluded: Iterable[str] = NON_IDENTITY_KEYS
) -> dict[str, Any]:
    """The flattened config without the keys that cannot change a number (and without the
    keys of :data:`LEGACY_DEFAULTS` at their legacy value)."""
    excluded = tuple(excluded)
    return {
        k: v
        for k, v in flatten(cfg).items()
        if not _excluded(k, excluded) and not (k in LEGACY_DEFAULTS and v == LEGACY_DEFAULTS[k])
    }


def diff_leaves(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every leaf that differs, sorted by key.

    A leaf present on one side only shows ``"<unset>"`` on the other.
    """
    missing = "<unset>"
    keys = sorted(set(old) | set(new))
    return [
        (k, old.get(k, missing), new.get(k, missing))
        for k in keys
        if canonical_json(old.get(k, missing)) != canonical_json(new.get(k, missing))
    ]


def format_changes(changes: Iterable[tuple[str, Any, Any]], limit: int = 40) -> str:
    """``"finetune.epochs: 4 → 8; split.seen: [0, 1] → [0, 2]"`` (at most ``limit`` entries)."""
    changes = list(changes)
    shown = [f"{k}: {_short(a)} → {_short(b)}" for k, a, b in changes[:limit]]
    if len(changes) > limit:
        shown.append(f"... and {len(changes) - limit} more")
    return "; ".join(shown)


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) and value == "<unset>" else canonical_json(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def array_digest(array: Any) -> str:
    """SHA-256 of an array's dtype, shape and bytes (numpy array or torch tensor)."""
    if hasattr(array, "detach"):  # a torch tensor; bfloat16 has no numpy view
        t = array.detach().cpu().contiguous()
        header = f"{t.dtype}:{tuple(t.shape)};".encode()
        import torch

        data = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
        return hashlib.sha256(header + bytes(data)).hexdigest()
    a = np.ascontiguousarray(array)
    return hashlib.sha256(f"{a.dtype}:{a.shape};".encode() + a.tobytes()).hexdigest()


def dataset_fingerprint(dataset: Any) -> dict[str, Any]:
    """What a dataset serves, as a small JSON-able dict: its sample list and its transform.

    Looks through ``Subset`` and ``ConcatDataset``. A dataset class can describe itself with a
    ``fingerprint()`` method; otherwise the sample list is taken from ``.samples`` (image lists:
    relative paths and labels) or ``.images`` (in-memory tensors, hashed), and the labels from
    ``.targets``; the transform by its ``repr`` (torchvision transforms print their settings).
    """
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return {"type": type(dataset).__name__, **own()}
    indices = getattr(dataset, "indices", None)
    inner = getattr(dataset, "dataset", None)
    if indices is not None and inner is not None:  # torch Subset
        return {
            "type": "Subset",
            "indices": array_digest(np.asarray(indices, dtype=np.int64)),
            "of": dataset_fingerprint(inner),
        }
    parts = getattr(dataset, "datasets", None)
    if parts is not None:  # ConcatDataset
        return {"type": "ConcatDataset", "parts": [dataset_fingerprint(d) for d in parts]}
    out: dict[str, Any] = {"type": type(dataset).__name__, "size": len(dataset)}
    samples = getattr(dataset, "samples", None)
    if samples is not None:  # paths relative to the root: where the data lives is no setting
        root = getattr(dataset, "root", None)
        rel = (lambda p: os.path.relpath(p, root)) if root is not None else str
        out["samples"] = digest([[rel(p), int(y)] for p, y in samples])
    images = getattr(dataset, "images", None)
    if images is not None:
        out["images"] = array_digest(images)
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        out["targets"] = array_digest(np.asarray(targets, dtype=np.int64))
    transform = getattr(dataset, "transform", None)
    if transform is not None:
        out["transform"] = repr(transform)
    return out
